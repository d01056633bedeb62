"""The nightly DAG on the production path: PostgreSQL warehouse, S3 object store, OpenAI-compatible image API.

All three are real servers started by fixtures (a throwaway PostgreSQL cluster, SeaweedFS, and a local HTTP
server speaking the OpenAI Images API to the real ``openai`` client). Credentials reach the DAG only as
Airflow Connections (``AIRFLOW_CONN_*`` environment variables); the settings file carries no credentials and
even points the warehouse at a server that does not exist, so a run that ignored the connection would fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from persona_pipeline.publish import read_partition
from persona_pipeline.storage import S3ObjectStore, read_json
from persona_pipeline.warehouse.engine import warehouse_engine
from tests.fake_openai import FakeOpenAIServer
from tests.services import SeaweedS3Server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = date(2026, 12, 1)
PREFIX = "persona-pipeline"
API_KEY = "sk-test-production-path"


@pytest.fixture
def image_api() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as server:
        yield server


@pytest.fixture
def pg_warehouse(pg_database: str) -> str:
    """The PostgreSQL test database with the sample retailer (3,000 customers) loaded."""
    from persona_pipeline.warehouse.sample import generate_sample, load_into_engine

    with warehouse_engine(pg_database) as engine:
        load_into_engine(engine, generate_sample(3000, seed=11))
    return pg_database


def _register_connections(
    monkeypatch: pytest.MonkeyPatch, warehouse: str, s3: SeaweedS3Server, api: FakeOpenAIServer
) -> None:
    url = make_url(warehouse)
    connections: dict[str, dict[str, Any]] = {
        "PERSONA_WAREHOUSE": {
            "conn_type": "postgres",
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "schema": url.database,
        },
        "AWS_DEFAULT": {
            "conn_type": "aws",
            "login": s3.access_key,
            "password": s3.secret_key,
            "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
        },
        "OPENAI_DEFAULT": {"conn_type": "openai", "password": API_KEY, "host": api.base_url},
    }
    for conn_id, value in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps(value))


def test_production_path_end_to_end(
    airflow_db: Path,
    pg_warehouse: str,
    s3_server: SeaweedS3Server,
    s3_bucket: tuple[Any, str],
    image_api: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    client, bucket = s3_bucket
    _register_connections(monkeypatch, pg_warehouse, s3_server, image_api)
    config = tmp_path / "settings.yaml"
    config.write_text(
        # No credentials here; a warehouse URL that cannot work proves the connection is what is used.
        "warehouse:\n  url: postgresql+psycopg://nobody@127.0.0.1:9/not_this_one\n"
        f"storage:\n  kind: s3\n  bucket: {bucket}\n  prefix: {PREFIX}\n"
        "segmentation:\n  min_segment_size: 30\n"
        "imaging:\n  provider: offline\n  max_usd_per_run: 5\n"
    )
    monkeypatch.setenv("PERSONA_CONFIG", str(config))
    dag = DagBag(dag_folder=str(DAGS)).dags["persona_nightly"]
    logical = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)

    def run() -> None:
        # The image provider comes from the run's Params, as a user would trigger it.
        dag_run = dag.test(logical_date=logical, run_conf={"image_provider": "openai"})
        assert str(dag_run.state) in ("success", "DagRunState.SUCCESS")

    run()
    store = S3ObjectStore(bucket, PREFIX, client=client)
    with warehouse_engine(pg_warehouse) as engine:
        personas = read_partition(engine, "persona", "personas", DAY)
        images = read_partition(engine, "persona", "persona_images", DAY)
        runs = read_partition(engine, "persona", "persona_runs", DAY)
        members = read_partition(engine, "persona", "segment_membership", DAY)
    plan = read_json(store, f"dt={DAY}/image_plan.json")

    # Rows in the PostgreSQL output tables.
    assert len(personas) >= 5 and len(members) > 1000
    assert runs["status"].tolist() == ["success"] and runs["image_provider"].tolist() == ["openai"]
    assert int(runs["rows_extracted"].iloc[0]) == 3000
    # One API call per prompt, every image from the API, and the cost recorded.
    prompts = len(plan["jobs"])
    assert prompts == 2 * len(personas) == len(images)
    assert image_api.calls("images") == prompts
    assert set(images["provider"]) == {"openai"} and not images["cached"].any()
    assert float(runs["image_cost_usd"].iloc[0]) > 0
    # Published objects in the bucket, and BI links that are presigned S3 URLs of those objects.
    keys = store.list_keys()
    assert f"dt={DAY}/index.html" in keys and "latest.json" in keys
    for persona_id in personas["persona_id"]:
        assert f"dt={DAY}/personas/{persona_id}.json" in keys
    for key, url in zip(images["object_key"], images["image_url"], strict=True):
        assert key in keys and store.head(key).content_type == "image/png"  # type: ignore[union-attr]
        assert unquote(url).startswith(f"{s3_server.endpoint_url}/{bucket}/{PREFIX}/{key}?")
        assert "X-Amz-Signature=" in url  # SigV4
    for table in ("personas", "persona_images", "persona_runs", "segment_membership"):
        assert f"tables/{table}/dt={DAY}/part-00000.parquet" in keys

    # The rerun replaces the date and draws nothing: every image comes from the content-addressed cache.
    run()
    assert image_api.calls("images") == prompts
    with warehouse_engine(pg_warehouse) as engine:
        images_again = read_partition(engine, "persona", "persona_images", DAY)
        runs_again = read_partition(engine, "persona", "persona_runs", DAY)
        with engine.connect() as conn:
            total_personas = conn.execute(sa.text("SELECT count(*) FROM persona.personas")).scalar_one()
    assert len(images_again) == prompts and images_again["cached"].all()
    assert len(runs_again) == 1 and float(runs_again["image_cost_usd"].iloc[0]) == 0.0
    assert total_personas == len(personas)

    # The UI plugin serves that gallery from S3 with the images proxied (the browser needs no bucket access).
    from fastapi.testclient import TestClient
    from persona_airflow.gallery import create_app

    with TestClient(create_app(lambda: store, require_login=False)) as gallery:
        page = gallery.get("/")
        assert page.status_code == 200 and s3_server.endpoint_url not in page.text
        first_image = images_again["object_key"].iloc[0].removeprefix(f"dt={DAY}/")
        assert f'src="{first_image}"' in page.text
        response = gallery.get(f"/dt={DAY}/{first_image}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"


def test_cli_seeds_a_postgres_warehouse(pg_database: str) -> None:
    """``persona-pipeline seed --warehouse URL`` (what the compose init service runs)."""
    from persona_pipeline.cli import main

    assert main(["seed", "--warehouse", pg_database, "--customers", "500"]) == 0
    with warehouse_engine(pg_database) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one() == 500
