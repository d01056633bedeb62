"""Warehouse faults on a real PostgreSQL: the server restarted while features stream out, the publish task's
process SIGKILLed in the middle of its transaction, and two logical dates published at the same time.

Readers of the ``latest_*`` views must see the previous complete date or the new complete one, never a partial
run; a rerun must leave exactly one consistent partition.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from persona_pipeline import stages
from persona_pipeline.exceptions import SourceError
from persona_pipeline.publish import replace_partition
from persona_pipeline.storage import LocalObjectStore, read_json
from tests.fake_openai import FakeOpenAIServer
from tests.reliability.checks import (
    API_KEY,
    CLI,
    D_PREV,
    SCHEMA,
    D,
    assert_consistent_partition,
    assert_nothing_published,
    cli_env,
    context,
    latest_view_dates,
    make_settings,
    write_config,
)
from tests.services import PostgresServer

pytestmark = pytest.mark.integration

PREFIX = "persona-pipeline"
FAST = {"personas.styles": ["portrait"]}


def test_postgres_restarted_mid_extract_fails_clearly_then_a_rerun_succeeds(
    postgres_server: PostgresServer, pg_warehouse: str, tmp_path: Path
) -> None:
    settings = make_settings(pg_warehouse, tmp_path / "store", **FAST, **{"warehouse.chunk_rows": 1000})
    restarts: list[float] = []

    def restart_after_first_chunk(message: str) -> None:
        if "so far (1 chunk(s))" in message and not restarts:
            began = time.monotonic()
            postgres_server.restart()  # fast shutdown: the streaming session is cut between two chunks
            restarts.append(time.monotonic() - began)

    ctx = context(settings, D, "cut", progress=restart_after_first_chunk)
    with pytest.raises(SourceError) as failure:
        stages.run_all(ctx)

    assert restarts, "the server was not restarted during the extract"
    message = str(failure.value)
    assert "lost the warehouse connection after 1,000 customer(s)" in message
    assert "terminating connection due to administrator command" in message
    assert "rerun the extract" in message
    assert ctx.store.head("dt=2026-12-01/extract.json") is None  # the extract did not claim success
    assert_nothing_published(pg_warehouse, ctx.store, D)

    stages.run_all(context(settings, D, "rerun"))
    run = assert_consistent_partition(pg_warehouse, ctx.store, D, run_id="rerun")
    assert run["rows_extracted"] == 3_000
    assert read_json(ctx.store, "dt=2026-12-01/extract.json")["rows"] == 3_000
    assert latest_view_dates(pg_warehouse) == D


def _backends(dsn: str, where: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT pid, coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND {where}"
        ).fetchall()
    return [(int(pid), str(kind)) for pid, kind in rows]


#: What the DAG's publish task runs, in a process of its own (as on an Airflow worker).
PUBLISH_TASK = """
import sys
from datetime import date
from persona_pipeline import stages
from persona_pipeline.config import load_settings
ctx = stages.make_context(load_settings(sys.argv[1]), date.fromisoformat(sys.argv[2]), sys.argv[3])
stages.publish(ctx)
"""


def test_publish_task_killed_inside_its_transaction_then_rerun(
    postgres_server: PostgresServer, pg_warehouse: str, tmp_path: Path
) -> None:
    store_root = tmp_path / "store"
    settings = make_settings(pg_warehouse, store_root, **FAST)
    stages.run_all(context(settings, D_PREV, "yesterday"))
    ctx = context(settings, D, "killed")
    for stage in (stages.extract, stages.validate, stages.segment, stages.profile):
        stage(ctx)
    for persona_id in stages.build_personas(ctx):
        stages.generate_persona_images(ctx, persona_id)
    store = LocalObjectStore(store_root, PREFIX)
    assert latest_view_dates(pg_warehouse) == D_PREV
    config = write_config(tmp_path / "settings.yaml", pg_warehouse, store_root, **FAST)
    dsn = postgres_server.dsn(sa.make_url(pg_warehouse).database or "postgres")

    # A reader holds SHARE on the membership table: the publish transaction gets through the first tables and
    # then waits at segment_membership, so the kill lands inside the transaction, deterministically.
    blocker = psycopg.connect(dsn)
    blocker.execute(f"LOCK TABLE {SCHEMA}.segment_membership IN SHARE MODE")
    process = subprocess.Popen(
        [sys.executable, "-c", PUBLISH_TASK, str(config), D.isoformat(), "killed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 120
        waiting: list[tuple[int, str]] = []
        while not waiting:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "publish never reached the membership table"
            time.sleep(0.05)
            waiting = _backends(dsn, "wait_event_type = 'Lock' AND query ILIKE '%segment_membership%'")
        # Mid-transaction: D's first tables are written but not committed; readers still see D-1, completely.
        assert latest_view_dates(pg_warehouse) == D_PREV
        # The gallery goes up only after the tables commit, so no gallery shows a run the tables do not hold.
        assert store.head("dt=2026-12-01/index.html") is None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        blocker.rollback()
        blocker.close()
    assert process.returncode == -signal.SIGKILL
    # The orphaned session notices its client is gone once it runs again, and rolls back.
    orphan = waiting[0][0]
    deadline = time.monotonic() + 60
    while _backends(dsn, f"pid = {orphan}"):
        assert time.monotonic() < deadline, "the killed client's transaction never ended"
        time.sleep(0.05)

    assert_nothing_published(pg_warehouse, store, D)
    assert latest_view_dates(pg_warehouse) == D_PREV
    assert read_json(store, "latest.json")["dt"] == D_PREV.isoformat()
    assert_consistent_partition(pg_warehouse, store, D_PREV, run_id="yesterday")

    # Airflow retries the publish task.
    stages.publish(context(settings, D, "retried"))
    assert_consistent_partition(pg_warehouse, store, D, run_id="retried")
    assert latest_view_dates(pg_warehouse) == D
    assert read_json(store, "latest.json")["dt"] == D.isoformat()


def test_first_publishes_of_several_dates_at_once_do_not_collide(pg_database: str) -> None:
    """Schema, tables and views are created once even when several dates publish into an empty warehouse."""
    dates = [date(2026, 11, day) for day in range(24, 30)]
    barrier = threading.Barrier(len(dates))
    errors: list[str] = []

    def publish(day: date) -> None:
        engine = sa.create_engine(pg_database)
        try:
            barrier.wait()
            replace_partition(
                engine, SCHEMA, day, {"persona_runs": pd.DataFrame([{"run_id": f"run-{day}", "status": "success"}])}
            )
        except Exception as exc:
            errors.append(f"{day}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=publish, args=(day,)) for day in dates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = sa.create_engine(pg_database)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text(f"SELECT dt, run_id FROM {SCHEMA}.persona_runs ORDER BY dt")).fetchall()
            latest = conn.execute(sa.text(f"SELECT dt FROM {SCHEMA}.latest_persona_runs")).fetchall()
    finally:
        engine.dispose()
    assert [(row.dt, row.run_id) for row in runs] == [(day, f"run-{day}") for day in dates]
    assert [row.dt for row in latest] == [dates[-1]]


def test_two_logical_dates_running_at_once_then_a_backfill(
    pg_warehouse: str, fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store_root = tmp_path / "store"
    images = {"imaging.provider": "openai", "imaging.base_url": fake_openai.base_url}
    config = write_config(tmp_path / "settings.yaml", pg_warehouse, store_root, **FAST, **images)
    processes = {
        day: subprocess.Popen(
            [CLI, "run", "--date", day.isoformat(), "--config", str(config), "--run-id", f"parallel-{day}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(OPENAI_API_KEY=API_KEY),
        )
        for day in (D_PREV, D)
    }
    outputs = {day: process.communicate(timeout=300) for day, process in processes.items()}
    for day, process in processes.items():
        assert process.returncode == 0, f"{day}: {outputs[day][1][-3000:]}"
        assert f"Gallery: {store_root}" in outputs[day][0]

    store = LocalObjectStore(store_root, PREFIX)
    for day in (D_PREV, D):
        assert_consistent_partition(pg_warehouse, store, day, run_id=f"parallel-{day}")
    assert latest_view_dates(pg_warehouse) == D
    assert read_json(store, "latest.json")["dt"] == D.isoformat()

    # A backfill of the older date replaces that date only; "latest" stays on the newest date.
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    settings = make_settings(pg_warehouse, store_root, **FAST, **images)
    stages.run_all(context(settings, D_PREV, "backfill"))
    assert_consistent_partition(pg_warehouse, store, D_PREV, run_id="backfill")
    assert_consistent_partition(pg_warehouse, store, D, run_id=f"parallel-{D}")
    assert latest_view_dates(pg_warehouse) == D
    assert read_json(store, "latest.json")["dt"] == D.isoformat()
    where = subprocess.run([CLI, "where", "--config", str(config)], capture_output=True, text=True, env=cli_env())
    assert where.stdout.strip() == f"Gallery: {store.path_for(f'dt={D.isoformat()}/index.html')}"
