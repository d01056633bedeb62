"""Bad-input corpus: each class of bad source data, built as a small warehouse, through the real extract + validate.

Every case asserts its specific outcome (which rule quarantined which customer with which value, or which error
names the table, column and rule) and, whenever the run completes, that no row disappears unaccounted:
``extracted == valid + quarantined + excluded`` as recorded in ``validation.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from persona_pipeline import stages
from persona_pipeline.exceptions import DataQualityError, SourceError
from persona_pipeline.storage import read_json, read_parquet
from persona_pipeline.warehouse.mapping import CUSTOMER_FIELDS, EVENT_FIELDS, ORDER_FIELDS

D = date(2026, 12, 1)

CUSTOMER_TYPES: dict[str, str] = {
    "customer_id": "BIGINT",
    "full_name": "VARCHAR",
    "birth_date": "DATE",
    "gender": "VARCHAR",
    "country": "VARCHAR",
    "region": "VARCHAR",
    "city": "VARCHAR",
    "signup_date": "DATE",
    "income_band": "VARCHAR",
    "occupation": "VARCHAR",
    "household_size": "INTEGER",
    "marketing_consent": "BOOLEAN",
    "profiling_consent": "BOOLEAN",
}
ORDER_TYPES: dict[str, str] = {
    "order_id": "BIGINT",
    "customer_id": "BIGINT",
    "ordered_at": "TIMESTAMP",
    "amount": "DOUBLE",
    "currency": "VARCHAR",
    "channel": "VARCHAR",
    "category": "VARCHAR",
    "status": "VARCHAR",
}
EVENT_TYPES: dict[str, str] = {
    "event_id": "BIGINT",
    "customer_id": "BIGINT",
    "occurred_at": "TIMESTAMP",
    "event_type": "VARCHAR",
    "category": "VARCHAR",
    "device": "VARCHAR",
}
GOOD_CUSTOMERS = 8  # customer 8 has no profiling consent: every clean run excludes exactly one row


def base_customers() -> list[dict[str, Any]]:
    """Eight plausible customers, ids 1-8; the last one has not consented to profiling."""
    genders = ("female", "male", "non_binary", "unknown")
    bands = ("<25k", "25-50k", "50-75k", "75-100k", "100-150k", "150k+")
    return [
        {
            "customer_id": i,
            "full_name": f"Customer {i}",
            "birth_date": date(1950 + 5 * i, 1 + i % 12, 1 + i),
            "gender": genders[i % len(genders)],
            "country": "United Kingdom",
            "region": "London",
            "city": "London",
            "signup_date": date(2020, 1, i),
            "income_band": bands[i % len(bands)],
            "occupation": "teacher",
            "household_size": 1 + i % 4,
            "marketing_consent": True,
            "profiling_consent": i != GOOD_CUSTOMERS,
        }
        for i in range(1, GOOD_CUSTOMERS + 1)
    ]


def base_orders() -> list[dict[str, Any]]:
    """Two completed orders per customer, the newest a few days before D (so the source is fresh)."""
    rows = []
    for i in range(1, GOOD_CUSTOMERS + 1):
        for n, (stamp, amount) in enumerate(
            ((f"2026-11-{10 + i:02d} 10:00:00", 20.0 * i), ("2026-06-01 12:00:00", 15.0))
        ):
            rows.append(
                {
                    "order_id": 10 * i + n,
                    "customer_id": i,
                    "ordered_at": stamp,
                    "amount": amount,
                    "currency": "GBP",
                    "channel": "web" if n else "app",
                    "category": "fashion" if i % 2 else "home",
                    "status": "completed",
                }
            )
    return rows


def base_events() -> list[dict[str, Any]]:
    """One page view per customer in the month before D."""
    return [
        {
            "event_id": i,
            "customer_id": i,
            "occurred_at": f"2026-11-{i:02d} 09:00:00",
            "event_type": "page_view",
            "category": "fashion",
            "device": "mobile",
        }
        for i in range(1, GOOD_CUSTOMERS + 1)
    ]


@dataclass(frozen=True)
class Overrides:
    """How one bad-input case departs from the clean warehouse."""

    customer_types: Mapping[str, str] = field(default_factory=dict)  # column -> DuckDB type
    order_types: Mapping[str, str] = field(default_factory=dict)
    customers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # customer id -> changed values
    orders: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # order id -> changed values
    extra_customers: tuple[Mapping[str, Any], ...] = ()  # full or partial rows (missing values are null)
    extra_orders: tuple[Mapping[str, Any], ...] = ()
    sql_after: tuple[str, ...] = ()  # statements run once the tables are loaded (DROP, ALTER, DELETE, ...)


def _load(
    con: duckdb.DuckDBPyConnection, table: str, types: Mapping[str, str], rows: Iterable[Mapping[str, Any]]
) -> None:
    columns = list(types)
    con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in types.items())})")
    values = [[row.get(c) for c in columns] for row in rows]
    if values:
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", values)


def build_warehouse(path: Path, overrides: Overrides = Overrides()) -> Path:
    """A DuckDB warehouse in the sample layout (customers, orders, events) with ``overrides`` applied."""
    customers = [{**row, **overrides.customers.get(row["customer_id"], {})} for row in base_customers()]
    customers += [dict(row) for row in overrides.extra_customers]
    orders = [{**row, **overrides.orders.get(row["order_id"], {})} for row in base_orders()]
    orders += [dict(row) for row in overrides.extra_orders]
    con = duckdb.connect(str(path))
    try:
        _load(con, "customers", {**CUSTOMER_TYPES, **overrides.customer_types}, customers)
        _load(con, "orders", {**ORDER_TYPES, **overrides.order_types}, orders)
        _load(con, "events", EVENT_TYPES, base_events())
        for statement in overrides.sql_after:
            con.execute(statement)
    finally:
        con.close()
    return path


@dataclass(frozen=True)
class Run:
    """What extract + validate left in the store."""

    ctx: stages.StageContext
    summary: dict[str, Any]

    @property
    def accounting(self) -> dict[str, int]:
        return dict(read_json(self.ctx.store, self.ctx.key("validation.json"))["accounting"])

    def quarantine(self) -> pd.DataFrame:
        return read_parquet(self.ctx.store, self.ctx.key("quarantine.parquet")).to_pandas()

    def valid(self) -> pd.DataFrame:
        parts = read_json(self.ctx.store, self.ctx.key("validation.json"))["valid_parts"]
        return pd.concat([read_parquet(self.ctx.store, key).to_pandas() for key in parts], ignore_index=True)

    @property
    def null_keys(self) -> int:
        return int(read_json(self.ctx.store, self.ctx.key("extract.json"))["null_keys"])

    def features(self) -> pd.DataFrame:
        parts = read_json(self.ctx.store, self.ctx.key("extract.json"))["parts"]
        return pd.concat([read_parquet(self.ctx.store, k).to_pandas() for k in parts], ignore_index=True)


def make_settings(warehouse: Path, store: Path, **overrides: object) -> Any:
    from persona_pipeline.config import load_settings

    base = {
        "warehouse.url": f"duckdb:///{warehouse}",
        "storage.root": str(store),
        "validation.freshness_days": 30,
        "validation.max_invalid_share": 0.25,  # one bad customer of seven consented ones stays a row-level matter
    }
    return load_settings(environ={}, overrides={**base, **overrides})


def run_pipeline(tmp_path: Path, overrides: Overrides = Overrides(), **settings: object) -> Run:
    tmp_path.mkdir(parents=True, exist_ok=True)
    warehouse = build_warehouse(tmp_path / "warehouse.duckdb", overrides)
    ctx = stages.make_context(make_settings(warehouse, tmp_path / "store", **settings), D, progress=lambda _: None)
    stages.extract(ctx)
    return Run(ctx, stages.validate(ctx))


def _one_row(frame: pd.DataFrame, **match: object) -> pd.Series:
    rows = frame
    for column, value in match.items():
        rows = rows[rows[column] == value]
    assert len(rows) == 1, f"expected one row matching {match}, got {len(rows)}"
    return rows.iloc[0]


def _quarantined(rule: str, key: str, value: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        quarantine = run.quarantine()
        assert set(quarantine["rule"]) == {rule}
        row = _one_row(quarantine, customer_key=key)
        assert row["value"] == value and row["column"] == rule.split("(")[1].rstrip(")")
        assert key not in set(run.valid()["customer_key"])
        assert run.accounting["quarantined"] == 1 and run.summary["rule_failures"] == {rule: 1}

    return check


def _check_null_key(run: Run) -> None:
    # A customer without a key cannot be a feature row, but it is counted and quarantined with its rule.
    assert run.null_keys == 1
    assert run.features()["customer_key"].notna().all()
    assert run.accounting == {
        "extracted": GOOD_CUSTOMERS + 1,
        "valid": GOOD_CUSTOMERS - 1,
        "quarantined": 1,
        "excluded": 1,
    }
    quarantine = run.quarantine()
    assert list(quarantine["rule"]) == ["expect_column_values_to_not_be_null(customer_key)"]
    assert quarantine["customer_key"].isna().all()


def _check_duplicates(run: Run) -> None:
    quarantine = run.quarantine()
    assert list(quarantine["customer_key"]) == ["1", "1"]
    assert set(quarantine["rule"]) == {"expect_column_values_to_be_unique(customer_key_hash)"}
    assert "1" not in set(run.valid()["customer_key"])  # neither copy is trusted
    assert run.accounting == {"extracted": 9, "valid": 6, "quarantined": 2, "excluded": 1}


def _check_future_order(run: Run) -> None:
    # Orders at or after midnight of D belong to a later run: customer 2 keeps its two earlier orders only.
    customer = _one_row(run.valid(), customer_key="2")
    assert customer["frequency"] == 2 and customer["monetary"] == pytest.approx(55.0)
    assert run.quarantine().empty


def _check_future_signup(run: Run) -> None:
    # A customer signing up after D does not exist yet as of D: not extracted, so not in the accounting either.
    assert "4" not in set(run.features()["customer_key"])
    assert run.accounting["extracted"] == GOOD_CUSTOMERS - 1 and run.quarantine().empty


def _check_text_household(run: Run) -> None:
    # A household size that is not a number becomes unknown (null): the customer stays, without that trait.
    customer = _one_row(run.valid(), customer_key="3")
    assert pd.isna(customer["household_size"]) and run.quarantine().empty


def _check_sql_text(run: Run) -> None:
    customer = _one_row(run.valid(), customer_key="3")
    assert customer["occupation"] == "'; DROP TABLE customers; --"
    con = duckdb.connect(str(Path(run.ctx.settings.warehouse.url.removeprefix("duckdb:///"))), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM customers").fetchone() == (GOOD_CUSTOMERS,)
    finally:
        con.close()


def _check_plausible_extreme(run: Run) -> None:
    customer = _one_row(run.valid(), customer_key="3")
    assert customer["monetary"] == pytest.approx(999_000.0 + 15.0) and run.quarantine().empty


COMPLETING_CASES: dict[str, tuple[Overrides, Callable[[Run], None]]] = {
    "null customer key": (
        Overrides(extra_customers=({**base_customers()[0], "customer_id": None},)),
        _check_null_key,
    ),
    "duplicate customer key": (
        Overrides(extra_customers=({**base_customers()[0], "occupation": "nurse"},)),
        _check_duplicates,
    ),
    "negative order amount": (
        Overrides(orders={30: {"amount": -500.0}}),  # customer 3: -500 + 15 = -485
        _quarantined("expect_column_values_to_be_between(monetary)", "3", "-485.0"),
    ),
    "absurd order amount": (
        Overrides(orders={30: {"amount": 5e9}}),
        _quarantined("expect_column_values_to_be_between(monetary)", "3", "5000000015.0"),
    ),
    "order after D": (
        Overrides(
            extra_orders=(
                {
                    "order_id": 99,
                    "customer_id": 2,
                    "ordered_at": "2026-12-05 10:00:00",
                    "amount": 10_000.0,
                    "currency": "GBP",
                    "channel": "app",
                    "category": "wine",
                    "status": "completed",
                },
            )
        ),
        _check_future_order,
    ),
    "signup after D": (Overrides(customers={4: {"signup_date": date(2027, 1, 1)}}), _check_future_signup),
    "born in 1800": (
        Overrides(customers={3: {"birth_date": date(1800, 1, 1)}}),
        _quarantined("expect_column_values_to_be_between(age)", "3", "226.0"),
    ),
    "born in the future": (
        Overrides(customers={3: {"birth_date": date(2030, 1, 1)}}),
        _quarantined("expect_column_values_to_be_between(age)", "3", "-4.0"),
    ),
    "unknown gender code": (
        Overrides(customers={3: {"gender": "X"}}),
        _quarantined("expect_column_values_to_be_in_set(gender)", "3", "X"),
    ),
    "unknown income band": (
        Overrides(customers={3: {"income_band": "lots"}}),
        _quarantined("expect_column_values_to_be_in_set(income_band)", "3", "lots"),
    ),
    "household size as text": (
        Overrides(customer_types={"household_size": "VARCHAR"}, customers={3: {"household_size": "three"}}),
        _check_text_household,
    ),
    "control characters in text": (
        Overrides(customers={3: {"occupation": "nurse\x00\x07"}}),
        _quarantined("expect_column_values_to_not_match_regex(occupation)", "3", "nurse\x00\x07"),
    ),
    "SQL in a text field": (
        Overrides(customers={3: {"occupation": "'; DROP TABLE customers; --"}}),
        _check_sql_text,
    ),
    "monetary outlier above max_monetary": (
        Overrides(orders={30: {"amount": 1e7 + 1_000_000.0}}),
        _quarantined("expect_column_values_to_be_between(monetary)", "3", "11000015.0"),
    ),
    "plausible extreme within limits": (Overrides(orders={30: {"amount": 999_000.0}}), _check_plausible_extreme),
}


@pytest.mark.parametrize("case", list(COMPLETING_CASES))
def test_bad_rows_are_quarantined_or_left_out_and_every_row_is_accounted(tmp_path: Path, case: str) -> None:
    overrides, check = COMPLETING_CASES[case]
    run = run_pipeline(tmp_path, overrides)
    check(run)
    a = run.accounting
    assert a["extracted"] == a["valid"] + a["quarantined"] + a["excluded"]
    assert a["extracted"] == len(run.features()) + run.null_keys
    assert len(run.valid()) == a["valid"]
    assert len(run.quarantine()) >= a["quarantined"]  # one quarantine line per (row, failed rule)


FAILING_CASES: dict[str, tuple[Overrides, type[Exception], tuple[str, ...]]] = {
    "empty customers table": (
        Overrides(sql_after=("DELETE FROM customers",)),
        DataQualityError,
        ("customer_features", "expect_table_row_count_to_be_between", "min_rows", "0 row(s)"),
    ),
    "missing table": (
        Overrides(sql_after=("DROP TABLE orders",)),
        SourceError,
        ("orders", "does not exist", "check-mapping"),
    ),
    "missing column": (
        Overrides(sql_after=("ALTER TABLE customers DROP COLUMN income_band",)),
        SourceError,
        ("customers", "income_band", "check-mapping"),
    ),
    "renamed column": (
        Overrides(sql_after=("ALTER TABLE customers RENAME COLUMN gender TO sex",)),
        SourceError,
        ("customers", '"gender"', "check-mapping"),
    ),
    "order amount stored as text": (
        Overrides(order_types={"amount": "VARCHAR"}),
        SourceError,
        ("orders", "VARCHAR", "check-mapping"),
    ),
}


@pytest.mark.parametrize("case", list(FAILING_CASES))
def test_unusable_sources_fail_with_an_error_naming_what_is_wrong(tmp_path: Path, case: str) -> None:
    overrides, error, words = FAILING_CASES[case]
    with pytest.raises(error) as excinfo:
        run_pipeline(tmp_path, overrides)
    message = str(excinfo.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    if error is DataQualityError:
        assert len(excinfo.value.failures) == 1  # the cause, not every rule that fails on no rows


def test_a_mapping_fixes_a_renamed_column(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "customers:\n  table: customers\n  columns:\n"
        + "".join(f"    {name}: {'sex' if name == 'gender' else name}\n" for name in CUSTOMER_FIELDS)
        + "orders:\n  table: orders\n  columns:\n"
        + "".join(f"    {n}: {n}\n" for n in ORDER_FIELDS)
        + "events:\n  table: events\n  columns:\n"
        + "".join(f"    {n}: {n}\n" for n in EVENT_FIELDS)
        + "statuses:\n  completed: [completed]\n  returned: [returned]\n"
    )
    overrides = Overrides(sql_after=("ALTER TABLE customers RENAME COLUMN gender TO sex",))
    run = run_pipeline(tmp_path, overrides, **{"warehouse.mapping": str(mapping)})
    assert run.accounting == {"extracted": 8, "valid": 7, "quarantined": 0, "excluded": 1}
    assert _one_row(run.valid(), customer_key="2")["gender"] == "non_binary"


def test_offset_timestamps_give_the_same_features_as_naive_utc(tmp_path: Path) -> None:
    naive = run_pipeline(tmp_path / "naive").features()
    # The same instants written with a +05:00 offset into a TIMESTAMPTZ column.
    shifted = {
        row["order_id"]: {"ordered_at": pd.Timestamp(row["ordered_at"], tz="UTC").tz_convert("Etc/GMT-5").isoformat()}
        for row in base_orders()
    }
    aware = run_pipeline(tmp_path / "aware", Overrides(order_types={"ordered_at": "TIMESTAMPTZ"}, orders=shifted))
    pd.testing.assert_frame_equal(
        naive.sort_values("customer_key").reset_index(drop=True),
        aware.features().sort_values("customer_key").reset_index(drop=True),
    )


def test_invalid_utf8_cannot_reach_a_text_column(tmp_path: Path) -> None:
    # DuckDB refuses invalid UTF-8 in VARCHAR, so such bytes can only arrive as a BLOB, which is not text.
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    try:
        con.execute("CREATE TABLE t (v VARCHAR)")
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO t SELECT decode('\\xFF\\xFE'::BLOB)")
    finally:
        con.close()


def test_data_docs_are_published_beside_the_outputs(tmp_path: Path) -> None:
    run = run_pipeline(tmp_path)
    store = run.ctx.store
    prefix = run.ctx.key("validation", "data_docs") + "/"
    keys = store.list_keys(prefix)
    index = prefix + "index.html"
    assert index in keys
    head = store.head(index)
    assert head is not None and head.content_type.startswith("text/html")
    assert "customer_features" in store.get_bytes(index).decode("utf-8")
    assert any(k.startswith(prefix + "validations/customer_features/") and k.endswith(".html") for k in keys)
    css = next(k for k in keys if k.endswith(".css"))
    assert store.head(css).content_type == "text/css"  # type: ignore[union-attr]
    assert run.summary["accounting"] == {"extracted": 8, "valid": 7, "quarantined": 0, "excluded": 1}
