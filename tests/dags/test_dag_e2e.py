"""The nightly DAG end to end with `dag.test()` on a small seeded warehouse (offline images, local store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from persona_pipeline.publish import read_partition
from persona_pipeline.storage import LocalObjectStore
from persona_pipeline.warehouse.engine import warehouse_engine

pytestmark = pytest.mark.slow
DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_nightly_dag_publishes_and_reruns_idempotently(
    airflow_db: Path, warehouse_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "settings.yaml"
    store_root = tmp_path / "store"
    config.write_text(
        f"warehouse:\n  url: duckdb:///{warehouse_copy}\n"
        f"storage:\n  root: {store_root}\n"
        "segmentation:\n  min_segment_size: 30\n"
    )
    monkeypatch.setenv("PERSONA_CONFIG", str(config))
    dag = DagBag(dag_folder=str(DAGS)).dags["persona_nightly"]
    logical = datetime(2026, 12, 1, tzinfo=UTC)

    def run_and_count() -> dict[str, int]:
        dag_run = dag.test(logical_date=logical)
        assert str(dag_run.state) in ("success", "DagRunState.SUCCESS")
        with warehouse_engine(f"duckdb:///{warehouse_copy}") as engine:
            return {
                t: len(read_partition(engine, "persona", t, logical.date()))
                for t in ("persona_runs", "personas", "persona_images", "segment_membership", "segment_traits")
            }

    first = run_and_count()
    assert first["persona_runs"] == 1 and first["personas"] >= 5
    assert first["persona_images"] == 2 * first["personas"]
    store = LocalObjectStore(store_root, "persona-pipeline")
    html = store.path_for("dt=2026-12-01/index.html").read_text()
    with warehouse_engine(f"duckdb:///{warehouse_copy}") as engine:
        personas = read_partition(engine, "persona", "personas", logical.date())
        images = read_partition(engine, "persona", "persona_images", logical.date())
    for persona_id in personas["persona_id"]:
        assert f'id="persona-{persona_id}"' in html
    for key in images["object_key"]:
        assert store.path_for(key).is_file()
    second = run_and_count()
    assert second == first
