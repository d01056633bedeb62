"""The synthetic retailer: contract (schemas, keys, bounds), determinism, realism, and the loaders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlalchemy as sa

from persona_pipeline.warehouse.sample import (
    ARROW_SCHEMAS,
    CATEGORIES,
    CHANNELS,
    DEVICES,
    EVENT_TYPES,
    GENDERS,
    INCOME_BANDS,
    SAMPLE_AS_OF,
    SampleData,
    generate_sample,
    iter_sample_batches,
    load_into_engine,
    write_duckdb,
)

N = 4_000
AS_OF = SAMPLE_AS_OF
AS_OF_MIDNIGHT = datetime(AS_OF.year, AS_OF.month, AS_OF.day)

# The contract other stages rely on, spelled out independently of the module's own schema definition.
EXPECTED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "customers": [
        ("customer_id", "BIGINT"),
        ("full_name", "VARCHAR"),
        ("email", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("birth_date", "DATE"),
        ("gender", "VARCHAR"),
        ("country", "VARCHAR"),
        ("region", "VARCHAR"),
        ("city", "VARCHAR"),
        ("signup_date", "DATE"),
        ("income_band", "VARCHAR"),
        ("occupation", "VARCHAR"),
        ("household_size", "INTEGER"),
        ("marketing_consent", "BOOLEAN"),
        ("profiling_consent", "BOOLEAN"),
    ],
    "orders": [
        ("order_id", "BIGINT"),
        ("customer_id", "BIGINT"),
        ("ordered_at", "TIMESTAMP"),
        ("amount", "DOUBLE"),
        ("currency", "VARCHAR"),
        ("channel", "VARCHAR"),
        ("category", "VARCHAR"),
        ("status", "VARCHAR"),
    ],
    "events": [
        ("event_id", "BIGINT"),
        ("customer_id", "BIGINT"),
        ("occurred_at", "TIMESTAMP"),
        ("event_type", "VARCHAR"),
        ("category", "VARCHAR"),
        ("device", "VARCHAR"),
    ],
}
ARROW_OF_SQL = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


@pytest.fixture(scope="module")
def data() -> SampleData:
    return generate_sample(N, seed=7)


@pytest.fixture(scope="module")
def db(data: SampleData) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that queries the generated Arrow tables directly."""
    con = duckdb.connect()
    for name, table in data.tables().items():
        con.register(name, table)
    yield con
    con.close()


