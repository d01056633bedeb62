"""Per-customer features computed in the warehouse, as of the run's date.

One dialect-portable SQLAlchemy Core query per mapping shape does the heavy work in the warehouse:

* ``normalised`` — customers left-joined to per-customer order and event aggregates before D;
* ``segment`` — the latest non-null value of each trait from ``identifies`` rows before D (one window pass),
  joined to aggregates of ``tracks`` (order events as orders, every event as activity);
* ``customer360`` — a plain projection of the wide table (it is pre-aggregated and has no history).

The result is streamed in chunks, finished with vectorised arithmetic (ages, recency, arg-max of
channel/category counts, text dates parsed with the mapped format) and written as Parquet parts, so memory is
bounded by the chunk size. Raw PII columns (names, emails, phones, addresses) are never selected: only mapped
canonical fields are, and PII column names cannot be mapped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from persona_pipeline.exceptions import SourceError
from persona_pipeline.privacy import drop_personal_values, redact_personal
from persona_pipeline.warehouse.mapping import (
    FORMAT_DIRECTIVES,
    ISO_FORMAT,
    FieldMapping,
    SourceMapping,
    TableMapping,
)

log = logging.getLogger(__name__)

ENGAGEMENT_WINDOW_DAYS = 90
#: Money is rounded to this many decimals: float sums differ in the last bits between warehouses (summation
#: order), and RFM ranks must not depend on which warehouse added the numbers up.
MONEY_DECIMALS = 6
_TRUE_TEXT = frozenset({"true", "t", "1", "1.0", "yes", "y"})
_FALSE_TEXT = frozenset({"false", "f", "0", "0.0", "no", "n"})


@dataclass(frozen=True)
class Vocabulary:
    """Category, channel and device values found in the source as of D (most frequent first)."""

    categories: tuple[str, ...]
    interests: tuple[str, ...]
    channels: tuple[str, ...]
    devices: tuple[str, ...]


def spend_column(category: str, index: int) -> str:
    """Name of the feature column holding the share of spend in ``category`` (safe for any category text)."""
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")[:24]
    return f"spend_{index:02d}_{slug}" if slug else f"spend_{index:02d}"


# -- text timestamps parsed in the warehouse --------------------------------------------------------------------


class ParseTimestamp(FunctionElement[datetime]):
    """``text`` parsed as a naive UTC timestamp with a strftime pattern (validated by the mapping parser).

    Both the pattern and its PostgreSQL translation travel as bound parameters; each dialect picks its own.
    """

    type = sa.DateTime()
    name = "parse_timestamp"
    inherit_cache = True

    def __init__(self, text: sa.ColumnElement[Any], pattern: str) -> None:
        super().__init__(text, sa.literal(pattern, sa.String), sa.literal(postgres_format(pattern), sa.String))


def postgres_format(pattern: str) -> str:
    """The strftime ``pattern`` as a PostgreSQL ``to_timestamp`` template (directives in FORMAT_DIRECTIVES)."""
    return re.sub(r"%[A-Za-z]", lambda m: FORMAT_DIRECTIVES[m.group(0)], pattern)


@compiles(ParseTimestamp, "duckdb")
def _parse_timestamp_duckdb(element: ParseTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    text, pattern, _ = list(element.clauses)
    return f"strptime({compiler.process(text, **kw)}, {compiler.process(pattern, **kw)})"


@compiles(ParseTimestamp, "postgresql")
def _parse_timestamp_postgres(element: ParseTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    text, _, template = list(element.clauses)
    # to_timestamp gives timestamptz in the session zone, which the engine pins to UTC.
    return f"CAST(to_timestamp({compiler.process(text, **kw)}, {compiler.process(template, **kw)}) AS TIMESTAMP)"


@compiles(ParseTimestamp)
def _parse_timestamp_other(element: ParseTimestamp, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError(
        f"date formats other than 'iso' on timestamp columns are supported on DuckDB and PostgreSQL, not "
        f"{compiler.dialect.name}: store the column as a timestamp, or as ISO text with format: iso"
    )


# -- reading mapped fields --------------------------------------------------------------------------------------


def _with_values(expr: sa.ColumnElement[Any], fm: FieldMapping) -> sa.ColumnElement[Any]:
    """Apply the field's value map: source values are compared with the column's text form."""
    if not fm.values:
        return expr
    text = sa.cast(expr, sa.String)
    targets = [value for _, value in fm.values]
    value_type: Any = (
        sa.Boolean()
        if all(isinstance(v, bool) for v in targets)
        else sa.String()
        if all(isinstance(v, str) for v in targets)
        else sa.Double()
    )
    whens = [(text == sa.literal(source, sa.String), sa.literal(value, value_type)) for source, value in fm.values]
    if fm.default is not None:
        otherwise: sa.ColumnElement[Any] = sa.literal(fm.default, value_type)
    elif isinstance(value_type, sa.String):
        otherwise = text  # unmapped text values are kept as they are
    else:
        otherwise = sa.null()
    return sa.case(*whens, else_=otherwise)


def _as_timestamp(expr: sa.ColumnElement[Any], fm: FieldMapping) -> sa.ColumnElement[Any]:
    """A timestamp the warehouse can compare with D: text columns are parsed with the mapped format."""
    if fm.format == ISO_FORMAT:
        return sa.cast(expr, sa.DateTime())
    if fm.format:
        return ParseTimestamp(expr, fm.format)
    return expr


class _Source:
    """A mapped table as a SQLAlchemy table clause with only its mapped columns (never ``SELECT *``)."""

    def __init__(self, mapping: TableMapping, extra_columns: Sequence[str] = ()) -> None:
        self.mapping = mapping
        names = sorted({fm.column for fm in mapping.fields.values()} | set(extra_columns))
        self.table = sa.table(mapping.table, *(sa.column(name) for name in names), schema=mapping.schema)

    def raw(self, canonical: str) -> sa.ColumnElement[Any] | None:
        fm = self.mapping.field(canonical)
        return None if fm is None else self.table.c[fm.column]

    def value(self, canonical: str) -> sa.ColumnElement[Any] | None:
        """The field with its value map applied (dates stay raw: they are parsed after extraction)."""
        fm = self.mapping.field(canonical)
        return None if fm is None else _with_values(self.table.c[fm.column], fm)

    def timestamp(self, canonical: str) -> sa.ColumnElement[Any] | None:
        fm = self.mapping.field(canonical)
        return None if fm is None else _as_timestamp(self.table.c[fm.column], fm)

    def row_filter(self) -> list[sa.ColumnElement[bool]]:
        if self.mapping.row_filter is None:
            return []
        canonical, values = self.mapping.row_filter
        column = self.value(canonical)
        assert column is not None
        return [column.in_(values)]


def _as_of_bound(as_of: date) -> datetime:
    # D is the end of the data interval: everything strictly before midnight of D belongs to the run.
    return datetime(as_of.year, as_of.month, as_of.day)


#: Customer-level fields selected as they are (after value maps); dates are parsed after extraction.
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "birth_date",
    "gender",
    "country",
    "region",
    "income_band",
    "occupation",
    "household_size",
    "signup_date",
    "marketing_consent",
    "profiling_consent",
)
_WIDE_COLUMNS: tuple[tuple[str, str], ...] = (  # (canonical field of the wide table, raw column label)
    ("order_count", "frequency"),
    ("total_spend", "monetary"),
    ("returns", "returns"),
    ("last_order_date", "last_order_at"),
    ("events_90d", "events_90d"),
    ("preferred_channel", "preferred_channel"),
    ("top_category", "top_category"),
    ("preferred_device", "preferred_device"),
    ("top_interest", "top_interest"),
)


def date_formats(mapping: SourceMapping) -> dict[str, str | None]:
    """Formats of the date fields parsed after extraction, by raw column label."""
    customers = mapping.customers
    formats = {name: getattr(customers.field(name), "format", None) for name in ("birth_date", "signup_date")}
    if customers.latest_by is not None:
        # Traits travel as text; a date or timestamp column's text form is ISO-8601 on every warehouse.
        formats = {name: fmt or ISO_FORMAT for name, fmt in formats.items()}
    if mapping.shape == "customer360":
        formats["last_order_at"] = getattr(customers.field("last_order_date"), "format", None)
    return formats


# -- vocabulary -------------------------------------------------------------------------------------------------


def _most_frequent(conn: sa.Connection, inner: sa.Subquery, limit: int) -> tuple[str, ...]:
    """The ``limit`` most frequent non-null values of ``inner.value``, most frequent first."""
    query = (
        sa.select(inner.c.value, sa.func.count().label("n"))
        .where(inner.c.value.is_not(None))
        .group_by(inner.c.value)
        .order_by(sa.desc("n"), inner.c.value)
        .limit(limit)
    )
    rows = conn.execute(query).fetchall()
    # Ties are ordered here, not by the warehouse's collation, so every warehouse agrees.
    return tuple(str(v) for v, _ in sorted(rows, key=lambda row: (-int(row[1]), str(row[0]))))


def discover_vocabulary(conn: sa.Connection, mapping: SourceMapping, as_of: date) -> Vocabulary:
    """Find the category, channel and device values present before D (bounded by ``max_categories``)."""
    if mapping.shape == "customer360":
        return _wide_vocabulary(conn, mapping)
    cutoff = _as_of_bound(as_of)

    def top_values(mapping_: TableMapping | None, canonical: str, ts_field: str) -> tuple[str, ...]:
        if mapping_ is None or mapping_.field(canonical) is None:
            return ()
        source = _Source(mapping_)
        value, ts = source.value(canonical), source.timestamp(ts_field)
        assert value is not None and ts is not None
        # Group over a subquery: a value map renders with bound parameters, which PostgreSQL would not
        # recognise as the same expression in SELECT and GROUP BY.
        inner = sa.select(value.label("value")).where(ts < cutoff, *source.row_filter()).subquery("vocab")
        return _most_frequent(conn, inner, mapping.max_categories)

    return Vocabulary(
        categories=top_values(mapping.orders, "category", "ordered_at"),
        interests=top_values(mapping.events, "category", "occurred_at"),
        channels=top_values(mapping.orders, "channel", "ordered_at"),
        devices=top_values(mapping.events, "device", "occurred_at"),
    )


def _wide_vocabulary(conn: sa.Connection, mapping: SourceMapping) -> Vocabulary:
    """Breakdown labels of a wide table, largest total first; interests and devices from their columns."""
    breakdowns = [*mapping.spend_by_category, *mapping.orders_by_channel]
    source = _Source(mapping.customers, [column for _, column in breakdowns])
    totals: list[float] = []
    if breakdowns:
        row = conn.execute(sa.select(*(sa.func.sum(source.table.c[column]) for _, column in breakdowns))).fetchall()[0]
        totals = [float(v or 0.0) for v in row]

    def ranked(pairs: tuple[tuple[str, str], ...], offset: int) -> tuple[str, ...]:
        scored = [(-totals[offset + i], label) for i, (label, _) in enumerate(pairs)]
        return tuple(label for _, label in sorted(scored)[: mapping.max_categories])

    def top_values(canonical: str) -> tuple[str, ...]:
        value = source.value(canonical)
        if value is None:
            return ()
        inner = sa.select(value.label("value")).subquery("vocab")
        return _most_frequent(conn, inner, mapping.max_categories)

    return Vocabulary(
        categories=ranked(mapping.spend_by_category, 0),
        interests=top_values("top_interest"),
        channels=ranked(mapping.orders_by_channel, len(mapping.spend_by_category)),
        devices=top_values("preferred_device"),
    )


# -- the feature query ------------------------------------------------------------------------------------------


def build_feature_query(mapping: SourceMapping, vocabulary: Vocabulary, as_of: date) -> sa.Select[Any]:
    """The one portable query of the mapping's shape (ordered by customer key, so chunks are deterministic)."""
    if mapping.shape == "customer360":
        return _wide_query(mapping, vocabulary, as_of)
    cutoff = _as_of_bound(as_of)
    key, customer_columns, source, signup_filter = _customer_source(mapping.customers, cutoff)
    selected: list[sa.ColumnElement[Any]] = [sa.cast(key, sa.String).label("customer_key")]
    for canonical in CUSTOMER_COLUMNS:
        column = customer_columns.get(canonical)
        selected.append((column if column is not None else sa.null()).label(canonical))

    joins: list[tuple[sa.Subquery, sa.ColumnElement[bool]]] = []
    if mapping.orders is not None:
        orders_sub, order_cols = _order_aggregates(mapping, vocabulary, cutoff)
        joins.append((orders_sub, orders_sub.c.o_customer == sa.cast(key, sa.String)))
        selected.extend(orders_sub.c[name].label(name) for name in order_cols)
    if mapping.events is not None:
        events_sub, event_cols = _event_aggregates(mapping, vocabulary, cutoff)
        joins.append((events_sub, events_sub.c.e_customer == sa.cast(key, sa.String)))
        selected.extend(events_sub.c[name].label(name) for name in event_cols)

    for sub, on in joins:
        source = source.outerjoin(sub, on)
    query = sa.select(*selected).select_from(source).where(key.is_not(None))
    if signup_filter is not None:
        query = query.where(signup_filter)
    return query.order_by(key)


