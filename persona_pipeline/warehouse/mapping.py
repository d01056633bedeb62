"""Source mapping: where the canonical customer, order and event fields live in the user's warehouse.

A YAML file describes the user's schema in one of three shapes (see ``docs/mapping.md``):

* ``normalised`` — customers, orders and events tables (the sample warehouse's layout, :func:`default_mapping`);
* ``customer360`` — one wide table per customer with pre-aggregated order counts, spend per category and
  purchases per channel, and no order rows at all (a snapshot: it has no history);
* ``segment`` — Segment's warehouse layout: an ``identifies`` table (several rows per user over time, traits as
  columns) and a ``tracks`` table whose order events carry revenue.

The YAML never contains SQL. Table, schema and column names are validated by :func:`check_identifier`; the only
transformations are a small vocabulary (value maps, date formats) that the feature query renders with bound
parameters. Parsing collects every problem at once (:func:`parse_mapping`), so ``check-mapping`` can explain them
all; :func:`load_mapping` raises one :class:`ConfigError` listing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from persona_pipeline.exceptions import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")

Shape = Literal["normalised", "customer360", "segment"]
SHAPES: tuple[str, ...] = get_args(Shape)
FieldKind = Literal["id", "text", "date", "timestamp", "number", "integer", "boolean"]

#: Column names that hold raw PII: they can never be mapped, so they can never be selected.
PII_COLUMNS: frozenset[str] = frozenset(
    {
        "email",
        "email_address",
        "phone",
        "phone_number",
        "mobile",
        "full_name",
        "first_name",
        "last_name",
        "address",
        "street",
        "street_address",
        "ip",
        "context_ip",
    }
)

#: strftime directives accepted in ``format`` (each has a PostgreSQL and a DuckDB equivalent).
FORMAT_DIRECTIVES: dict[str, str] = {
    "%Y": "YYYY",
    "%y": "YY",
    "%m": "MM",
    "%d": "DD",
    "%H": "HH24",
    "%M": "MI",
    "%S": "SS",
    "%f": "US",
    "%b": "Mon",
}
_FORMAT = re.compile(r"^(?:%[YymdHMSfb]|[-/.:, T])+$")
ISO_FORMAT = "iso"

#: What ``missing_fields()`` records for a wide table: it has no history, so a backfill sees today's values.
SNAPSHOT_NOTE = "history (customer360 is a snapshot: a backfill of an old date sees the table's current values)"


@dataclass(frozen=True)
class FieldSpec:
    """A canonical field: its kind (drives type checks and parsing), whether it is required, and what it means."""

    kind: FieldKind
    required: bool = False
    help: str = ""


_CUSTOMER_SPECS: dict[str, FieldSpec] = {
    "customer_id": FieldSpec("id", True, "the customer's key (any type; compared as text)"),
    "birth_date": FieldSpec("date", help="date of birth (age is computed as of D)"),
    "gender": FieldSpec("text", help="female | male | non_binary | unknown (use a value map for codes)"),
    "country": FieldSpec("text", help="country name"),
    "region": FieldSpec("text", help="region or state"),
    "income_band": FieldSpec("text", help="<25k | 25-50k | 50-75k | 75-100k | 100-150k | 150k+"),
    "occupation": FieldSpec("text", help="occupation or lifestyle"),
    "household_size": FieldSpec("integer", help="people in the household"),
    "signup_date": FieldSpec("date", help="first day as a customer (customers signing up on/after D are left out)"),
    "marketing_consent": FieldSpec("boolean", help="may be contacted for marketing"),
    "profiling_consent": FieldSpec("boolean", help="may be profiled; customers without it are excluded"),
}
_ORDER_SPECS: dict[str, FieldSpec] = {
    "customer_id": FieldSpec("id", True, "the ordering customer's key"),
    "ordered_at": FieldSpec("timestamp", True, "when the order was placed (UTC)"),
    "amount": FieldSpec("number", True, "order value"),
    "channel": FieldSpec("text", help="web, app, store, ... (preferred channel = most orders)"),
    "category": FieldSpec("text", help="product category (spend shares, top category)"),
    "status": FieldSpec("text", help="order status (see statuses.completed / statuses.returned)"),
}
_EVENT_SPECS: dict[str, FieldSpec] = {
    "customer_id": FieldSpec("id", True, "the customer's key"),
    "occurred_at": FieldSpec("timestamp", True, "when the event happened (UTC)"),
    "event_type": FieldSpec("text", help="page_view, search, ..."),
    "category": FieldSpec("text", help="category browsed (top interest)"),
    "device": FieldSpec("text", help="mobile, desktop, tablet (preferred device)"),
}
_WIDE_SPECS: dict[str, FieldSpec] = {
    "order_count": FieldSpec("integer", True, "completed orders to date (frequency)"),
    "total_spend": FieldSpec("number", True, "spend to date (monetary)"),
    "last_order_date": FieldSpec("timestamp", True, "date or time of the last order (recency)"),
    "returns": FieldSpec("integer", help="returned orders to date"),
    "events_90d": FieldSpec("integer", help="sessions or events in the last 90 days (engagement)"),
    "preferred_channel": FieldSpec("text", help="used when orders_by_channel is not given"),
    "top_category": FieldSpec("text", help="used when spend_by_category is not given"),
    "preferred_device": FieldSpec("text", help="most used device"),
    "top_interest": FieldSpec("text", help="most browsed category"),
}
_IDENTIFY_SPECS: dict[str, FieldSpec] = {
    "customer_id": FieldSpec("id", True, "user_id"),
    "timestamp": FieldSpec("timestamp", True, "when the identify call happened (timestamp or received_at)"),
    **{name: spec for name, spec in _CUSTOMER_SPECS.items() if name != "customer_id"},
}
_TRACK_SPECS: dict[str, FieldSpec] = {
    "customer_id": FieldSpec("id", True, "user_id"),
    "occurred_at": FieldSpec("timestamp", True, "timestamp (or received_at) of the event"),
    "event_name": FieldSpec("text", True, "the event column (order events are listed in order_events)"),
    "amount": FieldSpec("number", True, "revenue of order events"),
    "category": FieldSpec("text", help="product category property"),
    "channel": FieldSpec("text", help="sales channel property of order events"),
    "device": FieldSpec("text", help="device (e.g. context_device_type)"),
}

#: Canonical fields of each YAML section, per shape: the single source for parsing, checks and docs.
SECTION_SPECS: dict[str, dict[str, dict[str, FieldSpec]]] = {
    "normalised": {"customers": _CUSTOMER_SPECS, "orders": _ORDER_SPECS, "events": _EVENT_SPECS},
    "customer360": {"customers": {**_CUSTOMER_SPECS, **_WIDE_SPECS}},
    "segment": {"identifies": _IDENTIFY_SPECS, "tracks": _TRACK_SPECS},
}

#: Canonical fields per source table and whether each is required (normalised shape).
CUSTOMER_FIELDS: dict[str, bool] = {name: spec.required for name, spec in _CUSTOMER_SPECS.items()}
ORDER_FIELDS: dict[str, bool] = {name: spec.required for name, spec in _ORDER_SPECS.items()}
EVENT_FIELDS: dict[str, bool] = {name: spec.required for name, spec in _EVENT_SPECS.items()}


def check_identifier(value: str, where: str) -> str:
    """Return ``value`` if it is a plain SQL identifier, else raise a ConfigError naming ``where``."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(
            f"mapping {where}: {value!r} is not a plain SQL identifier (letters, digits, _ and $, "
            "starting with a letter or _, at most 63 characters)"
        )
    return value


