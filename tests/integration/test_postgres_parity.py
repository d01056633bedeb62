"""The same seeded data gives the same personas from DuckDB and from PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from persona_pipeline import stages
from persona_pipeline.config import Settings, load_settings
from persona_pipeline.contracts import Persona
from persona_pipeline.publish import read_partition
from persona_pipeline.storage import read_json
from persona_pipeline.warehouse.engine import warehouse_engine
from persona_pipeline.warehouse.features import extract_to_frames
from persona_pipeline.warehouse.mapping import default_mapping
from persona_pipeline.warehouse.sample import generate_sample, load_into_engine, write_duckdb

pytestmark = pytest.mark.integration

D = date(2026, 12, 1)
CUSTOMERS, SEED = 3_000, 11


def _settings(url: str, store: Path, method: str) -> Settings:
    # Identical settings except the warehouse and the (separate) local object store.
    return load_settings(
        environ={},
        overrides={
            "warehouse.url": url,
            "storage.root": str(store),
            "segmentation.method": method,
            "segmentation.min_segment_size": 30,
            "validation.freshness_days": 30,
        },
    )


def _personas(settings: Settings, run_id: str) -> tuple[list[Persona], dict[str, Any]]:
    ctx = stages.make_context(settings, D, run_id, progress=lambda _: None)
    stages.run_all(ctx)
    keys = ctx.store.list_keys(ctx.key("personas") + "/")
    personas = sorted((Persona.from_dict(read_json(ctx.store, key)) for key in keys), key=lambda p: p.persona_id)
    with warehouse_engine(settings.warehouse.url) as engine:
        run = read_partition(engine, "persona", "persona_runs", D).iloc[0].to_dict()
    return personas, run


@pytest.fixture(scope="module")
def duckdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("parity") / "warehouse.duckdb"
    write_duckdb(path, CUSTOMERS, seed=SEED, as_of=D)
    return f"duckdb:///{path}"


@pytest.fixture
def postgres_url(pg_database: str) -> str:
    data = generate_sample(CUSTOMERS, seed=SEED, as_of=D)
    engine = sa.create_engine(pg_database)
    try:
        load_into_engine(engine, data)
    finally:
        engine.dispose()
    return pg_database


@pytest.mark.parametrize("method", ["rfm", "kmeans"])
def test_same_seeded_data_gives_the_same_personas_from_duckdb_and_postgres(
    method: str, duckdb_url: str, postgres_url: str, tmp_path: Path
) -> None:
    from_duckdb, duck_run = _personas(_settings(duckdb_url, tmp_path / "store-duckdb", method), "parity-duckdb")
    from_postgres, pg_run = _personas(_settings(postgres_url, tmp_path / "store-pg", method), "parity-postgres")

    assert len(from_duckdb) >= 5
    assert [p.persona_id for p in from_duckdb] == [p.persona_id for p in from_postgres]
    assert [p.name for p in from_duckdb] == [p.name for p in from_postgres]
    assert [p.size for p in from_duckdb] == [p.size for p in from_postgres]
    assert [[q.prompt_hash for q in p.prompts] for p in from_duckdb] == [
        [q.prompt_hash for q in p.prompts] for p in from_postgres
    ]
    assert [p.content_hash for p in from_duckdb] == [p.content_hash for p in from_postgres]
    for name in ("rows_extracted", "rows_valid", "rows_quarantined", "rows_excluded", "personas", "missing_fields"):
        assert duck_run[name] == pg_run[name], name


def test_same_features_from_duckdb_and_postgres(duckdb_url: str, postgres_url: str) -> None:
    frames = []
    for url in (duckdb_url, postgres_url):
        with warehouse_engine(url) as engine:
            _, chunks = extract_to_frames(engine, default_mapping(), D, chunk_rows=1_000)
        frames.append(pd.concat(chunks, ignore_index=True))
    duck, pg = frames
    # The query orders by customer id, so even the row order (and the chunking) agrees.
    pd.testing.assert_frame_equal(duck, pg, check_exact=False, rtol=1e-12)
