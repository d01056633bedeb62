"""What the reliability tests check after a fault: one consistent partition, ``latest_*`` views never partial,
nothing published for a failed date, and no secret or personal data in any artefact."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from persona_pipeline import stages
from persona_pipeline.config import Settings, load_settings
from persona_pipeline.publish import TABLES, read_partition
from persona_pipeline.storage import ObjectStore, read_json
from persona_pipeline.warehouse.engine import warehouse_engine
from tests.conftest import SAMPLE_DATE

D = SAMPLE_DATE
D_PREV = D - timedelta(days=1)
SCHEMA = "persona"
API_KEY = "sk-test-reliability-0000"  # an obviously fake key the local OpenAI-compatible server accepts
BASE_SETTINGS: dict[str, Any] = {
    "segmentation.min_segment_size": 30,
    "validation.freshness_days": 30,
}


def make_settings(warehouse_url: str, store_root: str | Path | None = None, /, **overrides: Any) -> Settings:
    """Settings for a test run: the given warehouse, a local store at ``store_root``, small k, no env."""
    values: dict[str, Any] = {"warehouse.url": warehouse_url, **BASE_SETTINGS}
    if store_root is not None:
        values["storage.root"] = str(store_root)
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


def write_config(path: Path, warehouse_url: str, store_root: str | Path, /, **overrides: Any) -> Path:
    """The same settings as :func:`make_settings`, as a YAML file for ``persona-pipeline --config``."""
    import yaml

    values: dict[str, Any] = {"warehouse.url": warehouse_url, "storage.root": str(store_root), **BASE_SETTINGS}
    values.update(overrides)
    nested: dict[str, Any] = {}
    for dotted, value in values.items():
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(nested))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a ``persona-pipeline`` subprocess: this one's, without any PERSONA_* settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_")}
    env.update(extra)
    return env


CLI = str(Path(sys.executable).with_name("persona-pipeline"))


def quiet(_: str) -> None:
    """A progress callback that prints nothing."""


def context(
    settings: Settings,
    day: date,
    run_id: str,
    *,
    store: ObjectStore | None = None,
    progress: stages.Progress | None = None,
) -> stages.StageContext:
    """The stage context of one run."""
    return stages.make_context(settings, day, run_id, store=store, progress=progress or quiet)


def planned_persona_ids(store: ObjectStore, day: date) -> list[str]:
    """Persona ids of the date's image plan, largest persona first (the order ``run_all`` uses)."""
    jobs = read_json(store, f"dt={day.isoformat()}/image_plan.json")["jobs"]
    return list(dict.fromkeys(job["prompt"]["persona_id"] for job in jobs))


def finish_run(ctx: stages.StageContext, *, api_key: str | None = None) -> dict[str, Any]:
    """The image tasks of every persona, then publish: what Airflow runs (or retries) after ``build_personas``."""
    for persona_id in planned_persona_ids(ctx.store, ctx.run.logical_date):
        stages.generate_persona_images(ctx, persona_id, api_key=api_key)
    return stages.publish(ctx)


# -- warehouse ----------------------------------------------------------------------------------------------------


def _snapshot(engine: sa.Engine) -> sa.Connection:
    """A connection that sees one snapshot of the database across several queries (PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return engine.connect()


def _tables_exist(conn: sa.Connection) -> bool:
    return bool(sa.inspect(conn).has_table("persona_runs", schema=SCHEMA))


def partition_frames(url: str, day: date) -> dict[str, pd.DataFrame]:
    """Every output table's rows for ``day`` (empty frames when nothing was ever published)."""
    with warehouse_engine(url) as engine:
        with engine.connect() as conn:
            if not _tables_exist(conn):
                return {name: pd.DataFrame() for name in TABLES}
        return {name: read_partition(engine, SCHEMA, name, day) for name in TABLES}


def latest_view_dates(url: str) -> date | None:
    """Check that every ``latest_*`` view shows exactly the newest successful date, completely; return it.

    All views are read in one snapshot, so a reader can never see a mix of two runs or a half-written one.
    """
    with warehouse_engine(url) as engine, _snapshot(engine) as conn:
        if not _tables_exist(conn):
            return None
        newest = conn.execute(
            sa.text(f"SELECT max(dt) FROM {SCHEMA}.persona_runs WHERE status = 'success'")
        ).scalar_one_or_none()
        for name in TABLES:
            shown = conn.execute(sa.text(f"SELECT dt, count(*) FROM {SCHEMA}.latest_{name} GROUP BY dt")).fetchall()
            if newest is None:
                assert shown == [], f"latest_{name} shows rows although no run succeeded: {shown}"
                continue
            stored = conn.execute(
                sa.text(f"SELECT count(*) FROM {SCHEMA}.{name} WHERE dt = :dt"), {"dt": newest}
            ).scalar_one()
            if stored == 0:
                assert shown == [], f"latest_{name}: {shown}"
            else:
                assert [(_as_date(d), n) for d, n in shown] == [(_as_date(newest), stored)], (
                    f"latest_{name} shows {shown}, but {newest} has {stored} row(s)"
                )
        if newest is not None:
            run = conn.execute(sa.text(f"SELECT personas, images_total FROM {SCHEMA}.latest_persona_runs")).one()
            personas = conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.latest_personas")).scalar_one()
            images = conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.latest_persona_images")).scalar_one()
            assert (personas, images) == (run.personas, run.images_total), "latest views disagree with their run row"
    return _as_date(newest) if newest is not None else None


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) and not hasattr(value, "hour") else pd.Timestamp(value).date()


