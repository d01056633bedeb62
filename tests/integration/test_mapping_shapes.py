"""Every warehouse shape, mapped by a shipped example YAML alone, runs end to end; each feature query gives the
same features on DuckDB and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from persona_pipeline import stages
from persona_pipeline.config import load_settings
from persona_pipeline.publish import read_partition
from persona_pipeline.warehouse.engine import warehouse_engine
from persona_pipeline.warehouse.features import extract_to_frames
from persona_pipeline.warehouse.mapping import SNAPSHOT_NOTE, example_mapping_path, load_mapping
from persona_pipeline.warehouse.sample import SampleData, generate_sample
from tests.shapes import copy_to_postgres, write_customer360, write_normalised, write_segment

D = date(2026, 12, 1)
K = 30
SHAPES = ("normalised", "customer360", "segment")
EXPECTED_MISSING = {
    "normalised": [],
    "customer360": ["customers.top_interest", SNAPSHOT_NOTE],
    "segment": ["identifies.household_size"],
}


WRITERS: dict[str, Callable[[Path, SampleData, date], None]] = {
    "normalised": write_normalised,
    "customer360": write_customer360,
    "segment": write_segment,
}


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(3_000, seed=11, as_of=D)


@pytest.fixture(scope="module")
def run_shape(sample: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """Run the whole pipeline once per shape (cached for the module): the shape's warehouse + example mapping."""
    runs: dict[str, Any] = {}

    def run(shape: str) -> Any:
        if shape in runs:
            return runs[shape]
        root = tmp_path_factory.mktemp(f"shape-{shape}")
        warehouse = root / "warehouse.duckdb"
        WRITERS[shape](warehouse, sample, D)
        settings = load_settings(
            environ={},
            overrides={
                "warehouse.url": f"duckdb:///{warehouse}",
                "warehouse.mapping": str(example_mapping_path(shape)),
                "storage.root": str(root / "store"),
                "segmentation.min_segment_size": K,
                "validation.freshness_days": 30,
            },
        )
        ctx = stages.make_context(settings, D, f"shape-{shape}", progress=lambda _: None)
        stages.run_all(ctx)
        with warehouse_engine(settings.warehouse.url) as engine:
            tables = {
                name: read_partition(engine, "persona", name, D)
                for name in ("persona_runs", "personas", "segment_snapshots", "segment_membership", "segment_traits")
            }
        runs[shape] = (shape, settings, ctx, tables)
        return runs[shape]

    return run


@pytest.fixture(params=SHAPES)
def shaped_run(request: pytest.FixtureRequest, run_shape: Callable[[str], Any]) -> Any:
    return run_shape(request.param)


def test_each_shape_produces_personas_from_its_example_mapping(shaped_run: Any) -> None:
    shape, _, _, tables = shaped_run
    run = tables["persona_runs"].iloc[0]
    personas = tables["personas"]
    assert run["status"] == "success"
    assert run["rows_extracted"] == 3_000
    assert run["rows_extracted"] == run["rows_valid"] + run["rows_quarantined"] + run["rows_excluded"]
    assert run["rows_excluded"] > 0  # customers without profiling consent, from each shape's own consent column
    assert len(personas) >= 3, f"{shape}: only {len(personas)} persona(s)"
    assert len(personas) == run["personas"]


def test_each_shape_respects_the_k_rule(shaped_run: Any) -> None:
    _, _, _, tables = shaped_run
    assert (tables["personas"]["size"] >= K).all()
    assert (tables["segment_snapshots"]["size"] >= K).all()
    sizes = tables["segment_membership"].groupby("segment_id").size()
    assert (sizes >= K).all()
    assert (tables["segment_traits"]["support"] >= K).all()


def test_each_shape_records_its_missing_fields(shaped_run: Any) -> None:
    shape, _, _, tables = shaped_run
    recorded = json.loads(tables["persona_runs"].iloc[0]["missing_fields"])
    assert recorded == EXPECTED_MISSING[shape]


def test_wide_one_table_dataset_mapped_by_yaml_alone_produces_personas(run_shape: Callable[[str], Any]) -> None:
    """A wide one-table customer dataset, mapped by YAML alone (no code), produces personas."""
    _, settings, _, tables = run_shape("customer360")
    with warehouse_engine(settings.warehouse.url) as engine:
        source_tables = set(sa.inspect(engine).get_table_names()) - set(
            sa.inspect(engine).get_table_names(schema="persona")
        )
    assert source_tables == {"customer_360"}  # no order or event rows anywhere
    personas = tables["personas"]
    assert len(personas) >= 3
    assert personas["name"].str.len().gt(0).all()
    assert personas["monetary"].notna().all()