MapValue = str | bool | int | float


@dataclass(frozen=True)
class FieldMapping:
    """How one canonical field is read: a column, optionally a value map and/or a date format."""

    column: str
    values: tuple[tuple[str, MapValue], ...] = ()  # source text -> canonical value
    default: MapValue | None = None  # for source values not in ``values`` (else: kept for text, null otherwise)
    format: str | None = None  # "iso" or a strftime pattern, for dates/timestamps stored as text

    def describe(self) -> str:
        """Short human description, e.g. ``sex (value map: 3 values, default 'unknown')``."""
        extras = []
        if self.values:
            default = f", default {self.default!r}" if self.default is not None else ""
            extras.append(f"value map: {len(self.values)} value(s){default}")
        if self.format:
            extras.append(f"format {self.format!r}")
        return self.column + (f" ({'; '.join(extras)})" if extras else "")


@dataclass(frozen=True)
class TableMapping:
    """One source table and the fields read from it (a canonical field that is not in ``fields`` is missing)."""

    table: str
    fields: dict[str, FieldMapping]
    schema: str | None = None
    section: str = ""  # the YAML section it came from, for messages
    latest_by: str | None = None  # canonical timestamp field: several rows per key, latest non-null value wins
    row_filter: tuple[str, tuple[str, ...]] | None = None  # (canonical field, values): only those rows count

    @property
    def columns(self) -> dict[str, str]:
        """Canonical field -> source column, for the mapped fields."""
        return {name: fm.column for name, fm in self.fields.items()}

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def column(self, canonical: str) -> str | None:
        fm = self.fields.get(canonical)
        return None if fm is None else fm.column

    def field(self, canonical: str) -> FieldMapping | None:
        return self.fields.get(canonical)


