"""The benchmark machinery end to end on a tiny warehouse, so ``python -m bench`` keeps working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.floor import floor_sql
from bench.report import evaluate_targets


def test_bench_runs_on_a_small_warehouse_and_writes_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "--customers",
            "2000",
            "--skip-fanout",
            "--task-processes",
            "--warmup-customers",
            "0",
            "--floor-repeats",
            "1",
            "--dag-runs",
            "1",
            "--workdir",
            str(tmp_path / "cache"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    for key in (
        "machine",
        "parameters",
        "results",
        "fanout_s",
        "fanout_ideal_s",
        "rerun_calls",
        "dag_import",
        "targets",
    ):
        assert key in report
    assert {"nproc", "memory_gib", "cpu_model", "python", "libraries"} <= set(report["machine"])
    (row,) = report["results"]
    for key in (
        "customers",
        "pipeline_s",
        "floor_s",
        "naive_s",
        "peak_rss_mb",
        "naive_peak_rss_mb",
        "stages",
        "ratios",
        "us_per_customer",
    ):
        assert row[key] is not None, key
    assert row["customers"] == 2000 and row["orders"] > 2000 and row["events"] > row["orders"]
    assert list(row["stages"]) == [
        "extract",
        "validate",
        "segment",
        "profile",
        "build_personas",
        "generate_persona_images",
        "publish",
    ]
    for figures in row["stages"].values():
        assert {"seconds", "rows", "rows_per_s", "peak_rss_mb"} <= set(figures)
    assert row["stages"]["extract"]["rows"] == 2000
    # --task-processes: every stage again in its own interpreter, as the DAG runs them
    assert list(row["task_processes"]) == list(row["stages"])
    assert all(f["peak_rss_mb"] > 50 and f["seconds"] >= 0 for f in row["task_processes"].values())
    assert row["task_peak_rss_mb"] == max(f["peak_rss_mb"] for f in row["task_processes"].values())
    assert {"pipeline_over_floor", "naive_over_pipeline"} <= set(row["ratios"])
    # the floor and the naive peer find the same RFM segments
    assert set(row["floor"]["segment_sizes"]) == set(row["naive"]["segment_sizes"])
    assert report["fanout_s"] is None and report["rerun_calls"] is None
    assert any(
        d["file"] == "dags/persona_nightly.py" and d["dag_beyond_sdk_s"] is not None for d in report["dag_import"]
    )
    assert "| customers |" in capsys.readouterr().out
    # the warehouse is cached: a second lookup reuses it
    assert list((tmp_path / "cache" / "warehouses").glob("sample-2000-*.duckdb"))


def test_targets_are_unmeasured_without_the_sizes() -> None:
    targets = evaluate_targets([], None, None)
    assert targets and all(t["met"] is None for t in targets)


def test_floor_is_one_statement() -> None:
    from datetime import date

    sql = floor_sql(date(2026, 12, 1)).strip()
    assert sql.startswith("WITH") and ";" not in sql
