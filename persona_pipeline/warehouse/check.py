"""``check-mapping``: validate a source mapping against a live warehouse and explain every problem at once.

The mapping is parsed leniently (every YAML problem is collected), then each mapped table and column is looked
up with the SQLAlchemy inspector and its type compared with what the canonical field needs (text where a number
or timestamp is needed, a date format on a column that is not text, ...). When nothing is wrong, the vocabulary
is discovered and the feature query is run with ``LIMIT 0``, so whatever the checks cannot foresee surfaces
here rather than in the nightly run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from persona_pipeline.exceptions import ConfigError
from persona_pipeline.warehouse.mapping import (
    ISO_FORMAT,
    SECTION_SPECS,
    FieldMapping,
    FieldSpec,
    MappingProblem,
    SourceMapping,
    TableMapping,
    default_mapping,
    parse_mapping,
    read_mapping_yaml,
)

ColumnKind = Literal["integer", "number", "text", "date", "timestamp", "boolean", "other"]
#: Dialects whose SQL can parse text timestamps with a strftime pattern (see features.ParseTimestamp).
_PATTERN_DIALECTS = ("duckdb", "postgresql")
#: Timestamps compared inside the warehouse (the others are parsed after extraction, on any warehouse).
_SQL_TIMESTAMPS = {
    ("orders", "ordered_at"),
    ("events", "occurred_at"),
    ("tracks", "occurred_at"),
    ("identifies", "timestamp"),
}


@dataclass(frozen=True)
class ColumnInfo:
    """A reflected column: its name, the kind of values it holds, and the warehouse's type name."""

    name: str
    kind: ColumnKind
    type_name: str


@dataclass(frozen=True)
class MappingReport:
    """The outcome of a check: every problem, or what a run will read and which optional fields are missing."""

    source: str
    warehouse: str
    shape: str
    problems: tuple[MappingProblem, ...]
    reads: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    vocabulary: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        """The report as text for a terminal."""
        head = f"mapping {self.source} (shape {self.shape}) against {self.warehouse}"
        if self.problems:
            lines = [f"{head}: {len(self.problems)} problem(s)"]
            lines.extend(f"  - {problem}" for problem in self.problems)
            lines.append("Fix these and run check-mapping again (docs/mapping.md describes every key).")
            return "\n".join(lines)
        lines = [f"{head}: OK", "A run will extract:"]
        lines.extend(f"  {line}" for line in self.reads)
        for name, values in self.vocabulary.items():
            if values:
                lines.append(f"  {name} found ({len(values)}): {', '.join(values)}")
        if self.missing:
            lines.append("Not available (those features will be null, and each run records this list):")
            lines.extend(f"  - {item}" for item in self.missing)
        else:
            lines.append("Every optional field is mapped.")
        return "\n".join(lines)


def column_kind(type_: Any) -> ColumnKind:
    """Classify a reflected SQLAlchemy type (or a type name from information_schema)."""
    if isinstance(type_, sa.types.TypeEngine):
        if isinstance(type_, sa.Boolean):
            return "boolean"
        if isinstance(type_, sa.Integer):
            return "integer"
        if isinstance(type_, sa.Numeric):  # Float is a Numeric
            return "number"
        if isinstance(type_, sa.DateTime):
            return "timestamp"
        if isinstance(type_, sa.Date):
            return "date"
        if isinstance(type_, sa.String):
            return "text"
        type_ = str(type_) if not isinstance(type_, sa.types.NullType) else ""
    name = str(type_).lower()
    for pattern, kind in (
        (r"bool", "boolean"),
        (r"timestamp|datetime", "timestamp"),
        (r"^date\b", "date"),
        (r"^u?(tiny|small|medium|big|huge)?int(eger|\d+)?\b|serial", "integer"),
        (r"decimal|numeric|double|float|real|number|money", "number"),
        (r"char|text|string|uuid|clob|enum", "text"),
    ):
        if re.search(pattern, name):
            return kind  # type: ignore[return-value]
    return "other"