@dataclass(frozen=True)
class SourceMapping:
    """Where the pipeline reads customers, orders and events, in one of the supported shapes."""

    customers: TableMapping
    orders: TableMapping | None
    events: TableMapping | None
    completed_statuses: tuple[str, ...] = ("completed",)
    returned_statuses: tuple[str, ...] = ("returned",)
    max_categories: int = 24
    notes: tuple[str, ...] = field(default=())
    shape: Shape = "normalised"
    spend_by_category: tuple[tuple[str, str], ...] = ()  # customer360: (category, spend column)
    orders_by_channel: tuple[tuple[str, str], ...] = ()  # customer360: (channel, order count column)
    missing: tuple[str, ...] | None = None  # set by the YAML parser; None = derive from the tables
    sections: tuple[TableMapping, ...] = ()  # the YAML sections as written (segment: identifies, tracks)

    def yaml_sections(self) -> list[TableMapping]:
        """The tables as the user described them, with the canonical names of their YAML section."""
        if self.sections:
            return list(self.sections)
        return [m for m in (self.customers, self.orders, self.events) if m is not None]

    def tables(self) -> list[TableMapping]:
        """Every table read (a table used for both orders and events appears once)."""
        seen: dict[tuple[str | None, str], TableMapping] = {}
        for mapping in (self.customers, self.orders, self.events):
            if mapping is not None:
                seen.setdefault((mapping.schema, mapping.table), mapping)
        return list(seen.values())

    def missing_fields(self) -> list[str]:
        """Canonical optional fields this mapping does not provide (recorded with each run), plus limitations."""
        if self.missing is not None:
            return list(self.missing)
        missing = []
        for name, spec, mapping in (
            ("customers", CUSTOMER_FIELDS, self.customers),
            ("orders", ORDER_FIELDS, self.orders),
            ("events", EVENT_FIELDS, self.events),
        ):
            if mapping is None:
                missing.append(f"{name} (no table)")
                continue
            missing.extend(f"{name}.{canonical}" for canonical in spec if mapping.column(canonical) is None)
        return missing


def _identity(spec: Mapping[str, object]) -> dict[str, FieldMapping]:
    return {name: FieldMapping(name) for name in spec}


