"""Per-customer features computed in the warehouse, as of the run's date.

One dialect-portable SQLAlchemy Core query aggregates orders and events per customer (the heavy work stays in
the warehouse); the result is streamed in chunks, finished with vectorised arithmetic (ages, recency,
arg-max of channel/category counts) and written as Parquet parts, so memory is bounded by the chunk size.
Raw PII columns (names, emails, phones, addresses) are never selected.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from persona_pipeline.exceptions import SourceError
from persona_pipeline.warehouse.mapping import SourceMapping, TableMapping

log = logging.getLogger(__name__)

ENGAGEMENT_WINDOW_DAYS = 90


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


def _table(mapping: TableMapping) -> sa.TableClause:
    columns: list[sa.ColumnClause[Any]] = [sa.column(col) for col in mapping.columns.values() if col is not None]
    return sa.table(mapping.table, *columns, schema=mapping.schema)


def _col(table: sa.TableClause, mapping: TableMapping, canonical: str) -> sa.ColumnElement[Any] | None:
    name = mapping.column(canonical)
    return None if name is None else table.c[name]


def _as_of_bound(as_of: date) -> datetime:
    # D is the end of the data interval: everything strictly before midnight of D belongs to the run.
    return datetime(as_of.year, as_of.month, as_of.day)


def discover_vocabulary(conn: sa.Connection, mapping: SourceMapping, as_of: date) -> Vocabulary:
    """Find the category, channel and device values present before D (bounded by ``max_categories``)."""
    cutoff = _as_of_bound(as_of)

    def top_values(mapping_: TableMapping | None, canonical: str, ts_field: str) -> tuple[str, ...]:
        if mapping_ is None or mapping_.column(canonical) is None:
            return ()
        table = _table(mapping_)
        value = _col(table, mapping_, canonical)
        ts = _col(table, mapping_, ts_field)
        assert value is not None and ts is not None
        query = (
            sa.select(value, sa.func.count().label("n"))
            .where(ts < cutoff, value.is_not(None))
            .group_by(value)
            .order_by(sa.desc("n"), value)
            .limit(mapping.max_categories)
        )
        return tuple(str(row[0]) for row in conn.execute(query))

    return Vocabulary(
        categories=top_values(mapping.orders, "category", "ordered_at"),
        interests=top_values(mapping.events, "category", "occurred_at"),
        channels=top_values(mapping.orders, "channel", "ordered_at"),
        devices=top_values(mapping.events, "device", "occurred_at"),
    )


def build_feature_query(mapping: SourceMapping, vocabulary: Vocabulary, as_of: date) -> sa.Select[Any]:
    """The one portable query: customers left-joined to per-customer order and event aggregates before D."""
    cutoff = _as_of_bound(as_of)
    cust_map = mapping.customers
    customers = _table(cust_map)
    cust_id = _col(customers, cust_map, "customer_id")
    assert cust_id is not None
    selected: list[sa.ColumnElement[Any]] = [sa.cast(cust_id, sa.String).label("customer_key")]
    for canonical in (
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
    ):
        column = _col(customers, cust_map, canonical)
        selected.append((column if column is not None else sa.null()).label(canonical))

    joins: list[tuple[sa.Subquery, sa.ColumnElement[bool]]] = []
    if mapping.orders is not None:
        orders_sub, order_cols = _order_aggregates(mapping, vocabulary, cutoff)
        joins.append((orders_sub, orders_sub.c.o_customer == sa.cast(cust_id, sa.String)))
        selected.extend(orders_sub.c[name].label(name) for name in order_cols)
    if mapping.events is not None:
        events_sub, event_cols = _event_aggregates(mapping, vocabulary, cutoff)
        joins.append((events_sub, events_sub.c.e_customer == sa.cast(cust_id, sa.String)))
        selected.extend(events_sub.c[name].label(name) for name in event_cols)

    source: sa.FromClause = customers
    for sub, on in joins:
        source = source.outerjoin(sub, on)
    query = sa.select(*selected).select_from(source)
    signup = _col(customers, cust_map, "signup_date")
    if signup is not None:
        # A customer who signs up after D does not exist yet as of D (backfills reproduce that day).
        query = query.where(sa.or_(signup.is_(None), signup < cutoff))
    return query


def _order_aggregates(
    mapping: SourceMapping, vocabulary: Vocabulary, cutoff: datetime
) -> tuple[sa.Subquery, list[str]]:
    assert mapping.orders is not None
    omap = mapping.orders
    orders = _table(omap)
    customer = _col(orders, omap, "customer_id")
    ts = _col(orders, omap, "ordered_at")
    amount = _col(orders, omap, "amount")
    status = _col(orders, omap, "status")
    channel = _col(orders, omap, "channel")
    category = _col(orders, omap, "category")
    assert customer is not None and ts is not None and amount is not None
    completed: sa.ColumnElement[bool] = status.in_(mapping.completed_statuses) if status is not None else sa.true()
    returned: sa.ColumnElement[bool] = status.in_(mapping.returned_statuses) if status is not None else sa.false()
    aggregates: list[sa.ColumnElement[Any]] = [
        sa.cast(customer, sa.String).label("o_customer"),
        sa.func.sum(sa.case((completed, 1), else_=0)).label("frequency"),
        sa.func.sum(sa.case((completed, amount), else_=0)).label("monetary"),
        sa.func.sum(sa.case((returned, 1), else_=0)).label("returns"),
        sa.func.max(sa.case((completed, ts), else_=None)).label("last_order_at"),
    ]
    names = ["frequency", "monetary", "returns", "last_order_at"]
    if channel is not None:
        for index, value in enumerate(vocabulary.channels):
            name = f"ch_{index:02d}"
            aggregates.append(sa.func.sum(sa.case((sa.and_(completed, channel == value), 1), else_=0)).label(name))
            names.append(name)
    if category is not None:
        for index, value in enumerate(vocabulary.categories):
            name = f"cat_{index:02d}"
            aggregates.append(
                sa.func.sum(sa.case((sa.and_(completed, category == value), amount), else_=0)).label(name)
            )
            names.append(name)
    sub = sa.select(*aggregates).where(ts < cutoff).group_by(sa.cast(customer, sa.String)).subquery("order_agg")
    return sub, names


def _event_aggregates(
    mapping: SourceMapping, vocabulary: Vocabulary, cutoff: datetime
) -> tuple[sa.Subquery, list[str]]:
    assert mapping.events is not None
    emap = mapping.events
    events = _table(emap)
    customer = _col(events, emap, "customer_id")
    ts = _col(events, emap, "occurred_at")
    category = _col(events, emap, "category")
    device = _col(events, emap, "device")
    assert customer is not None and ts is not None
    window_start = cutoff - timedelta(days=ENGAGEMENT_WINDOW_DAYS)
    aggregates: list[sa.ColumnElement[Any]] = [
        sa.cast(customer, sa.String).label("e_customer"),
        sa.func.sum(sa.case((ts >= window_start, 1), else_=0)).label("events_90d"),
    ]
    names = ["events_90d"]
    if category is not None:
        for index, value in enumerate(vocabulary.interests):
            name = f"int_{index:02d}"
            aggregates.append(sa.func.sum(sa.case((category == value, 1), else_=0)).label(name))
            names.append(name)
    if device is not None:
        for index, value in enumerate(vocabulary.devices):
            name = f"dev_{index:02d}"
            aggregates.append(sa.func.sum(sa.case((device == value, 1), else_=0)).label(name))
            names.append(name)
    sub = sa.select(*aggregates).where(ts < cutoff).group_by(sa.cast(customer, sa.String)).subquery("event_agg")
    return sub, names


def _argmax_label(frame: pd.DataFrame, prefix: str, values: Sequence[str]) -> pd.Series:
    columns = [f"{prefix}_{i:02d}" for i in range(len(values))]
    present = [c for c in columns if c in frame]
    if not present:
        return pd.Series([None] * len(frame), index=frame.index, dtype="object")
    matrix = frame[present].to_numpy(dtype="float64", na_value=0.0)
    best = matrix.argmax(axis=1)
    labels = np.asarray(values, dtype=object)[best]
    labels[matrix.max(axis=1) <= 0] = None
    return pd.Series(labels, index=frame.index, dtype="object")


def _to_utc_naive(series: pd.Series) -> pd.Series:
    converted = pd.to_datetime(series, utc=True, errors="coerce")
    return converted.dt.tz_localize(None)


def finish_features(raw: pd.DataFrame, vocabulary: Vocabulary, as_of: date) -> pd.DataFrame:
    """Turn one chunk of aggregate rows into the feature table (vectorised; no per-row Python)."""
    cutoff = pd.Timestamp(_as_of_bound(as_of))
    out = pd.DataFrame(index=raw.index)
    out["customer_key"] = raw["customer_key"].astype("string")

    birth = pd.to_datetime(raw["birth_date"], errors="coerce")
    had_birth = raw["birth_date"].notna()
    years = cutoff.year - birth.dt.year
    before_birthday = (birth.dt.month > cutoff.month) | ((birth.dt.month == cutoff.month) & (birth.dt.day > cutoff.day))
    out["age"] = (years - before_birthday.astype("float64")).astype("float64")
    # An unparseable birth date is kept as NaN age but flagged, so validation can quarantine it with a reason.
    out["birth_date_invalid"] = had_birth & birth.isna()

    for name in ("gender", "country", "region", "income_band", "occupation"):
        out[name] = raw[name].astype("string")
    out["household_size"] = pd.to_numeric(raw["household_size"], errors="coerce").astype("Float64")
    signup = pd.to_datetime(raw["signup_date"], errors="coerce")
    out["tenure_days"] = ((cutoff - signup).dt.days).astype("Float64")

    frequency = pd.to_numeric(raw.get("frequency"), errors="coerce") if "frequency" in raw else None
    out["frequency"] = (frequency.fillna(0) if frequency is not None else pd.Series(0, index=raw.index)).astype("int64")
    monetary = pd.to_numeric(raw["monetary"], errors="coerce").fillna(0.0) if "monetary" in raw else 0.0
    out["monetary"] = pd.Series(monetary, index=raw.index, dtype="float64")
    out["aov"] = (out["monetary"] / out["frequency"].where(out["frequency"] > 0)).astype("float64")
    out["returns"] = pd.to_numeric(raw["returns"], errors="coerce").fillna(0).astype("int64") if "returns" in raw else 0
    if "last_order_at" in raw:
        last = _to_utc_naive(raw["last_order_at"])
        out["recency_days"] = ((cutoff - last).dt.total_seconds() / 86_400.0).astype("float64")
    else:
        out["recency_days"] = np.nan

    out["preferred_channel"] = _argmax_label(raw, "ch", vocabulary.channels).astype("string")
    out["preferred_device"] = _argmax_label(raw, "dev", vocabulary.devices).astype("string")
    out["top_category"] = _argmax_label(raw, "cat", vocabulary.categories).astype("string")
    out["top_interest"] = _argmax_label(raw, "int", vocabulary.interests).astype("string")
    events_90d = pd.to_numeric(raw["events_90d"], errors="coerce").fillna(0) if "events_90d" in raw else 0
    out["events_90d"] = pd.Series(events_90d, index=raw.index).astype("int64")
    out["engagement"] = out["events_90d"] / (ENGAGEMENT_WINDOW_DAYS / 30.0)

    for name in ("marketing_consent", "profiling_consent"):
        out[name] = (
            raw[name].astype("boolean")
            if raw[name].notna().any()
            else pd.Series(pd.NA, index=raw.index, dtype="boolean")
        )

    spend_total = out["monetary"].where(out["monetary"] > 0)
    for index, category in enumerate(vocabulary.categories):
        column = f"cat_{index:02d}"
        spend = pd.to_numeric(raw[column], errors="coerce").fillna(0.0) if column in raw else 0.0
        out[spend_column(category, index)] = (spend / spend_total).fillna(0.0).astype("float64")
    return out.reset_index(drop=True)


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
    except sa.exc.DBAPIError as exc:
        raise SourceError(_explain_source_error(exc, mapping)) from exc

    def generate() -> Iterator[FeatureChunk]:
        query = build_feature_query(mapping, vocab, as_of)
        with engine.connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            except sa.exc.DBAPIError as exc:
                raise SourceError(_explain_source_error(exc, mapping)) from exc
            keys = list(result.keys())
            for index, rows in enumerate(result.partitions(chunk_rows)):
                raw = pd.DataFrame.from_records(rows, columns=keys)
                yield FeatureChunk(index, finish_features(raw, vocab, as_of))

    return vocab, generate()


def _explain_source_error(exc: sa.exc.DBAPIError, mapping: SourceMapping) -> str:
    tables = ", ".join(
        f"{m.schema + '.' if m.schema else ''}{m.table}"
        for m in (mapping.customers, mapping.orders, mapping.events)
        if m is not None
    )
    first_line = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
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
