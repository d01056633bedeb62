"""Source mappings: YAML parsing and its errors, value maps, date formats, the three shapes' features, no PII."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml
from sqlalchemy.dialects import postgresql

from persona_pipeline.exceptions import ConfigError
from persona_pipeline.warehouse.engine import warehouse_engine
from persona_pipeline.warehouse.features import Vocabulary, build_feature_query, extract_to_frames
from persona_pipeline.warehouse.mapping import (
    SHAPES,
    SNAPSHOT_NOTE,
    SourceMapping,
    default_mapping,
    example_mapping_path,
    load_mapping,
    parse_mapping,
)

D = date(2026, 12, 1)


def _warehouse(tmp_path: Path, sql: str) -> str:
    path = tmp_path / "tiny.duckdb"
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return f"duckdb:///{path}"


def _mapping_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _features(url: str, mapping: SourceMapping, as_of: date = D) -> pd.DataFrame:
    with warehouse_engine(url) as engine:
        _, frames = extract_to_frames(engine, mapping, as_of, chunk_rows=1_000)
    return pd.concat(frames, ignore_index=True).set_index("customer_key")


def _customers_only(columns: dict[str, Any], table: str = "people") -> dict[str, Any]:
    return {"shape": "normalised", "customers": {"table": table, "columns": {"customer_id": "id", **columns}}}


# -- loading ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "missing"),
    [
        ("normalised", []),
        ("customer360", ["customers.top_interest", SNAPSHOT_NOTE]),
        ("segment", ["identifies.household_size"]),
    ],
)
def test_example_mappings_load_and_name_what_is_missing(shape: str, missing: list[str]) -> None:
    path = example_mapping_path(shape)
    assert path.is_file() and path.parent.name == "examples"
    mapping = load_mapping(path)
    assert mapping.shape == shape
    assert mapping.missing_fields() == missing


def test_default_mapping_is_the_normalised_example() -> None:
    assert load_mapping(None) == default_mapping()
    assert default_mapping().missing_fields() == []
    example = load_mapping(example_mapping_path("normalised"))
    for name in ("customers", "orders", "events"):
        assert getattr(example, name).columns == getattr(default_mapping(), name).columns
    assert example.completed_statuses == ("completed",) and example.returned_statuses == ("returned",)


def test_schema_comes_from_settings_then_yaml_then_table(tmp_path: Path) -> None:
    data = {
        "schema": "crm",
        "customers": {"table": "people", "columns": {"customer_id": "id"}},
        "orders": {
            "table": "sales",
            "schema": "shop",
            "columns": {"customer_id": "cid", "ordered_at": "placed", "amount": "amt"},
        },
    }
    mapping = load_mapping(_mapping_file(tmp_path, data), schema="ignored")
    assert mapping.customers.schema == "crm"
    assert mapping.orders is not None and mapping.orders.schema == "shop"
    del data["schema"]
    assert load_mapping(_mapping_file(tmp_path, data), schema="wh").customers.schema == "wh"


@pytest.mark.parametrize("attack", ["customers; DROP TABLE x", '"x"--', "x y", "a.b", "x`", "1st", "é"])
@pytest.mark.parametrize(
    ("key", "place"),
    [
        ("customers.table", lambda d, v: d["customers"].__setitem__("table", v)),
        ("customers.schema", lambda d, v: d["customers"].__setitem__("schema", v)),
        ("schema", lambda d, v: d.__setitem__("schema", v)),
        ("customers.columns.gender", lambda d, v: d["customers"]["columns"].__setitem__("gender", v)),
        (
            "customers.columns.gender.column",
            lambda d, v: d["customers"]["columns"].__setitem__("gender", {"column": v, "values": {"F": "female"}}),
        ),
    ],
)
def test_injection_in_identifiers_is_rejected_naming_the_key(tmp_path: Path, attack: str, key: str, place: Any) -> None:
    data = _customers_only({"gender": "sex"})
    place(data, attack)
    with pytest.raises(ConfigError) as excinfo:
        load_mapping(_mapping_file(tmp_path, data))
    assert f"{key}:" in str(excinfo.value)
    assert "not a plain SQL identifier" in str(excinfo.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (
            {
                "shape": "customer360",
                "customers": {
                    "table": "wide",
                    "columns": {"customer_id": "id", "order_count": "n", "total_spend": "s", "last_order_date": "d"},
                    "spend_by_category": {"wine": "spend_wine; DROP TABLE wide"},
                },
            },
            "customers.spend_by_category.wine",
        ),
        (
            {
                "shape": "segment",
                "identifies": {"table": "identifies", "columns": {"customer_id": "user_id", "timestamp": "ts"}},
                "tracks": {
                    "table": 'tracks"--',
                    "columns": {"customer_id": "u", "occurred_at": "t", "event_name": "e", "amount": "r"},
                    "order_events": ["Order Completed"],
                },
            },
            "tracks.table",
        ),
    ],
)
def test_injection_in_other_shapes_is_rejected_naming_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_mapping(_mapping_file(tmp_path, data))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = {
        "shape": "normalised",
        "colour": "blue",
        "customers": {
            "table": "people",
            "columns": {
                "customer_id": "id",
                "favourite_colour": "colour",
                "gender": "email",
                "birth_date": {"column": "dob", "format": "%Q"},
                "profiling_consent": {"column": "ok", "values": {"Y": "yes please"}},
            },
        },
        "orders": {"table": "sales", "columns": {"ordered_at": "placed", "amount": None}},
    }
    with pytest.raises(ConfigError) as excinfo:
        load_mapping(_mapping_file(tmp_path, data))
    message = str(excinfo.value)
    for expected in (
        "colour: unknown key",
        "customers.columns.favourite_colour: unknown canonical field",
        "customers.columns.gender: column 'email' holds raw PII",
        "customers.columns.birth_date.format: '%Q' is not a supported date format",
        "customers.columns.profiling_consent.values.Y: 'yes please' is not true or false",
        "orders.columns.customer_id: is required",
        "orders.columns.amount: is required and cannot be null",
    ):
        assert expected in message, expected
    assert "7 problem(s)" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"shape": "star"}, "shape: 'star' is not a known shape"),
        ({"shape": "normalised"}, "customers: the customers table is required"),
        ({"shape": "customer360", "customers": {"table": "w", "columns": {"customer_id": "id"}}}, "order_count"),
        (
            {
                "shape": "segment",
                "identifies": {"table": "i", "columns": {"customer_id": "u", "timestamp": "t"}},
                "tracks": {"table": "t", "columns": {"customer_id": "u", "occurred_at": "t", "event_name": "e"}},
            },
            "tracks.order_events",
        ),
        (["a list"], "(root)"),
        (
            {
                "customers": {
                    "table": "p",
                    "columns": {"customer_id": "id", "gender": {"column": "g", "values": {None: "x"}}},
                }
            },
            "customers.columns.gender.values.null: a value map cannot match null",
        ),
        (
            {"customers": {"table": "p", "columns": {"customer_id": {"column": "id", "values": {"1": "a"}}}}},
            "value maps are not supported on id fields",
        ),
        (
            {"customers": {"table": "p", "columns": {"customer_id": "id", "gender": {"column": "g", "format": "iso"}}}},
            "format only applies to date and timestamp fields",
        ),
    ],
)
def test_shape_specific_requirements(tmp_path: Path, data: Any, expected: str) -> None:
    _, problems = parse_mapping(data)
    assert any(expected in str(problem) for problem in problems), problems


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("customers: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mapping(bad)


# -- value maps and date formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "rows", "spec", "expected"),
    [
        (
            "VARCHAR",
            ["F", "M", "X", "Q", None],
            {"values": {"F": "female", "M": "male", "X": "non_binary"}, "default": "unknown"},
            ["female", "male", "non_binary", "unknown", "unknown"],
        ),
        (  # without a default, unmapped text is kept (and null stays null)
            "VARCHAR",
            ["F", "female", "other", None],
            {"values": {"F": "female"}},
            ["female", "female", "other", None],
        ),
        (  # integer codes: keys compare with the column's text form
            "INTEGER",
            [1, 2, 9, None],
            {"values": {1: "female", 2: "male"}, "default": "unknown"},
            ["female", "male", "unknown", "unknown"],
        ),
    ],
)
def test_value_maps_on_text_fields(
    tmp_path: Path, column_type: str, rows: list[Any], spec: dict[str, Any], expected: list[Any]
) -> None:
    values = ", ".join(f"({i}, {'NULL' if v is None else repr(v)})" for i, v in enumerate(rows))
    url = _warehouse(
        tmp_path, f"CREATE TABLE people (id INTEGER, sex {column_type}); INSERT INTO people VALUES {values}"
    )
    mapping = load_mapping(_mapping_file(tmp_path, _customers_only({"gender": {"column": "sex", **spec}})))
    features = _features(url, mapping).sort_index()
    got = [None if pd.isna(v) else v for v in features["gender"]]
    assert got == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"values": {"Y": True, "N": False}}, [True, False, None, None]),
        ({"values": {"Y": True, "N": False}, "default": False}, [True, False, False, False]),
    ],
)
def test_value_maps_on_consent_flags(tmp_path: Path, spec: dict[str, Any], expected: list[Any]) -> None:
    url = _warehouse(
        tmp_path,
        "CREATE TABLE people (id INTEGER, ok VARCHAR); INSERT INTO people VALUES (0, 'Y'), (1, 'N'), (2, 'maybe'), "
        "(3, NULL)",
    )
    mapping = load_mapping(_mapping_file(tmp_path, _customers_only({"profiling_consent": {"column": "ok", **spec}})))
    features = _features(url, mapping).sort_index()
    assert [None if pd.isna(v) else bool(v) for v in features["profiling_consent"]] == expected


def test_value_maps_on_order_status_and_category(tmp_path: Path) -> None:
    url = _warehouse(
        tmp_path,
        """
        CREATE TABLE people (id INTEGER);
        INSERT INTO people VALUES (1);
        CREATE TABLE sales (cid INTEGER, placed TIMESTAMP, amt DOUBLE, st VARCHAR, cat VARCHAR);
        INSERT INTO sales VALUES (1, '2026-11-01 10:00', 10, 'C', 'FASH'), (1, '2026-11-02 10:00', 30, 'C', 'WIN'),
          (1, '2026-11-03 10:00', 50, 'C', 'WIN'), (1, '2026-11-04 10:00', 99, 'R', 'FASH'),
          (1, '2026-11-05 10:00', 77, 'X', 'FASH');
        """,
    )
    data = _customers_only({})
    data["orders"] = {
        "table": "sales",
        "columns": {
            "customer_id": "cid",
            "ordered_at": "placed",
            "amount": "amt",
            "status": {"column": "st", "values": {"C": "completed", "R": "returned", "X": "cancelled"}},
            "category": {"column": "cat", "values": {"FASH": "fashion", "WIN": "wine"}},
        },
    }
    mapping = load_mapping(_mapping_file(tmp_path, data))
    with warehouse_engine(url) as engine:
        vocabulary, frames = extract_to_frames(engine, mapping, D)
    row = frames[0].iloc[0]
    assert vocabulary.categories == ("fashion", "wine")  # 3 fashion rows (any status) before 2 wine rows
    assert row["frequency"] == 3 and row["monetary"] == pytest.approx(90.0) and row["returns"] == 1
    assert row["top_category"] == "wine"
    assert row["spend_00_fashion"] == pytest.approx(10 / 90) and row["spend_01_wine"] == pytest.approx(80 / 90)


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("%d/%m/%Y", "02/12/1990"),
        ("%m/%d/%Y", "12/02/1990"),
        ("%Y%m%d", "19901202"),
        ("%d.%m.%y", "02.12.90"),
        ("%d %b %Y", "02 Dec 1990"),
        ("iso", "1990-12-02"),
        ("iso", "1990-12-02T00:00:00"),
    ],
)
def test_date_formats_parse_text_birth_dates(tmp_path: Path, fmt: str, text: str) -> None:
    url = _warehouse(
        tmp_path,
        f"CREATE TABLE people (id INTEGER, dob VARCHAR); INSERT INTO people VALUES (1, '{text}'), (2, 'not a date'), "
        "(3, NULL), (4, '')",
    )
    mapping = load_mapping(_mapping_file(tmp_path, _customers_only({"birth_date": {"column": "dob", "format": fmt}})))
    features = _features(url, mapping)
    assert features.loc["1", "age"] == 35  # turns 36 the day after D
    assert not features.loc["1", "birth_date_invalid"]
    # an unparseable date is flagged for quarantine; a missing one is simply unknown
    assert pd.isna(features.loc["2", "age"]) and features.loc["2", "birth_date_invalid"]
    assert pd.isna(features.loc["3", "age"]) and not features.loc["3", "birth_date_invalid"]
    assert not features.loc["4", "birth_date_invalid"]


def test_text_signup_dates_still_bound_the_customers_as_of_d(tmp_path: Path) -> None:
    url = _warehouse(
        tmp_path,
        "CREATE TABLE people (id INTEGER, since VARCHAR); "
        "INSERT INTO people VALUES (1, '30/11/2026'), (2, '01/12/2026'), (3, '15/01/2020'), (4, NULL)",
    )
    spec = {"signup_date": {"column": "since", "format": "%d/%m/%Y"}}
    features = _features(url, load_mapping(_mapping_file(tmp_path, _customers_only(spec))))
    assert sorted(features.index) == ["1", "3", "4"]
    assert features.loc["1", "tenure_days"] == 1


@pytest.mark.parametrize(
    ("fmt", "inside", "outside"),
    [
        ("%d/%m/%Y %H:%M:%S", "30/11/2026 23:59:59", "01/12/2026 00:00:00"),
        ("%Y-%m-%dT%H:%M:%S", "2026-11-30T23:59:59", "2026-12-01T00:00:00"),
        ("iso", "2026-11-30 23:59:59", "2026-12-01 00:00:00"),
    ],
)
def test_text_order_timestamps_are_parsed_in_the_warehouse(tmp_path: Path, fmt: str, inside: str, outside: str) -> None:
    url = _warehouse(
        tmp_path,
        f"""
        CREATE TABLE people (id INTEGER); INSERT INTO people VALUES (1);
        CREATE TABLE sales (cid INTEGER, placed VARCHAR, amt DOUBLE);
        INSERT INTO sales VALUES (1, '{inside}', 10), (1, '{outside}', 500);
        """,
    )
    data = _customers_only({})
    data["orders"] = {
        "table": "sales",
        "columns": {"customer_id": "cid", "ordered_at": {"column": "placed", "format": fmt}, "amount": "amt"},
    }
    features = _features(url, load_mapping(_mapping_file(tmp_path, data)))
    assert features.loc["1", "frequency"] == 1 and features.loc["1", "monetary"] == 10
    assert features.loc["1", "recency_days"] == pytest.approx(1 / 86_400)


# -- shapes ------------------------------------------------------------------------------------------------------

SEGMENT_SQL = """
CREATE TABLE identifies (user_id VARCHAR, "timestamp" TIMESTAMP, email VARCHAR, gender VARCHAR, country VARCHAR,
  job_title VARCHAR, birthday VARCHAR, created_at TIMESTAMP, profiling_consent BOOLEAN);