def test_no_pii_reaches_any_output(shaped_run: Any) -> None:
    shape, settings, ctx, tables = shaped_run
    source = {"customer360": "customer_360", "segment": "identifies", "normalised": "customers"}[shape]
    columns = "email, phone" if shape != "segment" else "email, first_name"
    url = settings.warehouse.url
    with warehouse_engine(url) as engine, engine.connect() as conn:
        pii = conn.execute(sa.text(f"SELECT {columns} FROM {source} WHERE email IS NOT NULL LIMIT 100")).fetchall()
    texts = [frame.astype(str).to_csv() for frame in tables.values()]
    texts += [p.read_bytes().decode("utf-8", "ignore") for p in ctx.store.base.rglob("*") if p.is_file()]
    haystack = "\n".join(texts)
    for first, second in pii:
        assert first not in haystack
        if shape != "segment":
            assert second not in haystack


# -- the same features from DuckDB and PostgreSQL, for every shape ---------------------------------------------


def _features(url: str, shape: str, as_of: date = D) -> pd.DataFrame:
    mapping = load_mapping(example_mapping_path(shape))
    with warehouse_engine(url) as engine:
        _, frames = extract_to_frames(engine, mapping, as_of, chunk_rows=1_000)
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("customer_key").reset_index(drop=True)


@pytest.mark.integration
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("as_of", [D, date(2025, 6, 15)], ids=["D", "backfill"])
def test_feature_query_gives_the_same_features_on_postgres(
    shape: str, as_of: date, pg_database: str, tmp_path: Path
) -> None:
    data = generate_sample(600, seed=5, as_of=D)
    duck = tmp_path / "shape.duckdb"
    WRITERS[shape](duck, data, D)
    copy_to_postgres(duck, pg_database)
    from_duckdb = _features(f"duckdb:///{duck}", shape, as_of)
    from_postgres = _features(pg_database, shape, as_of)
    assert len(from_duckdb) > 100
    pd.testing.assert_frame_equal(from_duckdb, from_postgres, check_dtype=False, check_exact=False, rtol=1e-9)


# -- the other shapes reproduce the normalised features they carry -----------------------------------------------

SHARED = {
    # the wide table has dates, codes and Y/N flags instead of clean values, and last order *dates*; its
    # main device breaks ties its own way
    "customer360": (
        "age",
        "gender",
        "country",
        "region",
        "income_band",
        "occupation",
        "household_size",
        "tenure_days",
        "frequency",
        "monetary",
        "returns",
        "events_90d",
        "marketing_consent",
        "profiling_consent",
    ),
    # identifies holds a stale job title and post-D rows; tracks mixes orders with browsing
    "segment": (
        "age",
        "gender",
        "country",
        "region",
        "income_band",
        "occupation",
        "tenure_days",
        "frequency",
        "monetary",
        "returns",
        "recency_days",
        "marketing_consent",
        "profiling_consent",
    ),
}


@pytest.mark.parametrize("shape", ["customer360", "segment"])
def test_reshaped_warehouse_reproduces_the_normalised_features(shape: str, tmp_path: Path) -> None:
    data = generate_sample(800, seed=3, as_of=D)
    WRITERS["normalised"](tmp_path / "normalised.duckdb", data, D)
    WRITERS[shape](tmp_path / f"{shape}.duckdb", data, D)
    expected = _features(f"duckdb:///{tmp_path / 'normalised.duckdb'}", "normalised").set_index("customer_key")
    actual = _features(f"duckdb:///{tmp_path / f'{shape}.duckdb'}", shape)
    actual["customer_key"] = actual["customer_key"].str.removeprefix("user_")
    actual = actual.set_index("customer_key").loc[expected.index]
    columns = list(SHARED[shape])
    pd.testing.assert_frame_equal(actual[columns], expected[columns], check_dtype=False)
    if shape == "segment":
        assert "Atlantis" not in set(actual["country"].dropna())  # identify calls after D are not seen
        assert actual["household_size"].isna().all()  # not mapped: null, not zero
    else:
        assert actual["top_interest"].isna().all()


