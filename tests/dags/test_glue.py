"""The Airflow glue (plugins/persona_airflow): connections → settings and clients, Params, dry runs, alerts.

Connections are registered the way Airflow users do it, as ``AIRFLOW_CONN_<ID>`` environment variables.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from persona_pipeline.storage import LocalObjectStore, S3ObjectStore, write_json
from persona_pipeline.warehouse.engine import warehouse_engine

CONN_ENV = ("AIRFLOW_CONN_PERSONA_WAREHOUSE", "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_OPENAI_DEFAULT")


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Start every test without connections and with settings pointing at tmp_path."""
    for name in CONN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONA_STORAGE__ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("PERSONA_WAREHOUSE__URL", f"duckdb:///{tmp_path / 'configured.duckdb'}")


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any] | str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value))


# -- warehouse ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (
            {"conn_type": "postgres", "host": "db.internal", "port": 5432, "login": "etl", "password": "p@ss/wd"},
            "postgresql+psycopg://etl:p%40ss%2Fwd@db.internal:5432",
        ),
        (
            {"conn_type": "postgres", "host": "db", "login": "etl", "password": "x", "schema": "warehouse"},
            "postgresql+psycopg://etl:x@db/warehouse",
        ),
        (
            "postgresql://etl:secret@db.internal:6543/warehouse",
            "postgresql+psycopg://etl:secret@db.internal:6543/warehouse",
        ),
        (
            {"conn_type": "generic", "extra": {"sqlalchemy_url": "snowflake://etl:x@acct/db/schema?warehouse=wh"}},
            "snowflake://etl:x@acct/db/schema?warehouse=wh",
        ),
        ({"conn_type": "duckdb", "extra": {"path": "/data/warehouse.duckdb"}}, "duckdb:////data/warehouse.duckdb"),
        (
            {
                "conn_type": "postgres",
                "host": "db",
                "schema": "w",
                "extra": {"sqlalchemy_query": {"sslmode": "require"}},
            },
            "postgresql+psycopg://db/w?sslmode=require",
        ),
    ],
)
def test_warehouse_url_from_the_connection(
    monkeypatch: pytest.MonkeyPatch, connection: dict[str, Any] | str, expected: str
) -> None:
    from persona_airflow.connections import warehouse_url_from_connection
    from persona_airflow.runtime import RunOptions, settings_for_run

    _conn(monkeypatch, "persona_warehouse", connection)
    assert warehouse_url_from_connection() == expected
    assert settings_for_run(RunOptions()).warehouse.url == expected


def test_without_a_warehouse_connection_the_settings_decide(tmp_path: Path) -> None:
    from persona_airflow.connections import warehouse_url_from_connection
    from persona_airflow.runtime import RunOptions, settings_for_run

    assert warehouse_url_from_connection() is None
    assert settings_for_run(RunOptions()).warehouse.url == f"duckdb:///{tmp_path / 'configured.duckdb'}"


def test_a_duckdb_connection_without_a_file_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import warehouse_url_from_connection

    _conn(monkeypatch, "persona_warehouse", {"conn_type": "duckdb"})
    with pytest.raises(ValueError, match=r"persona_warehouse.*extra\.path"):
        warehouse_url_from_connection()