INSERT INTO identifies VALUES
  ('a', '2026-01-01 10:00', 'a@example.com', 'Female', 'United Kingdom', 'student', '1990-12-02', '2026-01-01',
   true),
  ('a', '2026-06-01 10:00', NULL, NULL, 'Germany', NULL, NULL, NULL, NULL),
  ('a', '2026-06-01 10:00', NULL, NULL, NULL, 'teacher', NULL, NULL, NULL),
  ('a', '2026-12-05 10:00', NULL, 'Male', 'France', 'astronaut', NULL, NULL, false),
  ('b', '2026-12-03 10:00', 'b@example.com', 'Male', 'Spain', NULL, NULL, '2026-12-03', true),
  (NULL, '2026-11-01 10:00', NULL, 'Female', 'Atlantis', NULL, NULL, NULL, true);
CREATE TABLE tracks (user_id VARCHAR, event VARCHAR, "timestamp" TIMESTAMP, revenue DOUBLE, category VARCHAR,
  channel VARCHAR, device VARCHAR);
INSERT INTO tracks VALUES
  ('a', 'Order Completed', '2026-11-20 10:00', 40.0, 'wine', 'web', NULL),
  ('a', 'Order Completed', '2026-11-25 10:00', 60.0, 'wine', 'app', NULL),
  ('a', 'Order Completed', '2026-10-01 10:00', 20.0, 'books', 'app', NULL),
  ('a', 'Order Refunded', '2026-11-26 10:00', 60.0, 'wine', 'app', NULL),
  ('a', 'Order Completed', '2026-12-01 00:00', 999.0, 'toys', 'web', NULL),
  ('a', 'Product Viewed', '2026-11-29 10:00', NULL, 'books', NULL, 'mobile'),
  ('a', 'Product Viewed', '2026-11-28 10:00', NULL, 'books', NULL, 'mobile'),
  ('a', 'Product Viewed', '2026-11-27 10:00', NULL, 'books', NULL, 'tablet'),
  ('a', 'Page Viewed', '2025-01-01 10:00', NULL, NULL, NULL, 'desktop'),
  (NULL, 'Order Completed', '2026-11-20 10:00', 500.0, 'wine', 'web', 'mobile');
