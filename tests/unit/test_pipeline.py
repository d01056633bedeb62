"""The whole run without Airflow: outputs, idempotent reruns, accounting and no PII anywhere."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from persona_pipeline import stages
from persona_pipeline.publish import read_partition
from persona_pipeline.storage import LocalObjectStore, read_json
from persona_pipeline.warehouse.engine import warehouse_engine

D = date(2026, 12, 1)


@pytest.fixture
def finished_run(warehouse_copy: Path, settings_factory):  # type: ignore[no-untyped-def]
    settings = settings_factory(warehouse_copy)
    ctx = stages.make_context(settings, D, "test-run", progress=lambda _: None)
    result = stages.run_all(ctx)
    return settings, ctx, result


def test_run_publishes_tables_images_and_gallery(finished_run) -> None:  # type: ignore[no-untyped-def]
    settings, ctx, result = finished_run
    store = ctx.store
    assert isinstance(store, LocalObjectStore)
    with warehouse_engine(settings.warehouse.url) as engine:
        runs = read_partition(engine, "persona", "persona_runs", D)
        personas = read_partition(engine, "persona", "personas", D)
        images = read_partition(engine, "persona", "persona_images", D)
        membership = read_partition(engine, "persona", "segment_membership", D)
        snapshots = read_partition(engine, "persona", "segment_snapshots", D)
    run = runs.iloc[0]
    assert run["status"] == "success"
    assert run["rows_extracted"] == run["rows_valid"] + run["rows_quarantined"] + run["rows_excluded"]
    assert run["rows_extracted"] == 3_000
    assert len(personas) >= 5 and len(personas) == run["personas"]
    assert (snapshots["size"] >= settings.segmentation.min_segment_size).all()
    assert set(membership["segment_id"]) == set(personas["segment_id"])
    assert len(images) == len(personas) * 2
    for key in images["object_key"]:
        assert store.path_for(key).stat().st_size > 1_000
    html = store.path_for(result["gallery_key"]).read_text()
    for name in personas["name"]:
        assert name.replace("'", "&#39;") in html or name in html
    for key in images["object_key"]:
        assert key.removeprefix("dt=2026-12-01/") in html
    assert read_json(store, "latest.json")["dt"] == "2026-12-01"


def test_rerun_replaces_the_partition_and_makes_no_new_images(finished_run) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = finished_run
    with warehouse_engine(settings.warehouse.url) as engine:
        before = {
            t: len(read_partition(engine, "persona", t, D))
            for t in ("personas", "segment_membership", "segment_traits")
        }
    stages.run_all(stages.make_context(settings, D, "test-run-2", progress=lambda _: None))
    with warehouse_engine(settings.warehouse.url) as engine:
        after = {t: len(read_partition(engine, "persona", t, D)) for t in before}
        runs = read_partition(engine, "persona", "persona_runs", D)
        images = read_partition(engine, "persona", "persona_images", D)
    assert before == after
    assert len(runs) == 1 and runs.iloc[0]["run_id"] == "test-run-2"
    assert images["cached"].all() and runs.iloc[0]["images_generated"] == 0


def test_next_day_keeps_ids_and_names(finished_run) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = finished_run
    stages.run_all(stages.make_context(settings, date(2026, 12, 2), "day-2", progress=lambda _: None))
    with warehouse_engine(settings.warehouse.url) as engine:
        day1 = read_partition(engine, "persona", "personas", D).set_index("persona_id")
        day2 = read_partition(engine, "persona", "personas", date(2026, 12, 2)).set_index("persona_id")
    latest = duckdb_view(settings.warehouse.url)
    shared = day1.index.intersection(day2.index)
    assert len(shared) >= len(day1) - 1
    assert (day1.loc[shared, "name"] == day2.loc[shared, "name"]).all()
    assert latest == "2026-12-02"


def duckdb_view(url: str) -> str:
    con = duckdb.connect(url.removeprefix("duckdb:///"), read_only=True)
    try:
        return str(con.execute("SELECT DISTINCT dt FROM persona.latest_personas").fetchone()[0])
    finally:
        con.close()


def test_no_customer_pii_in_any_output(finished_run) -> None:  # type: ignore[no-untyped-def]
    settings, ctx, _ = finished_run
    con = duckdb.connect(settings.warehouse.url.removeprefix("duckdb:///"), read_only=True)
    pii = con.execute("SELECT full_name, email, phone FROM customers USING SAMPLE 200 ROWS").fetchall()
    tables = [
        con.execute(f"SELECT * FROM persona.{t}").fetchdf().astype(str).to_csv()
        for t in ("personas", "persona_images", "segment_traits", "segment_snapshots", "persona_runs", "quarantine")
    ]
    con.close()
    assert isinstance(ctx.store, LocalObjectStore)
    texts = [p.read_bytes().decode("utf-8", "ignore") for p in ctx.store.base.rglob("*") if p.is_file()]
    haystack = "\n".join(tables + texts)
    for name, email, phone in pii:
        assert email not in haystack
        assert name not in haystack
        assert phone not in haystack