def assert_nothing_published(url: str, store: ObjectStore, day: date) -> None:
    """A failed run left no rows for ``day`` and did not move the latest pointer to it."""
    frames = partition_frames(url, day)
    assert {name: len(frame) for name, frame in frames.items()} == dict.fromkeys(TABLES, 0)
    assert store.head(f"dt={day.isoformat()}/run.json") is None
    if store.head("latest.json") is not None:
        assert read_json(store, "latest.json")["dt"] != day.isoformat()
    assert latest_view_dates(url) != day


def assert_consistent_partition(url: str, store: ObjectStore, day: date, *, run_id: str | None = None) -> pd.Series:
    """Exactly one complete, self-consistent partition for ``day`` in the tables and the store; returns its run row."""
    frames = partition_frames(url, day)
    runs = frames["persona_runs"]
    assert len(runs) == 1, f"{len(runs)} run rows for {day}"
    run = runs.iloc[0]
    if run_id is not None:
        assert run["run_id"] == run_id
    assert run["status"] == "success"
    assert run["rows_extracted"] == run["rows_valid"] + run["rows_quarantined"] + run["rows_excluded"]

    personas, images = frames["personas"], frames["persona_images"]
    snapshots, traits = frames["segment_snapshots"], frames["segment_traits"]
    assert len(personas) == run["personas"] > 0 and personas["persona_id"].is_unique
    assert len(images) == run["images_total"] > 0
    assert not images.duplicated(["persona_id", "variant"]).any()
    assert set(images["persona_id"]) == set(personas["persona_id"])
    assert run["images_generated"] + run["images_cached"] == run["images_total"]
    assert len(snapshots) == run["segments"] and snapshots["segment_id"].is_unique
    assert set(personas["segment_id"]) == set(snapshots["segment_id"])
    assert not traits.duplicated(["segment_id", "dimension", "value"]).any()
    assert set(traits["segment_id"]) <= set(snapshots["segment_id"])
    membership = frames["segment_membership"]
    if len(membership):  # "latest" membership history keeps only the newest date
        assert len(membership) == run["rows_valid"] - run["rows_suppressed"]
        assert membership["customer_key"].is_unique
        assert set(membership["segment_id"]) == set(snapshots["segment_id"])

    partition = f"dt={day.isoformat()}"
    documents = {key.rsplit("/", 1)[1].removesuffix(".json") for key in store.list_keys(f"{partition}/personas/")}
    assert documents == set(personas["persona_id"])
    for row in images.itertuples():
        head = store.head(str(row.object_key))
        assert head is not None and head.size == row.size_bytes, row.object_key
    assert read_json(store, f"{partition}/run.json")["run_id"] == run["run_id"]
    assert store.head(f"{partition}/index.html") is not None
    import pyarrow.parquet as pq

    for name, frame in frames.items():
        if name == "segment_membership" and not len(frame):
            continue
        copy = pq.read_table(io.BytesIO(store.get_bytes(f"tables/{name}/{partition}/part-00000.parquet")))
        assert copy.num_rows == len(frame), f"Parquet copy of {name} for {day}: {copy.num_rows} != {len(frame)}"
    return run


# -- scanning every artefact --------------------------------------------------------------------------------------


def store_texts(store: ObjectStore) -> Iterator[tuple[str, str]]:
    """``(key, text)`` of every object: Parquet decoded to CSV, other bytes as text, plus the object's metadata."""
    import pyarrow.parquet as pq

    for key in store.list_keys(""):
        data = store.get_bytes(key)
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            text = table.to_pandas().astype(str).to_csv() + "\n" + str(table.schema)
        else:
            text = data.decode("utf-8", "replace") + "\n" + data.decode("latin-1")
        head = store.head(key)
        yield key, text + "\n" + json.dumps(head.metadata if head else {})


def warehouse_texts(url: str, schema: str = SCHEMA) -> Iterator[tuple[str, str]]:
    """``(table, csv)`` of every table and view in the output schema."""
    with warehouse_engine(url) as engine, engine.connect() as conn:
        inspector = sa.inspect(conn)
        names = [*inspector.get_table_names(schema=schema), *inspector.get_view_names(schema=schema)]
        for name in names:
            frame = pd.DataFrame(conn.execute(sa.text(f'SELECT * FROM {schema}."{name}"')).mappings().all())
            yield f"{schema}.{name}", frame.astype(str).to_csv()


def find_needles(haystacks: Iterable[tuple[str, str]], needles: Iterable[str]) -> list[str]:
    """``"where: needle"`` for every needle found (case-insensitive) in any haystack."""
    lowered = [(where, text.lower()) for where, text in haystacks]
    return [f"{where}: {needle!r}" for needle in needles for where, text in lowered if needle.lower() in text]