def test_passwords_never_reach_the_log(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from persona_airflow.connections import hide_password, warehouse_url_from_connection

    _conn(monkeypatch, "persona_warehouse", "postgresql://etl:hunter2-fake@db/warehouse")
    with caplog.at_level("INFO"):
        assert "hunter2-fake" in str(warehouse_url_from_connection())
    assert "hunter2-fake" not in caplog.text
    assert hide_password("postgresql+psycopg://etl:hunter2-fake@db/w") == "postgresql+psycopg://etl:***@db/w"
    assert hide_password("::not a url::") == "<unparseable url>"


# -- object store ---------------------------------------------------------------------------------------------


def test_s3_store_gets_credentials_endpoint_and_region_from_aws_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.runtime import object_store

    from persona_pipeline.config import load_settings

    _conn(
        monkeypatch,
        "aws_default",
        {
            "conn_type": "aws",
            "login": "AKIAFAKEFORTESTS",
            "password": "fake-secret",
            "extra": {"endpoint_url": "http://seaweedfs:8333", "region_name": "eu-central-1"},
        },
    )
    settings = load_settings(overrides={"storage.kind": "s3", "storage.bucket": "personas", "storage.prefix": "pp"})
    store = object_store(settings)
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == ("personas", "pp")
    client = store.client
    assert client.meta.endpoint_url == "http://seaweedfs:8333"
    assert client.meta.region_name == "eu-central-1"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client.meta.config.signature_version == "s3v4"
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("AKIAFAKEFORTESTS", "fake-secret")


def test_settings_fill_in_what_the_aws_connection_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import s3_client

    from persona_pipeline.config import StorageSettings

    _conn(monkeypatch, "aws_default", {"conn_type": "aws", "login": "AKIAFAKE", "password": "fake"})
    storage = StorageSettings(kind="s3", bucket="b", endpoint_url="http://minio.local:9000", region="us-west-2")
    client = s3_client(storage)
    assert client.meta.endpoint_url == "http://minio.local:9000"
    assert client.meta.region_name == "us-west-2"


def test_local_store_and_missing_aws_connection_fall_back_to_settings(tmp_path: Path) -> None:
    from persona_airflow.connections import s3_client
    from persona_airflow.runtime import object_store

    from persona_pipeline.config import StorageSettings, load_settings

    assert s3_client(StorageSettings(kind="s3", bucket="b")) is None
    store = object_store(load_settings())
    assert isinstance(store, LocalObjectStore)
    assert store.base == (tmp_path / "store" / "persona-pipeline").resolve()


# -- images ---------------------------------------------------------------------------------------------------


def test_openai_key_and_base_url_come_from_openai_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.runtime import image_credentials

    from persona_pipeline.config import load_settings

    _conn(
        monkeypatch, "openai_default", {"conn_type": "openai", "password": "sk-test-fake", "host": "http://llm:8080/v1"}
    )
    settings = load_settings(overrides={"imaging.provider": "openai"})
    assert image_credentials(settings) == {"api_key": "sk-test-fake", "base_url": "http://llm:8080/v1/"}
    _conn(
        monkeypatch,
        "openai_default",
        {"conn_type": "openai", "extra": {"openai_client_kwargs": {"api_key": "sk-test-extra"}}},
    )
    assert image_credentials(settings) == {"api_key": "sk-test-extra", "base_url": None}


def test_offline_images_and_a_missing_openai_connection_need_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import openai_credentials
    from persona_airflow.runtime import image_credentials

    from persona_pipeline.config import load_settings

    assert openai_credentials() is None
    assert image_credentials(load_settings(overrides={"imaging.provider": "openai"})) == {}
    _conn(monkeypatch, "openai_default", {"conn_type": "openai", "password": "sk-test-fake"})
    assert image_credentials(load_settings()) == {}  # offline: never looked up


def test_openai_credentials_hide_the_key_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import openai_credentials

    _conn(monkeypatch, "openai_default", {"conn_type": "openai", "password": "sk-test-do-not-print"})
    assert "sk-test-do-not-print" not in repr(openai_credentials())


def test_workload_identity_connection_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_airflow.connections import openai_credentials

    _conn(monkeypatch, "openai_default", {"conn_type": "openai", "extra": {"auth_type": "workload_identity"}})
    with pytest.raises(ValueError, match="needs an API key"):
        openai_credentials()


# -- params ---------------------------------------------------------------------------------------------------


def test_params_override_settings_and_empty_params_keep_them() -> None:
    from persona_airflow.runtime import RunOptions, settings_for_run

    configured = settings_for_run(RunOptions.from_params({}))
    options = RunOptions.from_params(
        {
            "segmentation_method": "kmeans",
            "image_provider": "openai",
            "image_styles": ["illustration"],
            "variants_per_style": 2,
            "max_images": 3,
            "max_usd": 0.5,
            "dry_run": False,
        }
    )
    settings = settings_for_run(options)
    assert settings.segmentation.method == "kmeans"
    assert settings.imaging.provider == "openai"
    assert settings.personas.styles == ("illustration",)
    assert settings.personas.variants_per_style == 2
    assert (settings.imaging.max_images_per_run, settings.imaging.max_usd_per_run) == (3, 0.5)
    untouched = settings_for_run(RunOptions.from_params({"segmentation_method": None, "image_styles": []}))
    assert untouched == configured


def test_dry_run_forces_offline_images() -> None:
    from persona_airflow.runtime import RunOptions

    assert RunOptions.from_params({"image_provider": "openai", "dry_run": True}).overrides()["imaging.provider"] == (
        "offline"
    )


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"data_interval_end": datetime(2026, 12, 1, tzinfo=UTC)}, date(2026, 12, 1)),
        ({"logical_date": datetime(2026, 11, 3, 0, 0, tzinfo=UTC)}, date(2026, 11, 3)),
        ({"dag_run": SimpleNamespace(run_after=datetime(2026, 10, 9, 4, tzinfo=UTC))}, date(2026, 10, 9)),
        ({"run_id": "backfill__2026-09-01T00:00:00+00:00"}, date(2026, 9, 1)),
        ({"run_id": "manual__2026-08-02T10:11:12.123456+00:00"}, date(2026, 8, 2)),
    ],
)
def test_run_date(context: dict[str, Any], expected: date) -> None:
    from persona_airflow.runtime import run_date

    assert run_date(context) == expected


