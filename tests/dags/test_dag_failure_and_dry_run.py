"""The DAG's failure handling and dry runs, end to end with ``dag.test()`` (DuckDB warehouse, local store)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from persona_pipeline.publish import read_partition
from persona_pipeline.storage import LocalObjectStore, read_json
from persona_pipeline.warehouse.engine import warehouse_engine

pytestmark = pytest.mark.slow
DAGS = Path(__file__).resolve().parents[2] / "dags"
PUBLISHED, NEW = date(2026, 12, 1), date(2026, 11, 30)


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.fixture
def setup(
    airflow_db: Path, warehouse_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "settings.yaml"
    config.write_text(
        f"warehouse:\n  url: duckdb:///{warehouse_copy}\n"
        f"storage:\n  root: {tmp_path / 'store'}\n"
        "segmentation:\n  min_segment_size: 30\n"
    )
    monkeypatch.setenv("PERSONA_CONFIG", str(config))
    dag = DagBag(dag_folder=str(DAGS)).dags["persona_nightly"]
    for task in dag.tasks:
        task.retries = 0  # fail at once instead of waiting out the production retry delays
    yield {
        "dag": dag,
        "url": f"duckdb:///{warehouse_copy}",
        "store": LocalObjectStore(tmp_path / "store", "persona-pipeline"),
        "sandbox": LocalObjectStore(tmp_path / "store", "persona-pipeline-dry-run"),
    }


def _run(dag: Any, day: date, **conf: Any) -> Any:
    return dag.test(logical_date=_at(day), run_conf=conf or None)


def _runs(url: str) -> list[tuple[str, str, str]]:
    with warehouse_engine(url) as engine, engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT dt, status, run_id FROM persona.persona_runs ORDER BY dt")).all()
    return [(str(r[0])[:10], str(r[1]), str(r[2])) for r in rows]


def test_a_failed_run_is_recorded_without_hiding_a_published_date(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dag, url = setup["dag"], setup["url"]
    assert str(_run(dag, PUBLISHED).state).endswith("success")

    # Validation now stops every run (a dataset-level rule), after extract has finished.
    monkeypatch.setenv("PERSONA_VALIDATION__MIN_ROWS", "1000000")
    with caplog.at_level(logging.ERROR, logger="persona_airflow.alerts"):
        rerun = _run(dag, PUBLISHED)
        fresh = _run(dag, NEW)
    assert str(rerun.state).endswith("failed") and str(fresh.state).endswith("failed")

    runs = _runs(url)
    # The published date keeps its successful row; the new date gets a 'failed' row of its failed run.
    assert [(day, status) for day, status, _ in runs] == [(str(NEW), "failed"), (str(PUBLISHED), "success")]
    assert runs[0][2] == fresh.run_id
    with warehouse_engine(url) as engine:
        assert len(read_partition(engine, "persona", "personas", PUBLISHED)) >= 5
        assert read_partition(engine, "persona", "personas", NEW).empty
        with engine.connect() as conn:
            latest = conn.execute(sa.text("SELECT DISTINCT dt FROM persona.latest_personas")).scalars().all()
            failed_row = conn.execute(
                sa.text("SELECT rows_extracted, rows_valid FROM persona.persona_runs WHERE status = 'failed'")
            ).one()
    assert [str(d)[:10] for d in latest] == [str(PUBLISHED)]
    extracted = read_json(setup["store"], f"dt={NEW}/extract.json")["rows"]
    assert failed_row[0] == extracted > 2900 and failed_row[1] is None  # extract finished, validate did not

    summaries = [r.getMessage() for r in caplog.records if "Persona run FAILED" in r.getMessage()]
    # One paragraph per failed run: what failed, how far this attempt got, what happened to the run row.
    assert len(summaries) == 2
    rerun_summary, fresh_summary = summaries
    assert "failed task: validate" in rerun_summary and "3,000 customers extracted." in rerun_summary
    assert "kept the successful run row of 2026-12-01" in rerun_summary
    assert "persona(s)" not in rerun_summary  # the earlier success's outputs are not this attempt's progress
    assert f"{extracted:,} customers extracted" in fresh_summary
    assert "status 'failed' recorded for 2026-11-30" in fresh_summary

    # Fixed and rerun, the new date's failed row is replaced by exactly one successful row.
    monkeypatch.delenv("PERSONA_VALIDATION__MIN_ROWS")
    assert str(_run(dag, NEW).state).endswith("success")
    assert [(day, status) for day, status, _ in _runs(url)] == [(str(NEW), "success"), (str(PUBLISHED), "success")]


def test_dry_run_publishes_nothing_and_emits_no_asset_event(setup: dict[str, Any]) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    dag, url, store, sandbox = setup["dag"], setup["url"], setup["store"], setup["sandbox"]

    def asset_events() -> int:
        with create_session() as session:
            query = (
                sa.select(sa.func.count())
                .select_from(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == "persona_pipeline.personas")
            )
            return int(session.scalar(query) or 0)

    events_before = asset_events()
    assert str(_run(dag, PUBLISHED).state).endswith("success")
    assert asset_events() == events_before + 1
    with warehouse_engine(url) as engine:
        personas = read_partition(engine, "persona", "personas", PUBLISHED)
    gallery, latest = store.get_bytes(f"dt={PUBLISHED}/index.html"), store.get_bytes("latest.json")

    dry = _run(dag, PUBLISHED, dry_run=True, image_provider="openai", segmentation_method="kmeans")
    assert str(dry.state).endswith("success")
    states = {ti.task_id: str(ti.state) for ti in dry.get_task_instances()}
    assert states["publish"].endswith("skipped") and states["build_personas"].endswith("success")
    assert asset_events() == events_before + 1

    # Nothing a reader sees changed: BI rows, the published gallery and the latest pointer.
    with warehouse_engine(url) as engine:
        assert read_partition(engine, "persona", "personas", PUBLISHED).equals(personas)
    assert _runs(url)[0][2] != dry.run_id
    assert store.get_bytes(f"dt={PUBLISHED}/index.html") == gallery
    assert store.get_bytes("latest.json") == latest
    # The rehearsal is complete in the sandbox: k-means as asked, offline images only, and its own gallery.
    assert read_json(sandbox, f"dt={PUBLISHED}/segments.json")["method"] == "kmeans"
    plan = read_json(sandbox, f"dt={PUBLISHED}/image_plan.json")
    assert plan["planned_cost_usd"] == 0
    assert sandbox.head(f"dt={PUBLISHED}/index.html") is not None
    assert sandbox.list_keys(f"dt={PUBLISHED}/images/")
