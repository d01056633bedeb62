"""Reshape the synthetic sample into the other warehouse layouts the mapping supports (for tests).

* :func:`write_customer360` — one wide ``customer_360`` table: pre-aggregated spend per category, orders per
  channel, order count, total spend, last order date; codes and text dates instead of clean values; no order
  rows at all.
* :func:`write_segment` — Segment's layout: ``identifies`` (several rows per user over time, traits as columns,
  text birthdays, one row after D that must be ignored) and ``tracks`` (orders as ``Order Completed`` events
  with revenue, browsing events, anonymous rows).

Both keep the PII columns of the sample (names, e-mails, phones), so tests can show they are never read. The
column names match the example mappings shipped in ``persona_pipeline/examples``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from psycopg import sql as psycopg_sql

from persona_pipeline.warehouse.sample import CATEGORIES, CHANNELS, SampleData

SEGMENT_EVENT_NAMES = {
    "page_view": "Page Viewed",
    "product_view": "Product Viewed",
    "search": "Products Searched",
    "add_to_cart": "Product Added",
    "wishlist": "Product Added to Wishlist",
    "email_open": "Email Opened",
    "email_click": "Email Link Clicked",
    "app_open": "Application Opened",
}
ORDER_EVENT_NAMES = {"completed": "Order Completed", "returned": "Order Refunded", "cancelled": "Order Cancelled"}


def _register(con: duckdb.DuckDBPyConnection, data: SampleData) -> None:
    for name, table in data.tables().items():
        con.register(f"sample_{name}", table)


def write_normalised(path: Path, data: SampleData, as_of: date) -> None:
    """Write the sample's own customers, orders and events tables into the DuckDB file ``path``."""
    con = duckdb.connect(str(path))
    try:
        _register(con, data)
        for name in data.tables():
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM sample_{name}")
    finally:
        con.close()