def test_run_date_of_a_custom_run_id_is_an_error() -> None:
    from persona_airflow.runtime import run_date

    with pytest.raises(ValueError, match="my-run"):
        run_date({"run_id": "my-run"})


# -- dry-run sandbox ------------------------------------------------------------------------------------------


def test_sandbox_reads_history_and_cache_but_never_the_runs_own_published_partition(tmp_path: Path) -> None:
    from persona_airflow.dry_run import SandboxStore

    real = LocalObjectStore(tmp_path, "pp")
    sandbox = LocalObjectStore(tmp_path, "pp-dry-run")
    real.put_bytes("dt=2026-11-30/profiles.json", b"yesterday")
    real.put_bytes("dt=2026-12-01/index.html", b"published")
    real.put_bytes("cache/images/abc.png", b"\x89PNG cached", content_type="image/png")
    real.put_bytes("latest.json", b"{}")
    store = SandboxStore(sandbox, real, own_prefix="dt=2026-12-01")

    assert store.get_bytes("dt=2026-11-30/profiles.json") == b"yesterday"
    assert store.head("dt=2026-12-01/index.html") is None
    assert store.head("latest.json") is None
    assert store.list_keys("dt=") == ["dt=2026-11-30/profiles.json"]
    store.copy("cache/images/abc.png", "dt=2026-12-01/images/p/portrait-1.png")
    store.put_bytes("dt=2026-12-01/index.html", b"rehearsal")
    store.put_bytes("latest.json", b'{"dt": "2026-12-01"}')
    assert store.delete_prefix("dt=2026-11-30/") == 0  # deletes only ever touch the sandbox

    assert real.get_bytes("dt=2026-12-01/index.html") == b"published"
    assert real.get_bytes("latest.json") == b"{}"
    assert real.get_bytes("dt=2026-11-30/profiles.json") == b"yesterday"
    assert sandbox.get_bytes("dt=2026-12-01/images/p/portrait-1.png") == b"\x89PNG cached"
    assert sandbox.head("dt=2026-12-01/images/p/portrait-1.png").content_type == "image/png"  # type: ignore[union-attr]
    assert store.get_bytes("dt=2026-12-01/index.html") == b"rehearsal"
    assert store.uri_for("dt=2026-12-01/") == sandbox.uri_for("dt=2026-12-01/")


# -- failure summary ------------------------------------------------------------------------------------------