def _customer_source(
    cust_map: TableMapping, cutoff: datetime
) -> tuple[sa.ColumnElement[Any], dict[str, sa.ColumnElement[Any]], sa.FromClause, sa.ColumnElement[bool] | None]:
    """(raw key, value-mapped customer fields, FROM clause, SQL signup filter or None)."""
    base = _Source(cust_map)
    if cust_map.latest_by is None:
        key = base.raw("customer_id")
        assert key is not None
        columns = {name: col for name in CUSTOMER_COLUMNS if (col := base.value(name)) is not None}
        signup, signup_map = base.raw("signup_date"), cust_map.field("signup_date")
        signup_filter = None
        if signup is not None and signup_map is not None and signup_map.format is None:
            # A customer who signs up on or after D does not exist yet as of D (backfills reproduce that day).
            signup_filter = sa.or_(signup.is_(None), signup < cutoff)
        return key, columns, base.table, signup_filter
    return _latest_traits(base, cust_map, cutoff)


def _latest_traits(
    base: _Source, cust_map: TableMapping, cutoff: datetime
) -> tuple[sa.ColumnElement[Any], dict[str, sa.ColumnElement[Any]], sa.FromClause, None]:
    """Customers from a history of identify calls: per trait, the latest non-null value seen before D.

    One window pass finds, per user and trait, the time of the latest row where the trait is set; the outer
    aggregate keeps the value of that row (the largest text on a tie, so the choice is deterministic). Traits
    travel as text (portable MAX over any type) and are typed again after extraction.
    """
    key, ts = base.raw("customer_id"), base.timestamp(cust_map.latest_by or "timestamp")
    assert key is not None and ts is not None
    traits = [name for name in CUSTOMER_COLUMNS if cust_map.field(name) is not None]
    inner_columns: list[sa.ColumnElement[Any]] = [key.label("customer_id"), ts.label("seen_at")]
    for name in traits:
        raw = base.raw(name)
        assert raw is not None
        inner_columns.append(sa.cast(raw, sa.String).label(name))
        inner_columns.append(
            sa.func.max(sa.case((raw.is_not(None), ts), else_=None)).over(partition_by=key).label(f"{name}_seen_at")
        )
    history = sa.select(*inner_columns).where(ts < cutoff, key.is_not(None)).subquery("identify_history")
    latest = (
        sa.select(
            history.c.customer_id,
            *(
                sa.func.max(
                    sa.case((history.c.seen_at == history.c[f"{name}_seen_at"], history.c[name]), else_=None)
                ).label(name)
                for name in traits
            ),
        )
        .group_by(history.c.customer_id)
        .subquery("identify_latest")
    )
    columns: dict[str, sa.ColumnElement[Any]] = {}
    for name in traits:
        fm = cust_map.field(name)
        assert fm is not None
        columns[name] = _with_values(latest.c[name], fm)
    return latest.c.customer_id, columns, latest, None