"""


def _segment_mapping(tmp_path: Path) -> SourceMapping:
    data = yaml.safe_load(example_mapping_path("segment").read_text(encoding="utf-8"))
    for name in ("birth_date", "income_band", "region", "marketing_consent"):
        data["identifies"]["columns"].pop(name)
    data["identifies"]["columns"]["birth_date"] = {"column": "birthday", "format": "iso"}
    return load_mapping(_mapping_file(tmp_path, data))


def test_segment_takes_the_latest_non_null_trait_before_d(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, SEGMENT_SQL)
    features = _features(url, _segment_mapping(tmp_path))
    assert list(features.index) == ["a"]  # b's only identify is after D; anonymous rows are ignored
    a = features.loc["a"]
    assert a["gender"] == "female"  # value-mapped; the later 'Male' is after D
    assert a["country"] == "Germany"  # the later non-null value wins over the first one
    assert a["occupation"] == "teacher"  # set in a row whose other traits are null
    assert a["age"] == 35 and bool(a["profiling_consent"])
    assert a["tenure_days"] == 334
    assert a["frequency"] == 3 and a["monetary"] == pytest.approx(120.0) and a["returns"] == 1
    assert a["recency_days"] == pytest.approx(5 + 14 / 24)
    assert a["top_category"] == "wine" and a["preferred_channel"] == "app"
    assert a["top_interest"] == "books"  # 4 books events (3 views, 1 order) against 3 wine ones
    assert a["preferred_device"] == "mobile"
    assert a["events_90d"] == 7  # every tracks event in the window before D counts as activity


def test_segment_backfill_sees_the_traits_of_that_date(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, SEGMENT_SQL)
    features = _features(url, _segment_mapping(tmp_path), as_of=date(2026, 3, 1))
    a = features.loc["a"]
    assert a["country"] == "United Kingdom" and a["occupation"] == "student"
    assert a["frequency"] == 0 and pd.isna(a["recency_days"])


WIDE_SQL = """
CREATE TABLE wide (ref BIGINT, email VARCHAR, phone VARCHAR, full_name VARCHAR, dob VARCHAR, sex VARCHAR,
  since DATE, n_orders INTEGER, spend DECIMAL(12, 2), last_order DATE, web INTEGER, app INTEGER,
  s_wine DECIMAL(12, 2), s_books DECIMAL(12, 2), opt VARCHAR);
