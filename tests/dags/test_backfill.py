"""Backfills: one consistent partition per date, and rerunning a date replaces it (never duplicates).

The runs themselves go through ``dag.test(logical_date=...)`` (a backfill run executes the same tasks with the
same logical date); the real ``airflow backfill create`` CLI is exercised for what it decides without a
scheduler: which logical dates become runs, and how already-processed dates are treated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from persona_pipeline.publish import TABLES
from persona_pipeline.storage import LocalObjectStore, read_json
from persona_pipeline.warehouse.engine import warehouse_engine

pytestmark = pytest.mark.slow
DAGS = Path(__file__).resolve().parents[2] / "dags"
FIRST, SECOND = date(2026, 11, 30), date(2026, 12, 1)

# What identifies a row within a date; a duplicate of any of these is a double-published row.
NATURAL_KEYS = {
    "persona_runs": ("dt",),
    "segment_snapshots": ("dt", "segment_id"),
    "segment_traits": ("dt", "segment_id", "dimension", "value"),
    "personas": ("dt", "persona_id"),
    "persona_images": ("dt", "persona_id", "variant"),
    "segment_membership": ("dt", "customer_key"),
    "quarantine": ("dt", "source", "customer_key", "rule", "column_name", "value"),
}


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _rows_per_date(engine: sa.Engine, table: str) -> dict[date, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT dt, count(*) FROM persona.{table} GROUP BY dt")).all()
    return {(r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0]))): int(r[1]) for r in rows}


def _duplicates(engine: sa.Engine, table: str, key: tuple[str, ...]) -> int:
    columns = ", ".join(key)
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    f"SELECT count(*) FROM (SELECT {columns} FROM persona.{table} GROUP BY {columns} "
                    "HAVING count(*) > 1) AS dup"
                )
            ).scalar_one()
        )


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args], env=os.environ.copy(), capture_output=True, text=True, timeout=300, check=False
    )


def test_backfilled_dates_are_consistent_and_a_rerun_replaces_its_date(
    airflow_db: Path, warehouse_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store_root = tmp_path / "store"
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"warehouse:\n  url: duckdb:///{warehouse_copy}\n"
        f"storage:\n  root: {store_root}\n"
        "segmentation:\n  min_segment_size: 30\n"
        # Keep every date's membership, and quarantine the oldest customers, so that all seven tables have
        # rows to check for two partitions.
        "privacy:\n  membership_history: all\n"
        "validation:\n  max_age: 70\n  max_invalid_share: 0.5\n"
    )
    monkeypatch.setenv("PERSONA_CONFIG", str(config))
    dag = DagBag(dag_folder=str(DAGS)).dags["persona_nightly"]
    url = f"duckdb:///{warehouse_copy}"
    store = LocalObjectStore(store_root, "persona-pipeline")

    def run(day: date) -> str:
        dag_run = dag.test(logical_date=_at(day))
        assert str(dag_run.state) in ("success", "DagRunState.SUCCESS"), day
        return str(dag_run.run_id)

    run(FIRST)
    run(SECOND)
    with warehouse_engine(url) as engine:
        before = {table: _rows_per_date(engine, table) for table in TABLES}
    first_gallery = store.get_bytes(f"dt={FIRST}/index.html")

    rerun_id = run(FIRST)  # the backfill of an already-published date

    with warehouse_engine(url) as engine:
        after = {table: _rows_per_date(engine, table) for table in TABLES}
        for table in TABLES:
            assert set(after[table]) <= {FIRST, SECOND}, table
            assert _duplicates(engine, table, NATURAL_KEYS[table]) == 0, table
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT dt, run_id, status FROM persona.persona_runs ORDER BY dt")).all()
            latest = conn.execute(sa.text("SELECT DISTINCT dt FROM persona.latest_personas")).scalars().all()
    # Exactly two partitions in every table, and the rerun changed no count.
    assert after == before
    for table in TABLES:
        assert set(after[table]) == {FIRST, SECOND}, table
    assert before["personas"][FIRST] >= 5 and before["segment_membership"][FIRST] > 1000
    assert [(str(r[0])[:10], r[2]) for r in runs] == [(str(FIRST), "success"), (str(SECOND), "success")]
    assert runs[0][1] == rerun_id  # the first date's row is the rerun's, replaced rather than added
    assert [str(d)[:10] for d in latest] == [str(SECOND)]

    # The object store holds one partition per date too; the rerun rewrote its gallery in place.
    for table in TABLES:
        parts = store.list_keys(f"tables/{table}/")
        assert parts == [f"tables/{table}/dt={d}/part-00000.parquet" for d in (FIRST, SECOND)], table
    assert store.get_bytes(f"dt={FIRST}/index.html") != b""
    assert len(store.get_bytes(f"dt={FIRST}/index.html")) == pytest.approx(len(first_gallery), rel=0.05)
    # Backfilling an older date does not move the "latest" pointer back.
    assert read_json(store, "latest.json")["dt"] == str(SECOND)

    # The real CLI decides the runs of a backfill: one per logical date; "none" leaves processed dates alone,
    # "completed" reprocesses them (each rerun replaces its date, as above).
    window = ["--dag-id", "persona_nightly", "--from-date", "2026-11-29", "--to-date", "2026-12-01", "--dry-run"]
    for behaviour, expected in (("none", ["2026-11-29"]), ("completed", ["2026-11-29", "2026-11-30", "2026-12-01"])):
        result = _airflow("backfill", "create", *window, "--reprocess-behavior", behaviour)
        assert result.returncode == 0, result.stderr[-2000:]
        planned = sorted({line for line in _dates_in(result.stdout)})
        assert planned == expected, (behaviour, result.stdout[-2000:])


def _dates_in(output: str) -> list[str]:
    """Logical dates listed in the dry run's 'Runs to be attempted' table."""
    import re

    table = output.split("Runs to be attempted:", 1)[-1]
    return re.findall(r"\b(20\d\d-\d\d-\d\d)[ T]00:00:00", table)