def default_mapping(schema: str | None = None) -> SourceMapping:
    """The mapping of the sample warehouse: tables customers, orders, events with canonical column names."""
    return SourceMapping(
        customers=TableMapping("customers", _identity(CUSTOMER_FIELDS), schema, "customers"),
        orders=TableMapping("orders", _identity(ORDER_FIELDS), schema, "orders"),
        events=TableMapping("events", _identity(EVENT_FIELDS), schema, "events"),
    )


def example_mapping_path(shape: str) -> Path:
    """Path of the documented example mapping shipped for ``shape`` (package data)."""
    if shape not in SHAPES:
        raise ConfigError(f"no example mapping for shape {shape!r}; shapes: {', '.join(SHAPES)}")
    return Path(str(resources.files("persona_pipeline") / "examples" / f"mapping-{shape}.yaml"))


# -- parsing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingProblem:
    """One thing wrong with a mapping: the YAML key (or table/column) and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class _Parser:
    """Builds a SourceMapping from parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, default_schema: str | None) -> None:
        self.problems: list[MappingProblem] = []
        self.default_schema = default_schema

    def problem(self, key: str, message: str) -> None:
        self.problems.append(MappingProblem(key, message))

    def identifier(self, value: Any, key: str) -> str | None:
        try:
            return check_identifier(value, key)
        except ConfigError as exc:
            self.problem(key, str(exc).split(": ", 1)[1])
            return None

    def keys(self, raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key not in allowed:
                self.problem(f"{where}.{key}" if where else str(key), f"unknown key; expected one of {list(allowed)}")

    def strings(self, raw: Any, key: str) -> tuple[str, ...]:
        if raw is None:
            return ()
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in items):
            self.problem(key, "expected a list of names, e.g. [completed]")
            return ()
        return tuple(str(v) for v in items)

    # -- fields

    def field_mapping(self, raw: Any, spec: FieldSpec, key: str) -> FieldMapping | None:
        if isinstance(raw, str):
            column = self.identifier(raw, key)
            return None if column is None else self._no_pii(FieldMapping(column), key)
        if not isinstance(raw, dict):
            self.problem(key, "expected a column name or a mapping with 'column' (and 'values', 'default', 'format')")
            return None
        self.keys(raw, ("column", "values", "default", "format"), key)
        if "column" not in raw:
            self.problem(f"{key}.column", "is required")
            return None
        column = self.identifier(raw["column"], f"{key}.column")
        values = self.value_map(raw.get("values"), spec, f"{key}.values")
        default = self.map_value(raw["default"], spec, f"{key}.default") if raw.get("default") is not None else None
        fmt = self.date_format(raw.get("format"), spec, f"{key}.format")
        if column is None:
            return None
        return self._no_pii(FieldMapping(column, values, default, fmt), key)

    def _no_pii(self, fm: FieldMapping, key: str) -> FieldMapping | None:
        if fm.column.lower() in PII_COLUMNS:
            self.problem(key, f"column {fm.column!r} holds raw PII and is never read; map a non-personal column")
            return None
        return fm

    def map_value(self, value: Any, spec: FieldSpec, key: str) -> MapValue | None:
        if spec.kind == "boolean":
            if isinstance(value, bool):
                return value
            self.problem(key, f"{value!r} is not true or false (this field is yes/no)")
            return None
        if spec.kind in ("integer", "number"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            self.problem(key, f"{value!r} is not a number")
            return None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        self.problem(key, f"{value!r} is not a text value")
        return None

    def value_map(self, raw: Any, spec: FieldSpec, key: str) -> tuple[tuple[str, MapValue], ...]:
        if raw is None:
            return ()
        if spec.kind in ("date", "timestamp", "id"):
            self.problem(key, f"value maps are not supported on {spec.kind} fields")
            return ()
        if not isinstance(raw, dict) or not raw:
            self.problem(key, "expected a mapping of source value to canonical value, e.g. {F: female}")
            return ()
        pairs = []
        for source, target in raw.items():
            if source is None:
                self.problem(f"{key}.null", "a value map cannot match null; use 'default:' for nulls and the rest")
                continue
            # Keys are compared with the column's text form: YAML true/false become 'true'/'false'.
            source_text = str(source).lower() if isinstance(source, bool) else str(source)
            value = self.map_value(target, spec, f"{key}.{source_text}")
            if value is not None:
                pairs.append((source_text, value))
        return tuple(pairs)

    def date_format(self, raw: Any, spec: FieldSpec, key: str) -> str | None:
        if raw is None:
            return None
        if spec.kind not in ("date", "timestamp"):
            self.problem(key, f"format only applies to date and timestamp fields, not {spec.kind}")
            return None
        if raw == ISO_FORMAT:
            return ISO_FORMAT
        if not isinstance(raw, str) or not _FORMAT.match(raw):
            self.problem(
                key,
                f"{raw!r} is not a supported date format: use 'iso' or a pattern of "
                f"{' '.join(FORMAT_DIRECTIVES)} and the separators - / . : , space T (e.g. '%d/%m/%Y')",
            )
            return None
        return raw

    # -- sections

    def table(
        self, raw: Any, section: str, specs: dict[str, FieldSpec], extra_keys: tuple[str, ...] = ()
    ) -> tuple[str, str | None, dict[str, FieldMapping]] | None:
        if not isinstance(raw, dict):
            self.problem(section, "expected a mapping with 'table' and 'columns' keys")
            return None
        self.keys(raw, ("table", "schema", "columns", *extra_keys), section)
        table = self.identifier(raw.get("table"), f"{section}.table") if "table" in raw else None
        if "table" not in raw:
            self.problem(f"{section}.table", "is required")
        schema = raw.get("schema", self.default_schema)
        if schema is not None:
            schema = self.identifier(schema, f"{section}.schema")
        given = raw.get("columns") or {}
        if not isinstance(given, dict):
            self.problem(f"{section}.columns", "expected a mapping of canonical field to column")
            given = {}
        fields: dict[str, FieldMapping] = {}
        for canonical, value in given.items():
            key = f"{section}.columns.{canonical}"
            if canonical not in specs:
                self.problem(key, f"unknown canonical field; known: {', '.join(specs)}")
                continue
            if value is None:
                continue  # declared missing
            fm = self.field_mapping(value, specs[canonical], key)
            if fm is not None:
                fields[canonical] = fm
        for canonical, spec in specs.items():
            if spec.required and canonical not in fields and given.get(canonical, "") is None:
                self.problem(f"{section}.columns.{canonical}", "is required and cannot be null")
            elif spec.required and canonical not in given:
                self.problem(f"{section}.columns.{canonical}", f"is required ({spec.help}); map it to a column")
        return (table, schema, fields) if table is not None else None

    def breakdown(self, raw: Any, key: str) -> tuple[tuple[str, str], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.problem(key, "expected a mapping of label to column, e.g. {fashion: spend_fashion}")
            return ()
        pairs = []
        for label, column in raw.items():
            name = self.identifier(column, f"{key}.{label}")
            if name is not None and str(label).strip():
                pairs.append((str(label), name))
        return tuple(pairs)


def _missing(section: str, specs: dict[str, FieldSpec], fields: Mapping[str, object]) -> list[str]:
    return [f"{section}.{name}" for name, spec in specs.items() if not spec.required and name not in fields]


def parse_mapping(raw: Any, *, schema: str | None = None) -> tuple[SourceMapping | None, list[MappingProblem]]:
    """Build a mapping from parsed YAML; returns it (None if unusable) and every problem found."""
    parser = _Parser(schema)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        parser.problem("(root)", f"a mapping file holds a YAML mapping of sections, not {type(raw).__name__}")
        return None, parser.problems
    shape = raw.get("shape", "normalised")
    if shape not in SHAPES:
        parser.problem("shape", f"{shape!r} is not a known shape; use one of {', '.join(SHAPES)}")
        return None, parser.problems
    if "schema" in raw and raw["schema"] is not None:
        parser.default_schema = parser.identifier(raw["schema"], "schema")
    max_categories = raw.get("max_categories", 24)
    if not isinstance(max_categories, int) or isinstance(max_categories, bool) or not 1 <= max_categories <= 64:
        parser.problem("max_categories", f"{max_categories!r} is not a whole number between 1 and 64")
        max_categories = 24
    common = ("version", "shape", "schema", "max_categories")
    if shape == "normalised":
        parser.keys(raw, (*common, "customers", "orders", "events", "statuses"), "")
        mapping = _parse_normalised(parser, raw)
    elif shape == "customer360":
        parser.keys(raw, (*common, "customers"), "")
        mapping = _parse_wide(parser, raw)
    else:
        parser.keys(raw, (*common, "identifies", "tracks"), "")
        mapping = _parse_segment(parser, raw)
    if mapping is not None:
        mapping = _replace(mapping, max_categories=max_categories)
    return mapping, parser.problems


def _replace(mapping: SourceMapping, **changes: Any) -> SourceMapping:
    from dataclasses import replace

    return replace(mapping, **changes)


def _parse_normalised(parser: _Parser, raw: dict[str, Any]) -> SourceMapping | None:
    specs = SECTION_SPECS["normalised"]
    tables: dict[str, TableMapping | None] = {}
    missing: list[str] = []
    for section in ("customers", "orders", "events"):
        if raw.get(section) is None:
            if section == "customers":
                parser.problem("customers", "the customers table is required (add a 'customers:' section)")
            tables[section] = None
            missing.append(f"{section} (no table)")
            continue
        parsed = parser.table(raw[section], section, specs[section])
        if parsed is None:
            tables[section] = None
            continue
        table, schema, fields = parsed
        tables[section] = TableMapping(table, fields, schema, section)
        missing.extend(_missing(section, specs[section], fields))
    statuses = raw.get("statuses") or {}
    completed: tuple[str, ...] = ("completed",)
    returned: tuple[str, ...] = ("returned",)
    if not isinstance(statuses, dict):
        parser.problem("statuses", "expected a mapping with 'completed' and 'returned' lists")
    else:
        parser.keys(statuses, ("completed", "returned"), "statuses")
        completed = parser.strings(statuses.get("completed", list(completed)), "statuses.completed") or completed
        returned = parser.strings(statuses.get("returned", list(returned)), "statuses.returned")
    customers = tables["customers"]
    if customers is None:
        return None
    return SourceMapping(
        customers=customers,
        orders=tables["orders"],
        events=tables["events"],
        completed_statuses=completed,
        returned_statuses=returned,
        missing=tuple(missing),
    )


def _parse_wide(parser: _Parser, raw: dict[str, Any]) -> SourceMapping | None:
    specs = SECTION_SPECS["customer360"]["customers"]
    if raw.get("customers") is None:
        parser.problem("customers", "the customer360 shape needs a 'customers:' section naming the wide table")
        return None
    parsed = parser.table(raw["customers"], "customers", specs, ("spend_by_category", "orders_by_channel"))
    section = raw["customers"] if isinstance(raw["customers"], dict) else {}
    spend = parser.breakdown(section.get("spend_by_category"), "customers.spend_by_category")
    channels = parser.breakdown(section.get("orders_by_channel"), "customers.orders_by_channel")
    if parsed is None:
        return None
    table, schema, fields = parsed
    missing = _missing("customers", specs, fields)
    # A breakdown stands in for its single-column fallback and vice versa: only report what is really absent.
    for breakdown, fallback, name in (
        (spend, "top_category", "spend_by_category"),
        (channels, "preferred_channel", "orders_by_channel"),
    ):
        if breakdown and f"customers.{fallback}" in missing:
            missing.remove(f"customers.{fallback}")
        elif not breakdown and fallback not in fields:
            missing.append(f"customers.{name}")
    missing.append(SNAPSHOT_NOTE)
    return SourceMapping(
        customers=TableMapping(table, fields, schema, "customers"),
        orders=None,
        events=None,
        shape="customer360",
        sections=(TableMapping(table, fields, schema, "customers"),),
        spend_by_category=spend,
        orders_by_channel=channels,
        notes=(SNAPSHOT_NOTE,),
        missing=tuple(missing),
    )


def _parse_segment(parser: _Parser, raw: dict[str, Any]) -> SourceMapping | None:
    specs = SECTION_SPECS["segment"]
    missing: list[str] = []
    sections: list[TableMapping] = []
    identifies = None
    if raw.get("identifies") is None:
        parser.problem("identifies", "the segment shape needs an 'identifies:' section (user traits)")
    else:
        parsed = parser.table(raw["identifies"], "identifies", specs["identifies"])
        if parsed is not None:
            table, schema, fields = parsed
            identifies = TableMapping(table, fields, schema, "identifies", latest_by="timestamp")
            sections.append(identifies)
            missing.extend(_missing("identifies", specs["identifies"], fields))
    orders = events = None
    order_events: tuple[str, ...] = ()
    return_events: tuple[str, ...] = ()
    if raw.get("tracks") is None:
        missing.append("tracks (no table)")
    else:
        section = raw["tracks"] if isinstance(raw["tracks"], dict) else {}
        parsed = parser.table(raw["tracks"], "tracks", specs["tracks"], ("order_events", "return_events"))
        order_events = parser.strings(section.get("order_events"), "tracks.order_events")
        return_events = parser.strings(section.get("return_events"), "tracks.return_events")
        if not order_events:
            parser.problem(
                "tracks.order_events", "list the event names that are completed orders, e.g. [Order Completed]"
            )
        if parsed is not None:
            table, schema, fields = parsed
            sections.append(TableMapping(table, fields, schema, "tracks"))
            missing.extend(_missing("tracks", specs["tracks"], fields))
            if not return_events:
                missing.append("tracks.return_events")
            # One tracks table feeds both views: order events become orders, every event counts as activity.
            order_fields = {
                target: fields[source]
                for source, target in (
                    ("customer_id", "customer_id"),
                    ("occurred_at", "ordered_at"),
                    ("amount", "amount"),
                    ("channel", "channel"),
                    ("category", "category"),
                    ("event_name", "status"),
                )
                if source in fields
            }
            event_fields = {
                target: fields[source]
                for source, target in (
                    ("customer_id", "customer_id"),
                    ("occurred_at", "occurred_at"),
                    ("event_name", "event_type"),
                    ("category", "category"),
                    ("device", "device"),
                )
                if source in fields
            }
            orders = TableMapping(
                table, order_fields, schema, "tracks", row_filter=("status", order_events + return_events)
            )
            events = TableMapping(table, event_fields, schema, "tracks")
    if identifies is None:
        return None
    return SourceMapping(
        customers=identifies,
        orders=orders,
        events=events,
        completed_statuses=order_events,
        returned_statuses=return_events,
        shape="segment",
        missing=tuple(missing),
        sections=tuple(sections),
    )


def read_mapping_yaml(path: str | Path) -> Any:
    """The parsed YAML of a mapping file (ConfigError when missing or not YAML)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} does not exist (warehouse.mapping)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"mapping file {path} is not valid YAML: {exc}") from None


def load_mapping(path: str | Path | None, *, schema: str | None = None) -> SourceMapping:
    """Load a YAML source mapping, or the default one when ``path`` is None.

    Raises one :class:`ConfigError` listing every problem (each naming its YAML key).
    """
    if path is None:
        return default_mapping(schema)
    mapping, problems = parse_mapping(read_mapping_yaml(path), schema=schema)
    if problems or mapping is None:
        lines = "\n".join(f"  {problem}" for problem in problems) or "  (no usable mapping)"
        raise ConfigError(
            f"mapping file {path} has {len(problems)} problem(s):\n{lines}\n"
            "(persona-pipeline check-mapping also checks it against the warehouse)"
        )
    return mapping