INSERT INTO wide VALUES
  (1, 'a@example.com', '+44 7700 900001', 'Ada Example', '02/12/1990', 'F', '2024-01-01', 4, 100.00, '2026-11-21',
   1, 3, 75.00, 25.00, 'Y'),
  (2, 'b@example.com', '+44 7700 900002', 'Bob Example', '15/06/1960', 'M', '2020-05-05', 0, 0, NULL,
   0, 0, 0, 0, 'N'),
  (3, 'c@example.com', '+44 7700 900003', 'Cy Example', '01/01/2000', 'X', '2026-12-02', 1, 10.00, '2026-12-02',
   1, 0, 10.00, 0, 'Y');
"""
WIDE_MAPPING = {
    "shape": "customer360",
    "customers": {
        "table": "wide",
        "columns": {
            "customer_id": "ref",
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},
            "gender": {"column": "sex", "values": {"F": "female", "M": "male", "X": "non_binary"}},
            "signup_date": "since",
            "profiling_consent": {"column": "opt", "values": {"Y": True, "N": False}},
            "order_count": "n_orders",
            "total_spend": "spend",
            "last_order_date": "last_order",
        },
        "spend_by_category": {"wine": "s_wine", "books": "s_books"},
        "orders_by_channel": {"web": "web", "app": "app"},
    },
}


def test_customer360_features_from_one_wide_table(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, WIDE_SQL)
    mapping = load_mapping(_mapping_file(tmp_path, WIDE_MAPPING))
    with warehouse_engine(url) as engine:
        vocabulary, frames = extract_to_frames(engine, mapping, D)
    features = pd.concat(frames).set_index("customer_key")
    assert vocabulary.categories == ("wine", "books") and vocabulary.channels == ("app", "web")
    assert sorted(features.index) == ["1", "2"]  # customer 3 signs up after D
    ada = features.loc["1"]
    assert ada["age"] == 35 and ada["gender"] == "female" and bool(ada["profiling_consent"])
    assert ada["frequency"] == 4 and ada["monetary"] == pytest.approx(100.0) and ada["aov"] == pytest.approx(25.0)
    assert ada["recency_days"] == 10
    assert ada["preferred_channel"] == "app" and ada["top_category"] == "wine"
    assert ada["spend_00_wine"] == pytest.approx(0.75) and ada["spend_01_books"] == pytest.approx(0.25)
    bob = features.loc["2"]
    assert bob["frequency"] == 0 and pd.isna(bob["recency_days"]) and pd.isna(bob["preferred_channel"])
    # fields the table lacks degrade to null, and the run record says so
    for column in ("country", "income_band", "occupation", "household_size", "top_interest", "returns", "events_90d"):
        assert features[column].isna().all(), column
    assert features["engagement"].isna().all()
    missing = mapping.missing_fields()
    assert {"customers.country", "customers.returns", "customers.events_90d", SNAPSHOT_NOTE} <= set(missing)
    assert "customers.top_category" not in missing  # the spend breakdown provides it


def test_customers_without_orders_or_events_degrade_to_null_features(tmp_path: Path) -> None:
    url = _warehouse(tmp_path, "CREATE TABLE people (id INTEGER); INSERT INTO people VALUES (1), (2)")
    mapping = load_mapping(_mapping_file(tmp_path, _customers_only({})))
    features = _features(url, mapping)
    assert (features["frequency"] == 0).all() and features["recency_days"].isna().all()
    assert features["events_90d"].isna().all() and features["age"].isna().all()
    assert "orders (no table)" in mapping.missing_fields() and "events (no table)" in mapping.missing_fields()
    assert "customers.birth_date" in mapping.missing_fields()


# -- privacy -----------------------------------------------------------------------------------------------------

PII = ("email", "full_name", "first_name", "last_name", "phone", "context_ip")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_no_pii_column_is_ever_selected(shape: str, dialect: str) -> None:
    from sqlalchemy.engine import create_engine

    mapping = load_mapping(example_mapping_path(shape))
    vocabulary = Vocabulary(("wine", "books"), ("toys",), ("web", "app"), ("mobile",))
    query = build_feature_query(mapping, vocabulary, D)
    compiled_on = create_engine("duckdb:///:memory:").dialect if dialect == "duckdb" else postgresql.dialect()
    sql = str(query.compile(dialect=compiled_on)).lower()
    assert "select" in sql and "*" not in sql.split("from")[0]
    for column in PII:
        assert not re.search(rf"\b{column}\b", sql), column