def scalar(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    rows = con.execute(query).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def concat(batches: list[SampleData]) -> SampleData:
    return SampleData(*(pa.concat_tables([getattr(b, name) for b in batches]) for name in EXPECTED_COLUMNS))


# ---------------------------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(EXPECTED_COLUMNS))
def test_schemas_are_exactly_the_contract(data: SampleData, table: str) -> None:
    expected = pa.schema([pa.field(name, ARROW_OF_SQL[sql]) for name, sql in EXPECTED_COLUMNS[table]])
    assert getattr(data, table).schema.equals(expected)
    assert ARROW_SCHEMAS[table].equals(expected)


@pytest.mark.parametrize("table", list(EXPECTED_COLUMNS))
def test_no_nulls_anywhere(data: SampleData, table: str) -> None:
    arrow_table = getattr(data, table)
    assert {name: arrow_table.column(name).null_count for name in arrow_table.column_names} == dict.fromkeys(
        arrow_table.column_names, 0
    )


def test_keys_are_unique_and_customer_ids_run_from_one(db: duckdb.DuckDBPyConnection) -> None:
    assert scalar(db, "SELECT count(DISTINCT customer_id) = count(*) AND min(customer_id) = 1 FROM customers")
    assert scalar(db, "SELECT max(customer_id) FROM customers") == N
    assert scalar(db, "SELECT count(DISTINCT order_id) = count(*) FROM orders")
    assert scalar(db, "SELECT count(DISTINCT event_id) = count(*) FROM events")


def test_every_order_and_event_belongs_to_a_customer(db: duckdb.DuckDBPyConnection) -> None:
    for table in ("orders", "events"):
        orphans = scalar(db, f"SELECT count(*) FROM {table} t ANTI JOIN customers c USING (customer_id)")
        assert orphans == 0, table


def test_activity_lies_between_signup_and_as_of(db: duckdb.DuckDBPyConnection) -> None:
    assert scalar(db, f"SELECT max(signup_date) < DATE '{AS_OF}' FROM customers")
    for table, column in (("orders", "ordered_at"), ("events", "occurred_at")):
        outside = scalar(
            db,
            f"""SELECT count(*) FROM {table} JOIN customers USING (customer_id)
                WHERE {column} < signup_date OR {column} >= TIMESTAMP '{AS_OF_MIDNIGHT}'""",
        )
        assert outside == 0, table
    # signups spread over years, not piled up on a few days
    assert scalar(db, f"SELECT date_diff('day', min(signup_date), DATE '{AS_OF}') FROM customers") > 4 * 365


def test_ages_are_adult_and_plausible(db: duckdb.DuckDBPyConnection) -> None:
    [(youngest, oldest)] = db.execute(
        f"SELECT min(date_diff('year', birth_date, DATE '{AS_OF}')), "
        f"max(date_diff('year', birth_date, DATE '{AS_OF}')) FROM customers"
    ).fetchall()
    assert youngest >= 18 and oldest <= 90


def test_amounts_are_positive_with_two_decimals(data: SampleData) -> None:
    amounts = data.orders.column("amount").to_numpy()
    assert (amounts > 0).all()
    assert (abs(amounts * 100 - (amounts * 100).round()) < 1e-6).all()


def test_categorical_values_come_from_the_published_vocabularies(data: SampleData) -> None:
    def values(table: pa.Table, column: str) -> set[str]:
        return set(table.column(column).unique().to_pylist())

    assert values(data.orders, "category") == set(CATEGORIES)
    assert values(data.events, "category") == set(CATEGORIES)
    assert values(data.orders, "channel") == set(CHANNELS)
    assert values(data.events, "device") == set(DEVICES)
    assert values(data.events, "event_type") == set(EVENT_TYPES)
    assert values(data.customers, "gender") == set(GENDERS)
    assert values(data.customers, "income_band") == set(INCOME_BANDS)
    assert values(data.orders, "status") == {"completed", "returned", "cancelled"}
    sizes = data.customers.column("household_size").to_numpy()
    assert sizes.min() >= 1 and sizes.max() <= 6


def test_personal_data_is_obviously_fake(data: SampleData) -> None:
    emails = data.customers.column("email").to_pylist()
    phones = data.customers.column("phone").to_pylist()
    assert all(re.fullmatch(r"[a-z0-9.]+@example\.(com|org|net)", email) for email in emails)
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"\+44 7700 900\d{3}|\+1 555-01\d{2}", phone) for phone in phones)


def test_currency_follows_country(db: duckdb.DuckDBPyConnection) -> None:
    pairs = db.execute(
        "SELECT DISTINCT country = 'United Kingdom', currency FROM orders JOIN customers USING (customer_id)"
    ).fetchall()
    assert sorted(pairs) == [(False, "EUR"), (True, "GBP")]


# ---------------------------------------------------------------------------------------------------------------
# Volumes and shares
# ---------------------------------------------------------------------------------------------------------------


def test_volumes_are_about_ten_orders_and_twenty_events_per_customer(data: SampleData) -> None:
    assert 7.0 <= data.orders.num_rows / N <= 13.0
    assert 14.0 <= data.events.num_rows / N <= 26.0


def test_shares_are_plausible(db: duckdb.DuckDBPyConnection) -> None:
    assert 0.87 <= float(scalar(db, "SELECT avg(profiling_consent::INT) FROM customers")) <= 0.97
    assert 0.4 <= float(scalar(db, "SELECT avg(marketing_consent::INT) FROM customers")) <= 0.8
    assert 0.005 <= float(scalar(db, "SELECT avg((gender = 'non_binary')::INT) FROM customers")) <= 0.04
    status = dict(db.execute("SELECT status, count(*) / sum(count(*)) OVER () FROM orders GROUP BY 1").fetchall())
    assert 0.86 <= status["completed"] <= 0.94
    assert 0.03 <= status["returned"] <= 0.09
    assert 0.02 <= status["cancelled"] <= 0.06


def test_some_customers_only_browse(db: duckdb.DuckDBPyConnection) -> None:
    [(no_orders, browsing)] = db.execute(
        """SELECT count(*), count(*) FILTER (WHERE customer_id IN (SELECT customer_id FROM events))
           FROM customers ANTI JOIN orders USING (customer_id)"""
    ).fetchall()
    assert 0.02 * N <= no_orders <= 0.09 * N
    assert browsing == no_orders  # customers without orders are known through their events