def reflect_columns(engine: sa.Engine, table: str, schema: str | None) -> dict[str, ColumnInfo] | None:
    """Columns of ``schema.table`` by name, or None when the table (or view) does not exist."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(table, schema=schema):
        return None
    try:
        reflected = inspector.get_columns(table, schema=schema)
        return {
            c["name"]: ColumnInfo(c["name"], column_kind(c["type"]), str(c["type"]).split("(")[0]) for c in reflected
        }
    except (sa.exc.DBAPIError, NotImplementedError):
        # Some dialects cannot reflect columns of every server version (duckdb-engine on DuckDB 2): the
        # standard information_schema answers the same question.
        columns = sa.table(
            "columns",
            sa.column("table_schema"),
            sa.column("table_name"),
            sa.column("column_name"),
            sa.column("data_type"),
            sa.column("ordinal_position"),
            schema="information_schema",
        )
        query = (
            sa.select(columns.c.column_name, columns.c.data_type)
            .where(
                columns.c.table_name == table,
                columns.c.table_schema == (schema or inspector.default_schema_name),
            )
            .order_by(columns.c.ordinal_position)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        return {str(name): ColumnInfo(str(name), column_kind(str(type_)), str(type_)) for name, type_ in rows}


def _table_names(engine: sa.Engine, schema: str | None) -> list[str]:
    try:
        inspector = sa.inspect(engine)
        return sorted(set(inspector.get_table_names(schema=schema)) | set(inspector.get_view_names(schema=schema)))
    except (sa.exc.DBAPIError, NotImplementedError):
        return []


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _type_problem(
    spec: FieldSpec, fm: FieldMapping, column: ColumnInfo, *, sql_timestamp: bool, dialect: str
) -> str | None:
    """Why ``column`` cannot hold the canonical field, or None."""
    kind, type_name = column.kind, column.type_name
    needs = {"number": "a number", "integer": "a whole number", "boolean": "yes/no"}.get(spec.kind, f"a {spec.kind}")
    if spec.kind in ("date", "timestamp"):
        if fm.format:
            if kind != "text":
                return f"has format {fm.format!r} but column {fm.column!r} is {type_name}, not text: remove 'format'"
            if sql_timestamp and fm.format != ISO_FORMAT and dialect not in _PATTERN_DIALECTS:
                return (
                    f"format {fm.format!r} cannot be parsed by {dialect} inside the query: use format: iso "
                    "(ISO-8601 text) or a timestamp column"
                )
            return None
        if kind in ("date", "timestamp"):
            return None
        if kind == "text":
            return (
                f"column {fm.column!r} is text ({type_name}) where {needs} is needed: add format: iso, or a "
                "pattern such as '%d/%m/%Y'"
            )
        return f"column {fm.column!r} is {type_name} where {needs} is needed"
    if fm.values or spec.kind in ("id", "text"):
        return None  # a value map compares the column's text form: any type works
    if spec.kind in ("number", "integer") and kind not in ("integer", "number"):
        hint = " (numbers stored as text: expose a numeric column through a view)" if kind == "text" else ""
        return f"column {fm.column!r} is {type_name} where {needs} is needed{hint}"
    if spec.kind == "boolean" and kind not in ("boolean", "integer"):
        hint = ": add a value map, e.g. values: {Y: true, N: false}" if kind == "text" else ""
        return f"column {fm.column!r} is {type_name} where {needs} is needed{hint}"
    return None


def _check_section(
    engine: sa.Engine, mapping: SourceMapping, section: TableMapping, problems: list[MappingProblem]
) -> list[str]:
    """Problems of one YAML section's table and columns; returns the summary lines of what it reads."""
    name = section.section or section.table
    specs = SECTION_SPECS[mapping.shape].get(name, {})
    columns = reflect_columns(engine, section.table, section.schema)
    if columns is None:
        known = _table_names(engine, section.schema)
        where = f" in schema {section.schema!r}" if section.schema else ""
        listing = f" (tables: {_listing(known)})" if known else ""
        problems.append(MappingProblem(f"{name}.table", f"table {section.qualified_name!r} not found{where}{listing}"))
        return []
    lowered = {c.lower(): c for c in columns}
    reads = [f"{name} <- {section.qualified_name}" + (" (snapshot)" if mapping.shape == "customer360" else "")]
    for canonical, fm in section.fields.items():
        key = f"{name}.columns.{canonical}"
        column = columns.get(fm.column)
        if column is None:
            near = lowered.get(fm.column.lower())
            hint = f"; did you mean {near!r}?" if near else f" (columns: {_listing(columns)})"
            problems.append(MappingProblem(key, f"column {fm.column!r} not found in {section.qualified_name}{hint}"))
            continue
        spec = specs.get(canonical)
        if spec is not None:
            why = _type_problem(
                spec,
                fm,
                column,
                sql_timestamp=(name, canonical) in _SQL_TIMESTAMPS,
                dialect=engine.dialect.name,
            )
            if why:
                problems.append(MappingProblem(key, why))
        reads.append(f"  {canonical:<18} <- {fm.describe()} [{column.type_name}]")
    if mapping.shape == "customer360":
        breakdowns = (
            ("spend_by_category", mapping.spend_by_category),
            ("orders_by_channel", mapping.orders_by_channel),
        )
        for label, pairs in breakdowns:
            for value, column_name in pairs:
                key = f"{name}.{label}.{value}"
                column = columns.get(column_name)
                if column is None:
                    problems.append(
                        MappingProblem(key, f"column {column_name!r} not found in {section.qualified_name}")
                    )
                elif column.kind not in ("integer", "number"):
                    problems.append(
                        MappingProblem(key, f"column {column_name!r} is {column.type_name} where a number is needed")
                    )
            if pairs:
                reads.append(f"  {label:<18} <- " + ", ".join(f"{v}: {c}" for v, c in pairs))
    if name == "tracks":
        reads.append(f"  order events       = {', '.join(mapping.completed_statuses) or '(none)'}")
        reads.append(f"  return events      = {', '.join(mapping.returned_statuses) or '(none)'}")
    if name == "identifies":
        reads.append("  (latest non-null value of each trait before D, per user)")
    return reads