TEXTY_TABLES = """
CREATE TABLE people (id VARCHAR(10), dob VARCHAR(20), sex VARCHAR(5), opt VARCHAR(3), since VARCHAR(20));
INSERT INTO people VALUES ('c1', '02/12/1990', 'F', 'Y', '2024-01-31'), ('c2', '31/02/1990', 'M', 'N', '2026-12-01'),
  ('c3', NULL, 'Q', NULL, NULL), ('c4', '15/06/1960', 'X', 'Y', '2020-05-05');
CREATE TABLE sales (cid VARCHAR(10), placed VARCHAR(30), amt DOUBLE PRECISION, st VARCHAR(3), cat VARCHAR(10));
INSERT INTO sales VALUES ('c1', '30/11/2026 23:59:59', 10, 'C', 'FASH'), ('c1', '01/12/2026 00:00:00', 500, 'C', 'WIN'),
  ('c1', '02/11/2026 08:30:00', 20, 'R', 'WIN'), ('c4', '01/01/2025 12:00:00', 35.5, 'C', 'WIN');
CREATE TABLE clicks (cid VARCHAR(10), seen VARCHAR(30), dev VARCHAR(10));
INSERT INTO clicks VALUES ('c1', '2026-11-30T10:00:00', 'mob'), ('c1', '2026-12-01T00:00:00', 'desk'),
  ('c4', '2026-10-30 10:00:00', 'desk');
"""
TEXTY_MAPPING = {
    "customers": {
        "table": "people",
        "columns": {
            "customer_id": "id",
            "birth_date": {"column": "dob", "format": "%d/%m/%Y"},
            "gender": {
                "column": "sex",
                "values": {"F": "female", "M": "male", "X": "non_binary"},
                "default": "unknown",
            },
            "profiling_consent": {"column": "opt", "values": {"Y": True, "N": False}},
            "signup_date": {"column": "since", "format": "iso"},
        },
    },
    "orders": {
        "table": "sales",
        "columns": {
            "customer_id": "cid",
            "ordered_at": {"column": "placed", "format": "%d/%m/%Y %H:%M:%S"},
            "amount": "amt",
            "status": {"column": "st", "values": {"C": "completed", "R": "returned"}},
            "category": {"column": "cat", "values": {"FASH": "fashion", "WIN": "wine"}},
        },
    },
    "events": {
        "table": "clicks",
        "columns": {
            "customer_id": "cid",
            "occurred_at": {"column": "seen", "format": "iso"},
            "device": {"column": "dev", "values": {"mob": "mobile", "desk": "desktop"}},
        },
    },
}


@pytest.mark.integration
def test_value_maps_and_text_dates_behave_the_same_on_postgres(pg_database: str, tmp_path: Path) -> None:
    import yaml

    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(TEXTY_MAPPING), encoding="utf-8")
    mapping = load_mapping(mapping_path)
    duck = tmp_path / "texty.duckdb"
    frames = []
    for url in (f"duckdb:///{duck}", pg_database):
        with warehouse_engine(url) as engine, engine.begin() as conn:
            for statement in TEXTY_TABLES.split(";"):
                if statement.strip():
                    conn.execute(sa.text(statement))
        with warehouse_engine(url) as engine:
            _, chunks = extract_to_frames(engine, mapping, D)
        frames.append(pd.concat(chunks, ignore_index=True).set_index("customer_key"))
    from_duckdb, from_postgres = frames
    pd.testing.assert_frame_equal(from_duckdb, from_postgres, check_dtype=False)
    assert sorted(from_postgres.index) == ["c1", "c3", "c4"]  # c2 signs up on D
    c1 = from_postgres.loc["c1"]
    assert c1["age"] == 35 and c1["gender"] == "female" and bool(c1["profiling_consent"])
    assert c1["frequency"] == 1 and c1["monetary"] == 10 and c1["returns"] == 1
    assert c1["recency_days"] == pytest.approx(1 / 86_400)
    assert c1["top_category"] == "fashion" and c1["preferred_device"] == "mobile" and c1["events_90d"] == 1
    c3 = from_postgres.loc["c3"]
    assert c3["gender"] == "unknown" and pd.isna(c3["profiling_consent"]) and pd.isna(c3["age"])


@pytest.mark.integration
def test_check_mapping_against_postgres(pg_database: str, tmp_path: Path) -> None:
    from persona_pipeline.warehouse.check import check_mapping_file

    data = generate_sample(100, seed=2, as_of=D)
    duck = tmp_path / "segment.duckdb"
    write_segment(duck, data, D)
    copy_to_postgres(duck, pg_database)
    report = check_mapping_file(example_mapping_path("segment"), pg_database)
    assert report.ok, report.render()
    assert report.missing == ("identifies.household_size",)
    assert "categories found" in report.render()

    with warehouse_engine(pg_database) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE tracks ALTER COLUMN revenue TYPE text"))
        conn.execute(sa.text("ALTER TABLE identifies DROP COLUMN job_title"))
        conn.execute(sa.text("ALTER TABLE identifies ALTER COLUMN created_at TYPE text"))
    report = check_mapping_file(example_mapping_path("segment"), pg_database)
    problems = {p.key: p.message for p in report.problems}
    assert set(problems) == {"tracks.columns.amount", "identifies.columns.occupation", "identifies.columns.signup_date"}
    assert "is TEXT where a number is needed" in problems["tracks.columns.amount"]
    assert "'job_title' not found" in problems["identifies.columns.occupation"]
    assert "where a date is needed: add format" in problems["identifies.columns.signup_date"]
