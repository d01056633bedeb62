"""``check-mapping`` explains every problem of a mapping against a live warehouse at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from persona_pipeline.cli import main
from persona_pipeline.warehouse.check import check_mapping_file, column_kind
from persona_pipeline.warehouse.mapping import example_mapping_path

BROKEN_SQL = """
CREATE TABLE people (id BIGINT, email VARCHAR, sex VARCHAR, dob DATE, since VARCHAR, ok VARCHAR, hh VARCHAR);
CREATE TABLE sales (cid BIGINT, placed VARCHAR, amt VARCHAR, st VARCHAR);
"""
BROKEN_MAPPING: dict[str, Any] = {
    "shape": "normalised",
    "customers": {
        "table": "people",
        "columns": {
            "customer_id": "id",
            "gender": "Sex",  # wrong case
            "region": "area",  # no such column
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},  # already a DATE
            "signup_date": "since",  # text without a format
            "profiling_consent": "ok",  # text without a value map
            "household_size": "hh",  # text where a number is needed
            "favourite_colour": "sex",  # not a canonical field
        },
    },
    "orders": {
        "table": "sales",
        "columns": {"ordered_at": "placed", "amount": "amt"},  # customer_id missing; text types
    },
    "events": {"table": "clicks", "columns": {"customer_id": "cid", "occurred_at": "at"}},  # no such table
}


def _warehouse(tmp_path: Path, sql: str, name: str = "wh.duckdb") -> str:
    path = tmp_path / name
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return f"duckdb:///{path}"


def _mapping_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_every_problem_is_listed(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, BROKEN_SQL)
    report = check_mapping_file(_mapping_file(tmp_path, BROKEN_MAPPING), url)
    assert not report.ok
    problems = {p.key: p.message for p in report.problems}
    expected = {
        "customers.columns.gender": "did you mean 'sex'?",
        "customers.columns.region": "column 'area' not found in people",
        "customers.columns.birth_date": "is DATE, not text: remove 'format'",
        "customers.columns.signup_date": "is text (VARCHAR) where a date is needed: add format",
        "customers.columns.profiling_consent": "add a value map",
        "customers.columns.household_size": "is VARCHAR where a whole number is needed",
        "customers.columns.favourite_colour": "unknown canonical field",
        "orders.columns.customer_id": "is required",
        "orders.columns.ordered_at": "where a timestamp is needed",
        "orders.columns.amount": "is VARCHAR where a number is needed",
        "events.table": "table 'clicks' not found (tables: people, sales)",
    }
    for key, fragment in expected.items():
        assert key in problems, f"{key} not reported; got {sorted(problems)}"
        assert fragment in problems[key], (key, problems[key])
    assert len(report.problems) == len(expected)
    text = report.render()
    assert f"{len(expected)} problem(s)" in text
    for key in expected:
        assert key in text


def test_cli_exits_non_zero_and_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _warehouse(tmp_path, BROKEN_SQL)
    mapping = _mapping_file(tmp_path, BROKEN_MAPPING)
    assert main(["check-mapping", "--mapping", str(mapping), "--warehouse", url]) == 1
    out = capsys.readouterr().out
    for key in ("customers.columns.region", "orders.columns.amount", "events.table", "orders.columns.customer_id"):
        assert key in out


def test_missing_table_column_and_wrong_type_each_listed(tmp_path: Path) -> None:
    url = _warehouse(
        tmp_path,
        "CREATE TABLE customers (customer_id BIGINT); "
        "CREATE TABLE orders (customer_id BIGINT, ordered_at TIMESTAMP, amount VARCHAR)",
    )
    data = yaml.safe_load(example_mapping_path("normalised").read_text(encoding="utf-8"))
    report = check_mapping_file(_mapping_file(tmp_path, data), url)
    keys = [p.key for p in report.problems]
    assert "events.table" in keys  # missing table
    assert "orders.columns.amount" in keys  # wrong type
    for column in ("birth_date", "gender", "signup_date", "profiling_consent"):  # missing columns
        assert f"customers.columns.{column}" in keys
    assert "orders.columns.channel" in keys and "orders.columns.status" in keys


def test_a_good_mapping_summarises_what_will_be_extracted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _warehouse(
        tmp_path,
        """
        CREATE TABLE people (id BIGINT, sex VARCHAR, ok VARCHAR);
        INSERT INTO people VALUES (1, 'F', 'Y');
        CREATE TABLE sales (cid BIGINT, placed TIMESTAMP, amt DECIMAL(10, 2), cat VARCHAR);
        INSERT INTO sales VALUES (1, '2026-11-01 10:00', 12.5, 'wine'), (1, '2026-11-02 10:00', 1.5, 'books');
        """,
    )
    data = {
        "customers": {
            "table": "people",
            "columns": {
                "customer_id": "id",
                "gender": {"column": "sex", "values": {"F": "female"}},
                "profiling_consent": {"column": "ok", "values": {"Y": True, "N": False}},
            },
        },
        "orders": {
            "table": "sales",
            "columns": {"customer_id": "cid", "ordered_at": "placed", "amount": "amt", "category": "cat"},
        },
    }
    mapping = _mapping_file(tmp_path, data)
    assert main(["check-mapping", "--mapping", str(mapping), "--warehouse", url]) == 0
    out = capsys.readouterr().out
    assert ": OK" in out
    assert "gender             <- sex (value map: 1 value(s))" in out
    assert "categories found (2): books, wine" in out or "categories found (2): wine, books" in out
    for missing in ("customers.birth_date", "orders.channel", "events (no table)"):
        assert f"- {missing}" in out


def test_config_supplies_the_warehouse_and_the_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _warehouse(tmp_path, BROKEN_SQL)
    mapping = _mapping_file(tmp_path, BROKEN_MAPPING)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"warehouse": {"url": url, "mapping": str(mapping)}}), encoding="utf-8")
    assert main(["check-mapping", "--config", str(config)]) == 1
    assert "events.table" in capsys.readouterr().out


def test_customer360_breakdown_columns_are_checked(tmp_path: Path) -> None:
    url = _warehouse(
        tmp_path,
        "CREATE TABLE wide (ref BIGINT, n INTEGER, total DOUBLE, last DATE, s_wine VARCHAR, web INTEGER)",
    )
    data = {
        "shape": "customer360",
        "customers": {
            "table": "wide",
            "columns": {"customer_id": "ref", "order_count": "n", "total_spend": "total", "last_order_date": "last"},
            "spend_by_category": {"wine": "s_wine", "books": "s_books"},
            "orders_by_channel": {"web": "web"},
        },
    }
    report = check_mapping_file(_mapping_file(tmp_path, data), url)
    problems = {p.key: p.message for p in report.problems}
    assert "where a number is needed" in problems["customers.spend_by_category.wine"]
    assert "not found" in problems["customers.spend_by_category.books"]
    assert len(problems) == 2


def test_shipped_examples_pass_against_their_shapes(tmp_path: Path) -> None:
    from datetime import date

    from persona_pipeline.warehouse.sample import generate_sample
    from tests.shapes import write_customer360, write_normalised, write_segment

    data = generate_sample(200, seed=1, as_of=date(2026, 12, 1))
    for shape, writer in (
        ("normalised", write_normalised),
        ("customer360", write_customer360),
        ("segment", write_segment),
    ):
        path = tmp_path / f"{shape}.duckdb"
        writer(path, data, date(2026, 12, 1))
        report = check_mapping_file(example_mapping_path(shape), f"duckdb:///{path}")
        assert report.ok, report.render()
        # ... and each example fails loudly against the wrong shape's warehouse
        other = "segment" if shape != "segment" else "customer360"
        assert not check_mapping_file(example_mapping_path(other), f"duckdb:///{path}").ok


def test_unreadable_mapping_file_is_a_problem(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, "CREATE TABLE t (x INTEGER)")
    report = check_mapping_file(tmp_path / "missing.yaml", url)
    assert not report.ok and "does not exist" in report.render()


@pytest.mark.parametrize(
    ("type_name", "kind"),
    [
        ("BIGINT", "integer"),
        ("HUGEINT", "integer"),
        ("INT64", "integer"),
        ("UINTEGER", "integer"),
        ("DECIMAL(10,2)", "number"),
        ("double precision", "number"),
        ("character varying", "text"),
        ("TIMESTAMP WITH TIME ZONE", "timestamp"),
        ("timestamp without time zone", "timestamp"),
        ("DATE", "date"),
        ("boolean", "boolean"),
        ("INTERVAL", "other"),
    ],
)
def test_column_kinds_from_type_names(type_name: str, kind: str) -> None:
    assert column_kind(type_name) == kind