def write_customer360(path: Path, data: SampleData, as_of: date) -> None:
    """Write the sample as one wide ``customer_360`` table (as of ``as_of``) into the DuckDB file ``path``."""
    spend = ",\n".join(
        f"coalesce(sum(o.amount) FILTER (WHERE o.status = 'completed' AND o.category = '{c}'), 0) AS spend_{c}"
        for c in CATEGORIES
    )
    channels = ",\n".join(
        f"count(*) FILTER (WHERE o.status = 'completed' AND o.channel = '{c}') AS orders_{c}" for c in CHANNELS
    )
    con = duckdb.connect(str(path))
    try:
        _register(con, data)
        con.execute(
            f"""
            CREATE OR REPLACE TABLE order_rollup AS
            SELECT o.customer_id,
                   count(*) FILTER (WHERE o.status = 'completed') AS orders_total,
                   coalesce(sum(o.amount) FILTER (WHERE o.status = 'completed'), 0) AS revenue_total,
                   CAST(max(o.ordered_at) FILTER (WHERE o.status = 'completed') AS DATE) AS last_order_date,
                   count(*) FILTER (WHERE o.status = 'returned') AS returns_total,
                   {spend},
                   {channels}
            FROM sample_orders o
            WHERE o.ordered_at < DATE '{as_of.isoformat()}'
            GROUP BY o.customer_id
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE event_rollup AS
            SELECT customer_id,
                   count(*) FILTER (WHERE occurred_at >= DATE '{as_of.isoformat()}' - INTERVAL 90 DAY) AS sessions_90d,
                   mode(device) AS main_device
            FROM sample_events WHERE occurred_at < DATE '{as_of.isoformat()}'
            GROUP BY customer_id
            """
        )
        rollup_columns = ", ".join(
            [f"coalesce(r.spend_{c}, 0) AS spend_{c}" for c in CATEGORIES]
            + [f"coalesce(r.orders_{c}, 0) AS orders_{c}" for c in CHANNELS]
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE customer_360 AS
            SELECT c.customer_id AS customer_ref,
                   c.full_name, c.email, c.phone,
                   strftime(c.birth_date, '%d/%m/%Y') AS dob,
                   CASE c.gender WHEN 'female' THEN 'F' WHEN 'male' THEN 'M' ELSE 'X' END AS gender_code,
                   c.country, c.region, c.city, c.income_band, c.occupation, c.household_size,
                   c.signup_date AS customer_since,
                   CASE WHEN c.marketing_consent THEN 'Y' ELSE 'N' END AS email_opt_in,
                   CASE WHEN c.profiling_consent THEN 'Y' ELSE 'N' END AS profiling_opt_in,
                   coalesce(r.orders_total, 0) AS orders_total,
                   coalesce(r.revenue_total, 0) AS revenue_total,
                   r.last_order_date,
                   coalesce(r.returns_total, 0) AS returns_total,
                   coalesce(e.sessions_90d, 0) AS sessions_90d,
                   e.main_device,
                   {rollup_columns}
            FROM sample_customers c
            LEFT JOIN order_rollup r USING (customer_id)
            LEFT JOIN event_rollup e USING (customer_id)
            WHERE c.signup_date < DATE '{as_of.isoformat()}'
            """
        )
        con.execute("DROP TABLE order_rollup")
        con.execute("DROP TABLE event_rollup")
    finally:
        con.close()


def write_segment(path: Path, data: SampleData, as_of: date) -> None:
    """Write the sample as Segment ``identifies`` and ``tracks`` tables into the DuckDB file ``path``.

    Per user: a first identify at signup (profile traits, a placeholder ``job_title`` of 'student'), a second
    one a day later (or the same evening) with income, the real job title and consents but null elsewhere, and
    for every seventh user a third one after ``as_of`` with different values that a run for ``as_of`` must not
    see. Some anonymous rows (no user_id) are added to both tables.
    """
    gender = "CASE c.gender WHEN 'female' THEN 'Female' WHEN 'male' THEN 'Male' ELSE 'Non-binary' END"
    event_names = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in SEGMENT_EVENT_NAMES.items())
    order_names = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in ORDER_EVENT_NAMES.items())
    d = f"TIMESTAMP '{as_of.isoformat()} 00:00:00'"
    con = duckdb.connect(str(path))
    try:
        _register(con, data)
        con.execute(
            f"""
            CREATE OR REPLACE TABLE identifies AS
            SELECT * FROM (
              SELECT 'id-a-' || c.customer_id AS id, 'user_' || c.customer_id AS user_id, NULL AS anonymous_id,
                     CAST(c.signup_date AS TIMESTAMP) + INTERVAL 10 HOUR AS "timestamp",
                     CAST(c.signup_date AS TIMESTAMP) + INTERVAL 10 HOUR AS received_at,
                     c.email, split_part(c.full_name, ' ', 1) AS first_name, c.phone,
                     strftime(c.birth_date, '%Y-%m-%d') AS birthday, {gender} AS gender,
                     c.country, c.region AS state, NULL::VARCHAR AS income, 'student' AS job_title,
                     CAST(c.signup_date AS TIMESTAMP) AS created_at,
                     NULL::BOOLEAN AS email_opt_in, NULL::BOOLEAN AS profiling_consent, 'free' AS plan
              FROM sample_customers c WHERE c.signup_date < DATE '{as_of.isoformat()}'
              UNION ALL
              SELECT 'id-b-' || c.customer_id, 'user_' || c.customer_id, NULL,
                     CAST(c.signup_date AS TIMESTAMP)
                       + CASE WHEN c.signup_date + 2 <= DATE '{as_of.isoformat()}'
                              THEN INTERVAL 33 HOUR ELSE INTERVAL 23 HOUR END,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                     c.income_band, c.occupation, NULL, c.marketing_consent, c.profiling_consent, 'pro'
              FROM sample_customers c WHERE c.signup_date < DATE '{as_of.isoformat()}'
              UNION ALL
              SELECT 'id-c-' || c.customer_id, 'user_' || c.customer_id, NULL,
                     {d} + INTERVAL 2 DAY, {d} + INTERVAL 2 DAY,
                     NULL, NULL, NULL, '1901-01-01', 'Male', 'Atlantis', 'Deep', '150k+', 'astronaut', NULL,
                     false, false, 'enterprise'
              FROM sample_customers c WHERE c.customer_id % 7 = 0 AND c.signup_date < DATE '{as_of.isoformat()}'
              UNION ALL
              SELECT 'id-anon-' || i, NULL, 'anon-' || i, {d} - INTERVAL 3 DAY, {d} - INTERVAL 3 DAY,
                     NULL, NULL, NULL, NULL, 'Female', 'Atlantis', NULL, NULL, NULL, NULL, NULL, NULL, 'free'
              FROM range(25) t(i)
            )
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE tracks AS
            SELECT * FROM (
              SELECT 'o-' || o.order_id AS id, 'user_' || o.customer_id AS user_id, NULL AS anonymous_id,
                     CASE o.status {order_names} END AS event,
                     o.ordered_at AS "timestamp", o.ordered_at AS received_at,
                     o.category, o.amount AS revenue, o.channel, NULL::VARCHAR AS device
              FROM sample_orders o
              UNION ALL
              SELECT 'e-' || e.event_id, 'user_' || e.customer_id, NULL,
                     CASE e.event_type {event_names} END,
                     e.occurred_at, e.occurred_at, e.category, NULL::DOUBLE, NULL, e.device
              FROM sample_events e
              UNION ALL
              SELECT 'anon-' || i, NULL, 'anon-' || i, 'Order Completed', {d} - INTERVAL 1 DAY,
                     {d} - INTERVAL 1 DAY, 'wine', 999.0, 'web', 'mobile'
              FROM range(40) t(i)
            )
            """
        )
    finally:
        con.close()


def _postgres_type(arrow_type: pa.DataType) -> sa.types.TypeEngine[Any]:
    if pa.types.is_boolean(arrow_type):
        return sa.Boolean()
    if pa.types.is_integer(arrow_type):
        return sa.BigInteger()
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return sa.Double()
    if pa.types.is_date(arrow_type):
        return sa.Date()
    if pa.types.is_timestamp(arrow_type):
        return sa.DateTime(timezone=arrow_type.tz is not None)
    return sa.Text()


def copy_to_postgres(duckdb_path: Path, url: str) -> dict[str, int]:
    """Copy every table of the DuckDB file into the PostgreSQL database at ``url`` (COPY); rows per table."""
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        names = [
            row[0]
            for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
        ]
        tables = {name: con.sql(f'SELECT * FROM "{name}"').to_arrow_table() for name in names}
    finally:
        con.close()
    engine = sa.create_engine(url)
    copied = {}
    try:
        with engine.begin() as conn:
            metadata = sa.MetaData()
            for name, data in tables.items():
                sa.Table(name, metadata, *(sa.Column(f.name, _postgres_type(f.type)) for f in data.schema))
            metadata.create_all(conn)
            raw = conn.connection.driver_connection
            assert raw is not None
            for name, data in tables.items():
                statement = psycopg_sql.SQL("COPY {} ({}) FROM STDIN").format(
                    psycopg_sql.Identifier(name),
                    psycopg_sql.SQL(", ").join(psycopg_sql.Identifier(c) for c in data.column_names),
                )
                with raw.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in data.to_pylist():
                        copy.write_row(tuple(row.values()))
                copied[name] = data.num_rows
    finally:
        engine.dispose()
    return copied
