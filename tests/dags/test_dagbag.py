"""Every DAG file imports cleanly and fast, and follows the project's conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = (
    "pandas",
    "numpy",
    "sklearn",
    "great_expectations",
    "openai",
    "boto3",
    "botocore",
    "duckdb",
    "pyarrow",
    "sqlalchemy",
    "fastapi",
    "persona_pipeline",
    "persona_airflow",  # the glue is imported inside tasks and callbacks only
)


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert "persona_nightly" in dagbag.dag_ids


def test_conventions(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"
            assert task.execution_timeout is not None


def test_nightly_shape(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["persona_nightly"]
    assert "0 0 * * *" in repr(dag.timetable)
    assert set(dag.params.keys()) >= {"segmentation_method", "image_provider"}
    images = dag.get_task("generate_images")
    assert images.pool == "persona_images"
    assert type(images).__name__.endswith("MappedOperator")
    publish = dag.get_task("publish")
    assert any(getattr(o, "name", "") == "persona_pipeline.personas" for o in publish.outlets)
    assert next(t.task_id for t in dag.topological_sort()) == "extract"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file: Path) -> None:
    code = (
        "import sys, runpy; import airflow.sdk; before = set(sys.modules); "
        f"runpy.run_path({str(dag_file)!r}); "
        f"heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}); print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_nightly_production_settings(dagbag) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    dag = dagbag.dags["persona_nightly"]
    assert dag.max_consecutive_failed_dag_runs == 3
    assert dag.dagrun_timeout is not None and dag.dagrun_timeout <= timedelta(hours=12)
    assert dag.has_on_failure_callback
    for task in dag.tasks:
        assert task.retry_exponential_backoff, task.task_id
        assert task.max_retry_delay is not None, task.task_id
    assert dag.get_task("generate_images").execution_timeout == timedelta(minutes=30)


def test_nightly_params_default_to_the_configuration(dagbag) -> None:  # type: ignore[no-untyped-def]
    params = dagbag.dags["persona_nightly"].params
    assert set(params.keys()) == {
        "segmentation_method",
        "image_provider",
        "image_styles",
        "variants_per_style",
        "max_images",
        "max_usd",
        "dry_run",
    }
    # None = "as configured": a Param default must not silently override the settings file.
    defaults = params.dump()
    assert {k: v for k, v in defaults.items() if k != "dry_run"} == dict.fromkeys(defaults.keys() - {"dry_run"})
    assert defaults["dry_run"] is False
    params.validate()
    good = {"segmentation_method": "kmeans", "image_styles": ["portrait"], "max_usd": 2.5, "dry_run": True}
    for name, value in good.items():
        params.get_param(name).resolve(value)
    for name, bad in (("segmentation_method", "dbscan"), ("image_styles", ["oil-painting"]), ("max_usd", -1)):
        with pytest.raises(Exception, match="Failed validating"):
            params.get_param(name).resolve(bad)
