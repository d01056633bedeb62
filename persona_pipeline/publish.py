"""Output tables for BI tools: created if missing, the run's date replaced as a whole in one transaction.

Tables (in ``warehouse.output_schema``): persona_runs, segment_snapshots, segment_traits, personas,
persona_images, segment_membership, quarantine; plus ``latest_*`` views that always show the newest successful
run. Bulk rows go through the warehouse's native fast path (DuckDB Arrow scan, PostgreSQL COPY) inside the same
transaction as the deletes, so readers see the old partition or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from persona_pipeline.warehouse.mapping import check_identifier

log = logging.getLogger(__name__)

TABLES = (
    "persona_runs",
    "segment_snapshots",
    "segment_traits",
    "personas",
    "persona_images",
    "segment_membership",
    "quarantine",
)


def define_tables(metadata: sa.MetaData, schema: str | None) -> dict[str, sa.Table]:
    """SQLAlchemy definitions of every output table (documented column by column in docs/bi.md)."""
    dt = sa.Column("dt", sa.Date, nullable=False)

    def table(name: str, *columns: sa.Column[Any]) -> sa.Table:
        return sa.Table(name, metadata, dt._copy(), *columns, schema=schema)

    money = sa.Double
    return {
        "persona_runs": table(
            "persona_runs",
            sa.Column("run_id", sa.String(250), nullable=False),
            sa.Column("config_hash", sa.String(32)),
            sa.Column("method", sa.String(32)),
            sa.Column("image_provider", sa.String(32)),
            sa.Column("status", sa.String(16)),
            sa.Column("started_at", sa.DateTime),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("rows_extracted", sa.BigInteger),
            sa.Column("rows_valid", sa.BigInteger),
            sa.Column("rows_quarantined", sa.BigInteger),
            sa.Column("rows_excluded", sa.BigInteger),
            sa.Column("rows_suppressed", sa.BigInteger),
            sa.Column("segments", sa.Integer),
            sa.Column("personas", sa.Integer),
            sa.Column("images_total", sa.Integer),
            sa.Column("images_generated", sa.Integer),
            sa.Column("images_cached", sa.Integer),
            sa.Column("images_fallback", sa.Integer),
            sa.Column("image_cost_usd", money),
            sa.Column("missing_fields", sa.Text),
            sa.Column("gallery_url", sa.Text),
        ),
        "segment_snapshots": table(
            "segment_snapshots",
            sa.Column("segment_id", sa.String(64), nullable=False),
            sa.Column("method", sa.String(32)),
            sa.Column("label", sa.String(128)),
            sa.Column("size", sa.BigInteger),
            sa.Column("share", sa.Double),
            sa.Column("median_age", sa.Double),
            sa.Column("aov", money),
            sa.Column("recency_days", sa.Double),
            sa.Column("frequency", sa.Double),
            sa.Column("monetary", money),
            sa.Column("clv", money),
            sa.Column("engagement", sa.Double),
            sa.Column("tenure_days", sa.Double),
            sa.Column("return_rate", sa.Double),
            sa.Column("previous_size", sa.BigInteger),
            sa.Column("size_change", sa.Double),
            sa.Column("drift_status", sa.String(16)),
            sa.Column("moved_traits", sa.Text),
        ),
        "segment_traits": table(
            "segment_traits",
            sa.Column("segment_id", sa.String(64), nullable=False),
            sa.Column("dimension", sa.String(64)),
            sa.Column("value", sa.String(256)),
            sa.Column("segment_share", sa.Double),
            sa.Column("population_share", sa.Double),
            sa.Column("lift", sa.Double),
            sa.Column("support", sa.BigInteger),
        ),
        "personas": table(
            "personas",
            sa.Column("persona_id", sa.String(80), nullable=False),
            sa.Column("segment_id", sa.String(64)),
            sa.Column("method", sa.String(32)),
            sa.Column("name", sa.String(256)),
            sa.Column("tagline", sa.Text),
            sa.Column("narrative", sa.Text),
            sa.Column("goals", sa.Text),
            sa.Column("pain_points", sa.Text),
            sa.Column("channels", sa.Text),
            sa.Column("recommendations", sa.Text),
            sa.Column("size", sa.BigInteger),
            sa.Column("share", sa.Double),
            sa.Column("median_age", sa.Double),
            sa.Column("aov", money),
            sa.Column("frequency", sa.Double),
            sa.Column("monetary", money),
            sa.Column("recency_days", sa.Double),
            sa.Column("clv", money),
            sa.Column("content_hash", sa.String(32)),
            sa.Column("narrative_source", sa.String(32)),
            sa.Column("image_url", sa.Text),
            sa.Column("persona_json_url", sa.Text),
        ),
        "persona_images": table(
            "persona_images",
            sa.Column("persona_id", sa.String(80), nullable=False),
            sa.Column("variant", sa.String(64)),
            sa.Column("style", sa.String(32)),
            sa.Column("provider", sa.String(32)),
            sa.Column("model", sa.String(64)),
            sa.Column("prompt_hash", sa.String(32)),
            sa.Column("cache_key", sa.String(64)),
            sa.Column("object_key", sa.Text),
            sa.Column("image_url", sa.Text),
            sa.Column("content_type", sa.String(32)),
            sa.Column("size_bytes", sa.BigInteger),
            sa.Column("width", sa.Integer),
            sa.Column("height", sa.Integer),
            sa.Column("cost_usd", money),
            sa.Column("cached", sa.Boolean),
            sa.Column("flags", sa.String(128)),
        ),
        "segment_membership": table(
            "segment_membership",
            sa.Column("customer_key", sa.String(128), nullable=False),
            sa.Column("segment_id", sa.String(64), nullable=False),
        ),
        "quarantine": table(
            "quarantine",
            sa.Column("source", sa.String(64)),
            sa.Column("customer_key", sa.String(128)),
            sa.Column("rule", sa.String(128)),
            sa.Column("column_name", sa.String(64)),
            sa.Column("value", sa.Text),
        ),
    }


def _qualified(schema: str | None, name: str, dialect: sa.Dialect) -> str:
    preparer = dialect.identifier_preparer
    return f"{preparer.quote_schema(schema)}.{preparer.quote(name)}" if schema else preparer.quote(name)


def ensure_schema(engine: sa.Engine, schema: str | None) -> dict[str, sa.Table]:
    """Create the output schema, tables and ``latest_*`` views if they do not exist."""
    if schema is not None:
        check_identifier(schema, "warehouse.output_schema")
    metadata = sa.MetaData()
    tables = define_tables(metadata, schema)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two dates published at once would race on CREATE SCHEMA/TABLE/VIEW ("duplicate key value violates
            # unique constraint pg_namespace_nspname_index"): take turns, for this transaction only.
            key = int.from_bytes(hashlib.sha256(f"persona_pipeline:{schema}".encode()).digest()[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        if schema is not None:
            conn.execute(
                sa.text(f"CREATE SCHEMA IF NOT EXISTS {engine.dialect.identifier_preparer.quote_schema(schema)}")
            )
        metadata.create_all(conn, checkfirst=True)
        runs = _qualified(schema, "persona_runs", engine.dialect)
        for name in TABLES:
            view = _qualified(schema, f"latest_{name}", engine.dialect)
            source = _qualified(schema, name, engine.dialect)
            conn.execute(
                sa.text(
                    f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source} "
                    f"WHERE dt = (SELECT max(dt) FROM {runs} WHERE status = 'success')"
                )
            )
    return tables


def _bulk_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    dialect = conn.dialect.name
    columns = [c.name for c in table.columns]
    frame = frame[columns]
    target = _qualified(table.schema, table.name, conn.dialect)
    driver: Any = conn.connection.driver_connection
    if dialect == "duckdb" and hasattr(driver, "register"):
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        view = f"_persona_insert_{table.name}"
        driver.register(view, arrow)
        try:
            quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
            driver.execute(f"INSERT INTO {target} ({quoted}) SELECT {quoted} FROM {view}")
        finally:
            driver.unregister(view)
        return
    if dialect == "postgresql" and hasattr(driver, "cursor") and conn.dialect.driver == "psycopg":
        quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
        records = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
        with driver.cursor() as cursor, cursor.copy(f"COPY {target} ({quoted}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(record)
        return
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    for start in range(0, len(rows), 10_000):
        conn.execute(table.insert(), rows[start : start + 10_000])


def replace_partition(
    engine: sa.Engine,
    schema: str | None,
    logical_date: date,
    frames: Mapping[str, pd.DataFrame],
    *,
    latest_only: Collection[str] = (),
) -> dict[str, int]:
    """Delete the date's rows from every output table and insert ``frames`` — all in one transaction.

    ``frames`` maps table name to rows without the ``dt`` column; tables not given are still cleared for the date,
    so a rerun never leaves rows of an earlier attempt behind. Tables in ``latest_only`` keep just their newest
    date (a customer erased at the source leaves them with the next run).
    """
    tables = ensure_schema(engine, schema)
    unknown = set(frames) - set(tables)
    if unknown:
        raise ValueError(f"unknown output table(s): {sorted(unknown)}")
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for name in TABLES:
            table = tables[name]
            conn.execute(table.delete().where(table.c.dt == logical_date))
            frame = frames.get(name)
            if frame is None:
                counts[name] = 0
                continue
            frame = frame.copy()
            frame.insert(0, "dt", logical_date)
            for column in table.columns:
                if column.name not in frame:
                    frame[column.name] = None
            _bulk_insert(conn, table, frame)
            counts[name] = len(frame)
        for name in latest_only:
            table = tables[name]
            newest = sa.select(sa.func.max(table.c.dt)).scalar_subquery()
            conn.execute(table.delete().where(table.c.dt < newest))
    log.info("published %s for %s: %s", schema or "(default schema)", logical_date, counts)
    return counts


def table_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of one table's rows (for the Hive-partitioned copies in the object store)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def read_partition(engine: sa.Engine, schema: str | None, table: str, logical_date: date) -> pd.DataFrame:
    """Rows of one output table for one date (used by tests, the CLI and the report)."""
    tables = define_tables(sa.MetaData(), schema)
    query = sa.select(tables[table]).where(tables[table].c.dt == logical_date)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all())


def json_list(values: Sequence[Any]) -> str:
    import json

    from persona_pipeline.contracts import to_jsonable

    return json.dumps(to_jsonable(list(values)), ensure_ascii=False, sort_keys=True)