def check_mapping(
    engine: sa.Engine,
    raw: Any,
    *,
    source: str = "(built-in default)",
    schema: str | None = None,
    as_of: date | None = None,
) -> MappingReport:
    """Check parsed mapping YAML (``raw``; None = the default mapping) against the warehouse behind ``engine``."""
    from persona_pipeline.warehouse.features import build_feature_query, discover_vocabulary

    warehouse = engine.url.render_as_string(hide_password=True)
    if raw is None:
        mapping: SourceMapping | None = default_mapping(schema)
        problems: list[MappingProblem] = []
    else:
        mapping, problems = parse_mapping(raw, schema=schema)
    shape = mapping.shape if mapping is not None else str(raw.get("shape", "?") if isinstance(raw, dict) else "?")
    if mapping is None:
        return MappingReport(source, warehouse, shape, tuple(problems))
    reads: list[str] = []
    try:
        for section in mapping.yaml_sections():
            reads.extend(_check_section(engine, mapping, section, problems))
    except sa.exc.DBAPIError as exc:
        problems.append(MappingProblem("(warehouse)", f"cannot inspect the warehouse: {_first_line(exc)}"))
    vocabulary: dict[str, tuple[str, ...]] = {}
    if not problems:
        as_of = as_of or date.today()
        try:
            with engine.connect() as conn:
                vocab = discover_vocabulary(conn, mapping, as_of)
                conn.execute(build_feature_query(mapping, vocab, as_of).limit(0)).fetchall()
            vocabulary = {
                "categories": vocab.categories,
                "channels": vocab.channels,
                "interests": vocab.interests,
                "devices": vocab.devices,
            }
        except (sa.exc.DBAPIError, sa.exc.CompileError) as exc:
            problems.append(MappingProblem("(feature query)", f"the warehouse rejected it: {_first_line(exc)}"))
    return MappingReport(
        source, warehouse, mapping.shape, tuple(problems), tuple(reads), tuple(mapping.missing_fields()), vocabulary
    )


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def check_mapping_file(
    path: str | Path | None, url: str, *, schema: str | None = None, as_of: date | None = None
) -> MappingReport:
    """Check the mapping file at ``path`` (None = the built-in default) against the warehouse at ``url``."""
    from persona_pipeline.warehouse.engine import warehouse_engine

    source = str(path) if path is not None else "(built-in default)"
    try:
        raw = read_mapping_yaml(path) if path is not None else None
    except ConfigError as exc:
        return MappingReport(source, url, "?", (MappingProblem("(file)", str(exc)),))
    if path is not None and raw is None:
        raw = {}
    with warehouse_engine(url) as engine:
        return check_mapping(engine, raw, source=source, schema=schema, as_of=as_of)