def _count(expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # SUM of integers is NUMERIC/HUGEINT in PostgreSQL/DuckDB, which arrives as Python Decimals; counts fit BIGINT.
    return sa.cast(expr, sa.BigInteger)


def _money(expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.cast(expr, sa.Double)  # FLOAT is 32-bit in DuckDB


def _order_aggregates(
    mapping: SourceMapping, vocabulary: Vocabulary, cutoff: datetime
) -> tuple[sa.Subquery, list[str]]:
    assert mapping.orders is not None
    source = _Source(mapping.orders)
    customer, ts, amount = source.raw("customer_id"), source.timestamp("ordered_at"), source.raw("amount")
    status, channel, category = source.value("status"), source.value("channel"), source.value("category")
    assert customer is not None and ts is not None and amount is not None
    completed: sa.ColumnElement[bool] = status.in_(mapping.completed_statuses) if status is not None else sa.true()
    aggregates: list[sa.ColumnElement[Any]] = [
        sa.cast(customer, sa.String).label("o_customer"),
        _count(sa.func.sum(sa.case((completed, 1), else_=0))).label("frequency"),
        _money(sa.func.sum(sa.case((completed, amount), else_=0))).label("monetary"),
        sa.func.max(sa.case((completed, ts), else_=None)).label("last_order_at"),
    ]
    names = ["frequency", "monetary", "last_order_at"]
    if status is not None and mapping.returned_statuses:
        returned = status.in_(mapping.returned_statuses)
        aggregates.append(_count(sa.func.sum(sa.case((returned, 1), else_=0))).label("returns"))
        names.append("returns")
    if channel is not None:
        for index, value in enumerate(vocabulary.channels):
            name = f"ch_{index:02d}"
            aggregates.append(
                _count(sa.func.sum(sa.case((sa.and_(completed, channel == value), 1), else_=0))).label(name)
            )
            names.append(name)
    if category is not None:
        for index, value in enumerate(vocabulary.categories):
            name = f"cat_{index:02d}"
            aggregates.append(
                _money(sa.func.sum(sa.case((sa.and_(completed, category == value), amount), else_=0))).label(name)
            )
            names.append(name)
    sub = (
        sa.select(*aggregates)
        .where(ts < cutoff, *source.row_filter())
        .group_by(sa.cast(customer, sa.String))
        .subquery("order_agg")
    )
    return sub, names


def _event_aggregates(
    mapping: SourceMapping, vocabulary: Vocabulary, cutoff: datetime
) -> tuple[sa.Subquery, list[str]]:
    assert mapping.events is not None
    source = _Source(mapping.events)
    customer, ts = source.raw("customer_id"), source.timestamp("occurred_at")
    category, device = source.value("category"), source.value("device")
    assert customer is not None and ts is not None
    window_start = cutoff - timedelta(days=ENGAGEMENT_WINDOW_DAYS)
    aggregates: list[sa.ColumnElement[Any]] = [
        sa.cast(customer, sa.String).label("e_customer"),
        _count(sa.func.sum(sa.case((ts >= window_start, 1), else_=0))).label("events_90d"),
    ]
    names = ["events_90d"]
    if category is not None:
        for index, value in enumerate(vocabulary.interests):
            name = f"int_{index:02d}"
            aggregates.append(_count(sa.func.sum(sa.case((category == value, 1), else_=0))).label(name))
            names.append(name)
    if device is not None:
        for index, value in enumerate(vocabulary.devices):
            name = f"dev_{index:02d}"
            aggregates.append(_count(sa.func.sum(sa.case((device == value, 1), else_=0))).label(name))
            names.append(name)
    sub = (
        sa.select(*aggregates)
        .where(ts < cutoff, *source.row_filter())
        .group_by(sa.cast(customer, sa.String))
        .subquery("event_agg")
    )
    return sub, names


def _wide_query(mapping: SourceMapping, vocabulary: Vocabulary, as_of: date) -> sa.Select[Any]:
    """The wide table projected to the feature columns: it is a snapshot, so D only bounds signups."""
    cutoff = _as_of_bound(as_of)
    spend, channels = dict(mapping.spend_by_category), dict(mapping.orders_by_channel)
    cust_map = mapping.customers
    source = _Source(cust_map, [*spend.values(), *channels.values()])
    key = source.raw("customer_id")
    assert key is not None
    selected: list[sa.ColumnElement[Any]] = [sa.cast(key, sa.String).label("customer_key")]
    for canonical in CUSTOMER_COLUMNS:
        column = source.value(canonical)
        selected.append((column if column is not None else sa.null()).label(canonical))
    for canonical, label in _WIDE_COLUMNS:
        column = source.value(canonical)
        if column is not None:
            selected.append(column.label(label))
    # Breakdown columns only for labels of the vocabulary (a vocabulary from an earlier run may differ).
    selected.extend(
        source.table.c[channels[value]].label(f"ch_{index:02d}")
        for index, value in enumerate(vocabulary.channels)
        if value in channels
    )
    selected.extend(
        source.table.c[spend[value]].label(f"cat_{index:02d}")
        for index, value in enumerate(vocabulary.categories)
        if value in spend
    )
    query = sa.select(*selected).where(key.is_not(None))
    signup, signup_map = source.raw("signup_date"), cust_map.field("signup_date")
    if signup is not None and signup_map is not None and signup_map.format is None:
        query = query.where(sa.or_(signup.is_(None), signup < cutoff))
    return query.order_by(key)


# -- finishing a chunk ------------------------------------------------------------------------------------------


def _argmax_label(frame: pd.DataFrame, prefix: str, values: Sequence[str]) -> pd.Series:
    columns = [f"{prefix}_{i:02d}" for i in range(len(values))]
    present = [c for c in columns if c in frame]
    if not present:
        return pd.Series([None] * len(frame), index=frame.index, dtype="object")
    matrix = frame[present].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64", na_value=0.0)
    matrix = np.nan_to_num(matrix, nan=0.0)
    best = matrix.argmax(axis=1)
    labels = np.asarray([values[columns.index(c)] for c in present], dtype=object)[best]
    labels[matrix.max(axis=1) <= 0] = None
    return pd.Series(labels, index=frame.index, dtype="object")


def _label(raw: pd.DataFrame, prefix: str, values: Sequence[str], direct: str) -> pd.Series:
    """Arg-max of the per-value counts, or the source's own column when it only has the answer."""
    if not any(f"{prefix}_{i:02d}" in raw for i in range(len(values))) and direct in raw:
        return raw[direct].astype("string")
    return _argmax_label(raw, prefix, values).astype("string")


def _to_utc_naive(series: pd.Series, fmt: str | None = None) -> pd.Series:
    """Dates or timestamps (objects or text in ``fmt``) as naive UTC timestamps; unparseable values become NaT."""
    if fmt == ISO_FORMAT:
        fmt = "ISO8601"
    if len(series) == 0:
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    converted = pd.to_datetime(series, utc=True, errors="coerce", format=fmt)
    return converted.dt.tz_localize(None)


def _to_boolean(series: pd.Series) -> pd.Series:
    """Yes/no values from booleans, 0/1 or text (true/false, t/f, yes/no, y/n); anything else is null."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.infer_dtype(series, skipna=True) == "boolean":
        return series.astype("boolean")
    text = series.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE_TEXT).fillna(False).to_numpy(dtype=bool)] = True
    out[text.isin(_FALSE_TEXT).fillna(False).to_numpy(dtype=bool)] = False
    return out


def _numbers(raw: pd.DataFrame, column: str) -> pd.Series | None:
    return pd.to_numeric(raw[column], errors="coerce").astype("float64") if column in raw else None


def finish_features(
    raw: pd.DataFrame,
    vocabulary: Vocabulary,
    as_of: date,
    *,
    formats: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """Turn one chunk of aggregate rows into the feature table (vectorised; no per-row Python).

    ``formats`` gives the date format of text date columns by raw column label (see :func:`date_formats`).
    Customers whose parsed signup date is on or after D are dropped (they do not exist yet as of D).
    """
    formats = formats or {}
    cutoff = pd.Timestamp(_as_of_bound(as_of))
    signup = _to_utc_naive(raw["signup_date"], formats.get("signup_date"))
    exists = (signup < cutoff) | signup.isna()
    if not exists.all():
        raw, signup = raw.loc[exists], signup.loc[exists]
    out = pd.DataFrame(index=raw.index)
    out["customer_key"] = raw["customer_key"].astype("string")

    birth = _to_utc_naive(raw["birth_date"], formats.get("birth_date"))
    had_birth = raw["birth_date"].notna()
    if pd.api.types.infer_dtype(raw["birth_date"], skipna=True) == "string":  # blank text is no birth date
        had_birth &= raw["birth_date"].astype("string").str.strip().ne("").fillna(False).astype(bool)
    years = cutoff.year - birth.dt.year
    before_birthday = (birth.dt.month > cutoff.month) | ((birth.dt.month == cutoff.month) & (birth.dt.day > cutoff.day))
    out["age"] = (years - before_birthday.astype("float64")).astype("float64")
    # An unparseable birth date is kept as NaN age but flagged, so validation can quarantine it with a reason.
    out["birth_date_invalid"] = (had_birth & birth.isna()).astype(bool)

    for name in ("gender", "country", "region", "income_band", "occupation"):
        # An email address or phone number typed into a free-text field is personal data: it becomes "unknown".
        out[name] = redact_personal(raw[name].astype("string"))
    out["household_size"] = pd.to_numeric(raw["household_size"], errors="coerce").astype("Float64")
    out["tenure_days"] = ((cutoff - signup).dt.days).astype("Float64")

    frequency = _numbers(raw, "frequency")
    out["frequency"] = (frequency.fillna(0) if frequency is not None else pd.Series(0, index=raw.index)).astype("int64")
    monetary = _numbers(raw, "monetary")
    monetary = monetary.fillna(0.0).round(MONEY_DECIMALS) if monetary is not None else 0.0
    out["monetary"] = pd.Series(monetary, index=raw.index, dtype="float64")
    out["aov"] = (out["monetary"] / out["frequency"].where(out["frequency"] > 0)).astype("float64")
    returns = _numbers(raw, "returns")
    out["returns"] = (
        returns.fillna(0).astype("int64")
        if returns is not None
        else pd.Series(pd.NA, index=raw.index, dtype="Int64")  # no return information in the source
    )
    if "last_order_at" in raw:
        last = _to_utc_naive(raw["last_order_at"], formats.get("last_order_at"))
        out["recency_days"] = ((cutoff - last).dt.total_seconds() / 86_400.0).astype("float64")
    else:
        out["recency_days"] = np.nan

    out["preferred_channel"] = _label(raw, "ch", vocabulary.channels, "preferred_channel")
    out["preferred_device"] = _label(raw, "dev", vocabulary.devices, "preferred_device")
    out["top_category"] = _label(raw, "cat", vocabulary.categories, "top_category")
    out["top_interest"] = _label(raw, "int", vocabulary.interests, "top_interest")
    events_90d = _numbers(raw, "events_90d")
    if events_90d is not None:
        out["events_90d"] = events_90d.fillna(0).astype("int64")
        out["engagement"] = out["events_90d"] / (ENGAGEMENT_WINDOW_DAYS / 30.0)
    else:  # no activity source: unknown, not zero
        out["events_90d"] = pd.Series(pd.NA, index=raw.index, dtype="Int64")
        out["engagement"] = np.nan

    for name in ("marketing_consent", "profiling_consent"):
        out[name] = _to_boolean(raw[name])

    spend_total = out["monetary"].where(out["monetary"] > 0)
    for index, category in enumerate(vocabulary.categories):
        spend = _numbers(raw, f"cat_{index:02d}")
        spend = spend.fillna(0.0).round(MONEY_DECIMALS) if spend is not None else 0.0
        out[spend_column(category, index)] = (spend / spend_total).fillna(0.0).astype("float64")
    return out.reset_index(drop=True)


# -- running it -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureChunk:
    """One chunk of finished features."""

    index: int
    frame: pd.DataFrame


def iter_features(
    engine: sa.Engine,
    mapping: SourceMapping,
    as_of: date,
    *,
    chunk_rows: int = 100_000,
    vocabulary: Vocabulary | None = None,
) -> tuple[Vocabulary, Iterator[FeatureChunk]]:
    """Run the feature query and yield finished chunks of at most ``chunk_rows`` customers."""
    try:
        with engine.connect() as conn:
            vocab = vocabulary or discover_vocabulary(conn, mapping, as_of)
    except (sa.exc.DBAPIError, sa.exc.CompileError) as exc:
        raise SourceError(_explain_source_error(exc, mapping)) from exc
    # A category that is really an email address or phone number never becomes a trait, a persona word or a prompt.
    vocab = Vocabulary(
        drop_personal_values(vocab.categories),
        drop_personal_values(vocab.interests),
        drop_personal_values(vocab.channels),
        drop_personal_values(vocab.devices),
    )
    formats = date_formats(mapping)

    def finish(raw: pd.DataFrame) -> pd.DataFrame:
        return finish_features(raw, vocab, as_of, formats=formats)

    def generate() -> Iterator[FeatureChunk]:
        query = build_feature_query(mapping, vocab, as_of)
        if engine.dialect.name == "duckdb":
            yield from _duckdb_arrow_chunks(engine, query, chunk_rows, mapping, finish)
            return
        with engine.connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            except (sa.exc.DBAPIError, sa.exc.CompileError) as exc:
                raise SourceError(_explain_source_error(exc, mapping)) from exc
            keys = list(result.keys())
            read = 0
            try:
                for index, rows in enumerate(result.partitions(chunk_rows)):
                    raw = pd.DataFrame.from_records(rows, columns=keys)
                    read += len(raw)
                    yield FeatureChunk(index, finish_features(raw, vocab, as_of, formats=formats))
            except sa.exc.DBAPIError as exc:
                # Rows are fetched lazily (server-side cursor): a dropped connection or a bad value surfaces here.
                if isinstance(exc, sa.exc.OperationalError) or exc.connection_invalidated:
                    orig = getattr(exc, "orig", None) or exc
                    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
                    raise SourceError(
                        f"lost the warehouse connection after {read:,} customer(s) of the feature query: "
                        f"{reason}. Nothing was published; rerun the extract "
                        "(it replaces its partial output)"
                    ) from exc
                raise SourceError(_explain_source_error(exc, mapping)) from exc

    return vocab, generate()


def count_null_keys(engine: sa.Engine, mapping: SourceMapping) -> int:
    """Customer rows without a key: the feature query cannot carry them, so they are counted and quarantined.

    In the Segment layout, identify rows without a user id are anonymous visitors, not customers: not counted.
    """
    if mapping.shape == "segment":
        return 0
    source = _Source(mapping.customers)
    key = source.raw("customer_id")
    assert key is not None
    query = sa.select(sa.func.count()).select_from(source.table).where(key.is_(None), *source.row_filter())
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except (sa.exc.DBAPIError, sa.exc.CompileError) as exc:
        raise SourceError(_explain_source_error(exc, mapping)) from exc


def _duckdb_arrow_chunks(
    engine: sa.Engine,
    query: sa.Select[Any],
    chunk_rows: int,
    mapping: SourceMapping,
    finish: Callable[[pd.DataFrame], pd.DataFrame],
) -> Iterator[FeatureChunk]:
    """DuckDB fast path: the same compiled query, streamed as Arrow record batches.

    Going through DB-API rows costs more than the query itself (every value becomes a Python object and is then
    rebuilt into columns); DuckDB hands back columnar batches directly.
    """
    import duckdb

    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    params = [values[name] for name in (compiled.positiontup or ())]
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        reader = None
        try:
            reader = driver.sql(str(compiled), params=params).to_arrow_reader(chunk_rows)
            for index, batch in enumerate(reader):
                yield FeatureChunk(index, finish(batch.to_pandas()))
        except duckdb.Error as exc:
            raise SourceError(_explain_source_error(exc, mapping)) from exc
        finally:
            # An abandoned stream (a write failed downstream) must release DuckDB's open result before the
            # connection goes back to the pool, or the pool's rollback fails on it.
            if reader is not None:
                reader.close()


def _explain_source_error(exc: Exception, mapping: SourceMapping) -> str:
    tables = ", ".join(m.qualified_name for m in mapping.tables())
    orig = getattr(exc, "orig", None)
    first_line = (str(orig if orig is not None else exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"the feature query over {tables} failed: {first_line}. "
        "Check that the mapped tables and columns exist (persona-pipeline check-mapping explains each one)."
    )


def extract_to_frames(
    engine: sa.Engine,
    mapping: SourceMapping,
    as_of: date,
    *,
    chunk_rows: int = 100_000,
    on_chunk: Callable[[FeatureChunk], None] | None = None,
) -> tuple[Vocabulary, list[pd.DataFrame]]:
    """Convenience for small data and tests: every chunk as a DataFrame."""
    started = time.perf_counter()
    vocab, chunks = iter_features(engine, mapping, as_of, chunk_rows=chunk_rows)
    frames = []
    for chunk in chunks:
        frames.append(chunk.frame)
        if on_chunk:
            on_chunk(chunk)
    log.info("extracted %d rows in %.2fs", sum(len(f) for f in frames), time.perf_counter() - started)
    return vocab, frames


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table of a feature frame (string columns as Arrow strings, no pandas index)."""
    return pa.Table.from_pandas(frame, preserve_index=False)
