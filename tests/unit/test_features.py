"""Feature extraction: SQL pushed down, as of D, no PII selected, chunking invisible."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from persona_pipeline.warehouse.engine import warehouse_engine
from persona_pipeline.warehouse.features import build_feature_query, discover_vocabulary, extract_to_frames
from persona_pipeline.warehouse.mapping import default_mapping

D = date(2026, 12, 1)


@pytest.fixture
def tiny_warehouse(tmp_path: Path) -> str:
    path = tmp_path / "tiny.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """
        CREATE TABLE customers (customer_id BIGINT, full_name VARCHAR, email VARCHAR, phone VARCHAR,
          birth_date DATE, gender VARCHAR, country VARCHAR, region VARCHAR, city VARCHAR, signup_date DATE,
          income_band VARCHAR, occupation VARCHAR, household_size INTEGER, marketing_consent BOOLEAN,
          profiling_consent BOOLEAN);
        INSERT INTO customers VALUES
          (1, 'Ada Example', 'ada@example.com', '+44 7700 900001', DATE '1990-12-02', 'female', 'United Kingdom',
           'London', 'London', DATE '2024-01-01', '50-75k', 'creative', 1, true, true),
          (2, 'Bob Example', 'bob@example.com', '+44 7700 900002', DATE '1960-06-15', 'male', 'Germany',
           'Bavaria', 'Munich', DATE '2020-05-05', '150k+', 'executive', 2, false, true),
          (3, 'Cy Example', 'cy@example.com', '+44 7700 900003', DATE '2000-01-01', 'non_binary', 'France',
           'Normandy', 'Rouen', DATE '2026-11-20', '<25k', 'student', 1, true, false),
          (4, 'Later Signup', 'later@example.com', '+44 7700 900004', DATE '1980-01-01', 'female', 'Spain',
           'Madrid', 'Madrid', DATE '2026-12-02', '25-50k', 'teacher', 3, true, true);
        CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, ordered_at TIMESTAMP, amount DOUBLE,
          currency VARCHAR, channel VARCHAR, category VARCHAR, status VARCHAR);
        INSERT INTO orders VALUES
          (1, 1, TIMESTAMP '2026-11-21 10:00:00', 50.0, 'GBP', 'app', 'fashion', 'completed'),
          (2, 1, TIMESTAMP '2026-10-01 10:00:00', 30.0, 'GBP', 'app', 'beauty', 'completed'),
          (3, 1, TIMESTAMP '2026-11-25 10:00:00', 99.0, 'GBP', 'web', 'fashion', 'returned'),
          (4, 1, TIMESTAMP '2026-12-01 00:00:00', 500.0, 'GBP', 'web', 'wine', 'completed'),
          (5, 2, TIMESTAMP '2025-12-01 12:00:00', 400.0, 'EUR', 'catalogue', 'wine', 'completed'),
          (6, 2, TIMESTAMP '2025-06-01 12:00:00', 200.0, 'EUR', 'catalogue', 'home', 'completed');
        CREATE TABLE events (event_id BIGINT, customer_id BIGINT, occurred_at TIMESTAMP, event_type VARCHAR,
          category VARCHAR, device VARCHAR);
        INSERT INTO events VALUES
          (1, 1, TIMESTAMP '2026-11-30 09:00:00', 'page_view', 'fashion', 'mobile'),
          (2, 1, TIMESTAMP '2026-11-29 09:00:00', 'page_view', 'fashion', 'mobile'),
          (3, 1, TIMESTAMP '2026-01-01 09:00:00', 'search', 'beauty', 'desktop'),
          (4, 3, TIMESTAMP '2026-11-28 09:00:00', 'page_view', 'books', 'tablet'),
          (5, 3, TIMESTAMP '2026-12-03 09:00:00', 'page_view', 'toys', 'mobile');
        """
    )
    con.close()
    return f"duckdb:///{path}"


def _features(url: str, as_of: date = D, chunk_rows: int = 1_000) -> pd.DataFrame:
    with warehouse_engine(url) as engine:
        _, frames = extract_to_frames(engine, default_mapping(), as_of, chunk_rows=chunk_rows)
    return pd.concat(frames, ignore_index=True).set_index("customer_key")


def test_features_as_of_d(tiny_warehouse: str) -> None:
    features = _features(tiny_warehouse)
    assert sorted(features.index) == ["1", "2", "3"]  # customer 4 signs up after D
    ada = features.loc["1"]
    assert ada["age"] == 35  # born 1990-12-02: turns 36 the day after D
    assert ada["frequency"] == 2  # the returned order and the order at D midnight do not count
    assert ada["monetary"] == pytest.approx(80.0)
    assert ada["aov"] == pytest.approx(40.0)
    assert ada["returns"] == 1
    assert ada["recency_days"] == pytest.approx(9 + 14 / 24)
    assert ada["preferred_channel"] == "app"
    assert ada["top_category"] == "fashion"
    assert ada["top_interest"] == "fashion"
    assert ada["preferred_device"] == "mobile"
    assert ada["events_90d"] == 2
    bob = features.loc["2"]
    assert bob["age"] == 66 and bob["top_category"] == "wine" and bob["preferred_channel"] == "catalogue"
    cy = features.loc["3"]
    assert cy["frequency"] == 0 and pd.isna(cy["recency_days"]) and pd.isna(cy["aov"])
    assert cy["top_interest"] == "books"  # the toys event after D is ignored
    assert not bool(cy["profiling_consent"])


def test_spend_shares_sum_to_one_for_buyers(tiny_warehouse: str) -> None:
    features = _features(tiny_warehouse)
    spend = features[[c for c in features.columns if c.startswith("spend_")]]
    assert spend.loc["1"].sum() == pytest.approx(1.0)
    assert spend.loc["3"].sum() == 0.0


def test_backfill_of_an_old_date_reproduces_that_date(tiny_warehouse: str) -> None:
    features = _features(tiny_warehouse, as_of=date(2026, 1, 1))
    assert sorted(features.index) == ["1", "2"]  # customer 3 had not signed up
    assert features.loc["2", "frequency"] == 2
    assert features.loc["1", "frequency"] == 0  # all of Ada's orders are later


def test_no_pii_column_is_selected(tiny_warehouse: str) -> None:
    with warehouse_engine(tiny_warehouse) as engine, engine.connect() as conn:
        vocabulary = discover_vocabulary(conn, default_mapping(), D)
        sql = str(build_feature_query(default_mapping(), vocabulary, D).compile(engine))
    for pii in ("full_name", "email", "phone", "city"):
        assert pii not in sql
    features = _features(tiny_warehouse)
    text = features.astype(str).to_csv()
    assert "Ada Example" not in text and "ada@example.com" not in text and "7700" not in text


def test_chunking_does_not_change_features(sample_warehouse: Path) -> None:
    whole = _features(f"duckdb:///{sample_warehouse}", chunk_rows=100_000).sort_index()
    chunked = _features(f"duckdb:///{sample_warehouse}", chunk_rows=1_000).sort_index()
    pd.testing.assert_frame_equal(whole, chunked)


def test_missing_table_gives_clear_error(tmp_path: Path) -> None:
    from persona_pipeline.exceptions import SourceError

    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    with warehouse_engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (customer_id BIGINT)"))
    with pytest.raises(SourceError) as excinfo:
        _features(url)
    message = str(excinfo.value)
    assert "orders" in message and "check-mapping" in message