def test_lifecycles_show_in_recency(db: duckdb.DuckDBPyConnection) -> None:
    recency = db.execute(
        f"""SELECT date_diff('day', max(ordered_at), TIMESTAMP '{AS_OF_MIDNIGHT}') AS days, count(*) AS orders
            FROM orders GROUP BY customer_id"""
    ).fetchall()
    lapsed = sum(1 for days, _ in recency if days > 365)
    assert 0.08 <= lapsed / len(recency) <= 0.30
    # customers who signed up in the last two months have one or two orders
    recent_max = scalar(
        db,
        f"""SELECT max(n) FROM (SELECT count(order_id) AS n FROM customers LEFT JOIN orders USING (customer_id)
            WHERE signup_date > DATE '{AS_OF}' - INTERVAL 60 DAY GROUP BY customer_id)""",
    )
    assert recent_max is not None and recent_max <= 2


# ---------------------------------------------------------------------------------------------------------------
# Real structure: demographics and behaviour are correlated
# ---------------------------------------------------------------------------------------------------------------


def test_wine_buyers_are_much_older_than_fashion_buyers(db: duckdb.DuckDBPyConnection) -> None:
    ages = dict(
        db.execute(
            f"""WITH counts AS (SELECT customer_id, category, count(*) AS n FROM orders GROUP BY ALL),
                 top AS (SELECT customer_id, arg_max(category, n) AS top_category FROM counts GROUP BY 1)
                SELECT top_category, median(date_diff('year', birth_date, DATE '{AS_OF}'))
                FROM top JOIN customers USING (customer_id) GROUP BY 1"""
        ).fetchall()
    )
    assert ages["wine"] - ages["fashion"] >= 15


def test_under_thirties_order_through_the_app_more(db: duckdb.DuckDBPyConnection) -> None:
    shares = dict(
        db.execute(
            f"""SELECT date_diff('year', birth_date, DATE '{AS_OF}') < 30, avg((channel = 'app')::INT)
                FROM orders JOIN customers USING (customer_id) GROUP BY 1"""
        ).fetchall()
    )
    assert shares[True] >= 1.5 * shares[False]


def test_affluent_customers_spend_more_per_order(db: duckdb.DuckDBPyConnection) -> None:
    aov = dict(
        db.execute(
            "SELECT income_band, median(amount) FROM orders JOIN customers USING (customer_id) GROUP BY 1"
        ).fetchall()
    )
    assert aov["150k+"] >= 2 * aov["<25k"]


def test_browsing_interests_resemble_purchases(db: duckdb.DuckDBPyConnection) -> None:
    agree = scalar(
        db,
        """WITH bought AS (SELECT customer_id, mode(category) AS c FROM orders GROUP BY 1),
                browsed AS (SELECT customer_id, mode(category) AS c FROM events GROUP BY 1)
           SELECT avg((bought.c = browsed.c)::INT) FROM bought JOIN browsed USING (customer_id)""",
    )
    assert 0.35 <= float(agree) < 0.98


# ---------------------------------------------------------------------------------------------------------------
# Determinism and chunking
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables(data: SampleData) -> None:
    again = generate_sample(N, seed=7)
    for name, table in data.tables().items():
        assert again.tables()[name].equals(table), name


def test_different_seed_gives_different_tables(data: SampleData) -> None:
    other = generate_sample(N, seed=8)
    assert not other.customers.equals(data.customers)
    assert not other.orders.equals(data.orders)


def test_as_of_moves_the_whole_history() -> None:
    earlier = date(2025, 6, 1)
    sample = generate_sample(500, seed=3, as_of=earlier)
    latest = pa.compute.max(sample.events.column("occurred_at")).as_py()
    assert latest < datetime(2025, 6, 1)
    assert latest > datetime(2025, 5, 1)


def test_generate_sample_is_the_concatenation_of_its_batches(data: SampleData) -> None:
    batches = list(iter_sample_batches(N, seed=7))
    assert concat(batches).tables().keys() == data.tables().keys()
    for name, table in concat(batches).tables().items():
        assert table.equals(data.tables()[name]), name