def test_failure_summary_reports_progress_from_the_stage_summaries(tmp_path: Path) -> None:
    from persona_airflow.alerts import FailureReport, read_progress

    store = LocalObjectStore(tmp_path, "pp")
    day = "dt=2026-12-01"
    write_json(store, f"{day}/extract.json", {"rows": 3000, "started_at": "2026-12-01T02:00:00"})
    write_json(
        store,
        f"{day}/validation.json",
        {"accounting": {"extracted": 3000, "valid": 2900, "quarantined": 40, "excluded": 60}},
    )
    write_json(store, f"{day}/segments.json", {"method": "rfm", "sizes": {"s1": 10, "s2": 20}})
    for persona in ("p1", "p2"):
        write_json(store, f"{day}/personas/{persona}.json", {})
    write_json(
        store,
        f"{day}/image_plan.json",
        {"jobs": [{"prompt": {"persona_id": p}} for p in ("p1", "p1", "p2", "p2")], "planned_calls": 3},
    )
    write_json(store, f"{day}/image_records/p1.json", [])
    # Summaries of stages at or after the failed one are an earlier attempt's: not counted.
    assert read_progress(store, date(2026, 12, 1), "validate") == {
        "extracted": 3000,
        "started_at": "2026-12-01T02:00:00",
    }
    progress = read_progress(store, date(2026, 12, 1), "generate_images")
    report = FailureReport(
        dag_id="persona_nightly",
        run_id="scheduled__2026-12-01T00:00:00+00:00",
        day=date(2026, 12, 1),
        failed_task="generate_images[1]",
        reason="task_failure",
        progress=progress,
        partition_uri="s3://bucket/pp/dt=2026-12-01/",
        runs_table="persona.persona_runs",
        recorded="status 'failed' recorded for 2026-12-01",
    )
    text = report.text()
    assert "\n" not in text  # one paragraph
    for phrase in (
        "FAILED",
        "generate_images[1]",
        "3,000 customers extracted (2,900 valid, 40 quarantined, 60 excluded)",
        "2 segment(s)",
        "2 persona(s)",
        "1/2 persona image task(s) done (4 image(s) planned, 3 to generate)",
        "s3://bucket/pp/dt=2026-12-01/",
        "persona.persona_runs",
        "--from-date 2026-12-01 --to-date 2026-12-01",
    ):
        assert phrase in text, phrase
    assert "no stage finished" in FailureReport("d", "r", None, None, None).text()


def _failure_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "dag": SimpleNamespace(dag_id="persona_nightly"),
        "run_id": "scheduled__2026-11-20T00:00:00+00:00",
        "reason": "task_failure",
        "params": {},
        "ti": SimpleNamespace(task_id="generate_images", map_index=3),
        "logical_date": datetime(2026, 11, 20, tzinfo=UTC),
    }
    context.update(overrides)
    return context


def test_failure_is_recorded_even_when_the_params_were_the_problem(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from persona_airflow.alerts import failure_report

    report = failure_report(_failure_context(params={"segmentation_method": "rules"}))
    assert report.failed_task == "generate_images[3]"
    assert report.recorded == "status 'failed' recorded for 2026-11-20"
    assert any("Params are not valid settings" in problem for problem in report.problems)
    with warehouse_engine(f"duckdb:///{tmp_path / 'configured.duckdb'}") as engine, engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT dt, status, run_id FROM persona.persona_runs")).all()
    assert [(str(r[0]), r[1], r[2]) for r in rows] == [("2026-11-20", "failed", "scheduled__2026-11-20T00:00:00+00:00")]


def test_failed_dry_runs_record_nothing_and_the_callback_never_raises(tmp_path: Path) -> None:
    from persona_airflow.alerts import failure_report, on_dag_failure

    report = failure_report(_failure_context(params={"dry_run": True}))
    assert report.dry_run and report.recorded == "none (dry run)"
    assert report.partition_uri is not None and "persona-pipeline-dry-run" in report.partition_uri
    assert not (tmp_path / "configured.duckdb").exists()
    on_dag_failure({})  # nothing to go on: logs what it can, raises nothing
    on_dag_failure({"run_id": "custom-id", "dag": None})