def test_small_chunks_are_deterministic_and_ids_continue_across_chunks() -> None:
    first = list(iter_sample_batches(2_500, seed=5, chunk_customers=1_000))
    second = list(iter_sample_batches(2_500, seed=5, chunk_customers=1_000))
    assert [b.customers.num_rows for b in first] == [1_000, 1_000, 500]
    for a, b in zip(first, second, strict=True):
        for name in EXPECTED_COLUMNS:
            assert getattr(a, name).equals(getattr(b, name))
    whole = concat(first)
    for table, key in (("customers", "customer_id"), ("orders", "order_id"), ("events", "event_id")):
        ids = getattr(whole, table).column(key).to_pylist()
        assert ids == list(range(1, len(ids) + 1)), table
    # each chunk is self-contained: its orders and events reference only its own customers
    for batch in first:
        own = set(batch.customers.column("customer_id").to_pylist())
        assert set(batch.orders.column("customer_id").to_pylist()) <= own
        assert set(batch.events.column("customer_id").to_pylist()) <= own


def test_empty_and_invalid_sizes() -> None:
    empty = generate_sample(0)
    assert [t.num_rows for t in empty.tables().values()] == [0, 0, 0]
    assert empty.orders.schema.equals(ARROW_SCHEMAS["orders"])
    with pytest.raises(ValueError, match="customers"):
        list(iter_sample_batches(-1))
    with pytest.raises(ValueError, match="chunk_customers"):
        list(iter_sample_batches(10, chunk_customers=0))


# ---------------------------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------------------------


def test_write_duckdb_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "warehouse.duckdb"
    messages: list[str] = []
    counts = write_duckdb(path, 2_000, seed=4, progress=messages.append)
    expected = generate_sample(2_000, seed=4)
    assert counts == {name: table.num_rows for name, table in expected.tables().items()}
    assert messages and "2,000" in messages[-1]

    con = duckdb.connect(str(path), read_only=True)
    try:
        assert sorted(row[0] for row in con.execute("SHOW TABLES").fetchall()) == ["customers", "events", "orders"]
        for name, columns in EXPECTED_COLUMNS.items():
            described = [(row[0], row[1]) for row in con.execute(f"DESCRIBE {name}").fetchall()]
            assert described == columns, name
            assert scalar(con, f"SELECT count(*) FROM {name}") == counts[name]
        stored = con.sql("SELECT * FROM orders ORDER BY order_id").to_arrow_table()
        assert stored.equals(expected.orders.combine_chunks())
    finally:
        con.close()


def test_write_duckdb_replaces_or_appends_and_leaves_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE persona_runs (run_id VARCHAR)")
        con.execute("INSERT INTO persona_runs VALUES ('keep me')")
    first = write_duckdb(path, 300, seed=1)
    again = write_duckdb(path, 300, seed=1)
    assert first == again
    appended = write_duckdb(path, 200, seed=2, replace=False)
    with duckdb.connect(str(path), read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM customers") == 500
        assert scalar(con, "SELECT count(*) FROM orders") == first["orders"] + appended["orders"]
        assert con.execute("SELECT run_id FROM persona_runs").fetchall() == [("keep me",)]
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert tables == {"customers", "orders", "events", "persona_runs"}  # no staging tables left behind


def test_load_into_engine_generic_path_on_sqlite() -> None:
    sample = generate_sample(300, seed=9)
    engine = sa.create_engine("sqlite://")
    counts = load_into_engine(engine, sample)
    assert counts == {name: table.num_rows for name, table in sample.tables().items()}
    # replacing does not duplicate rows
    assert load_into_engine(engine, sample) == counts
    with engine.connect() as conn:
        for name, expected in counts.items():
            assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() == expected
        first_order = conn.execute(
            sa.select(sa.table("orders", sa.column("order_id"), sa.column("ordered_at"), sa.column("amount")))
            .order_by(sa.column("order_id"))
            .limit(1)
        ).one()
    inspector = sa.inspect(engine)
    assert [c["name"] for c in inspector.get_columns("customers")] == [n for n, _ in EXPECTED_COLUMNS["customers"]]
    reference = sample.orders.slice(0, 1).to_pylist()[0]
    assert first_order.order_id == reference["order_id"]
    assert first_order.amount == reference["amount"]
    assert str(first_order.ordered_at).startswith(reference["ordered_at"].isoformat(sep=" "))
