"""Security guarantees, checked on real runs: no personal data and no secret in any artefact or log line, salted
membership keys that only the salt holder can join, private and encrypted S3 objects with short-lived links,
HTML that never carries data as markup, and SQL identifiers from config refused before any SQL runs.

Personal data is planted where it should never travel: recognisable names, emails and phones on customers, and
email- and phone-shaped values in free-text attributes and category names (the kind of thing typed into the wrong
field), plus markup in category and occupation values.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from persona_pipeline import stages
from persona_pipeline.config import load_settings
from persona_pipeline.exceptions import ConfigError
from persona_pipeline.privacy import drop_personal_values, hash_key, looks_personal
from persona_pipeline.publish import ensure_schema, read_partition
from persona_pipeline.storage import LocalObjectStore, S3ObjectStore
from persona_pipeline.warehouse.engine import warehouse_engine
from persona_pipeline.warehouse.mapping import example_mapping_path, load_mapping
from tests.fake_openai import FakeOpenAIServer
from tests.integration.test_pipeline_s3_openai import use_test_credentials
from tests.reliability.checks import (
    API_KEY,
    CLI,
    D,
    assert_consistent_partition,
    cli_env,
    context,
    find_needles,
    make_settings,
    store_texts,
    warehouse_texts,
    write_config,
)
from tests.services import PostgresServer, SeaweedS3Server

PREFIX = "persona-pipeline"
SALT = "an-obviously-fake-test-salt-0123456789"
CANARY_NAME = "Zebulon Qxcanary"
CANARY_EMAIL = "zebulon.qxcanary@example.com"
CANARY_PHONE = "+1 555 0199 4242"
#: Planted personal data, and the fragments of it that must not appear anywhere either.
PII_NEEDLES = (
    CANARY_NAME,
    CANARY_EMAIL,
    CANARY_PHONE,
    "qxcanary",
    "0199 4242",
    "7946 0958",
    "0100 7777",
)
XSS_CATEGORY = '<script>alert("xss-probe")</script>'
XSS_OCCUPATION = "<img src=x onerror=alert(1)>"
PLANT = (
    f"UPDATE customers SET full_name = '{CANARY_NAME}', email = '{CANARY_EMAIL}', phone = '{CANARY_PHONE}' "
    "WHERE customer_id % 7 = 0",
    "UPDATE customers SET occupation = 'jane.qxcanary@example.com' WHERE customer_id % 3 = 0",
    f"UPDATE customers SET occupation = '{XSS_OCCUPATION}' WHERE customer_id % 3 = 1",
    "UPDATE orders SET category = 'mary.qxcanary@example.org' WHERE order_id % 4 = 0",
    f"UPDATE orders SET category = '{XSS_CATEGORY}' WHERE order_id % 4 = 1",
    "UPDATE events SET category = '+44 20 7946 0958' WHERE event_id % 4 = 0",
    "UPDATE events SET device = 'call +1 555 0100 7777' WHERE event_id % 5 = 0",
)


def plant_personal_data(url: str) -> list[str]:
    """Plant the canaries; return the real PII of some untouched customers (it must not leak either)."""
    with warehouse_engine(url) as engine, engine.begin() as conn:
        for statement in PLANT:
            conn.execute(sa.text(statement))
        rows = conn.execute(
            sa.text(
                "SELECT full_name, email, phone FROM customers WHERE customer_id % 7 <> 0 ORDER BY customer_id LIMIT 60"
            )
        ).fetchall()
    return [value for row in rows for value in row]


def assert_no_markup_from_data(store: Any) -> None:
    pages = [key for key in store.list_keys("") if key.endswith(".html")]
    assert pages
    for key in pages:
        page = store.get_bytes(key).decode("utf-8")
        assert "<script>alert" not in page, key
        assert "<img src=x" not in page, key


@pytest.mark.parametrize(
    ("value", "personal"),
    [
        ("jane.doe@example.com", True),
        ("contact: j.doe+shop@mail.example.co.uk", True),
        ("+44 20 7946 0958", True),
        ("(555) 010-0199", True),
        ("https://example.com/u/123", True),
        ("www.example.org", True),
        ("nurse", False),
        ("100-150k", False),
        ("25-50k", False),
        ("home & garden", False),
        ("<script>alert(1)</script>", False),  # not personal: escaped where shown
    ],
)
def test_contact_shaped_values_are_recognised(value: str, personal: bool) -> None:
    assert looks_personal(value) is personal
    assert drop_personal_values(["books", value]) == (("books",) if personal else ("books", value))


# -- one run over planted personal data (DuckDB, local store, openai provider on the local server) --------------


@dataclass(frozen=True)
class CanaryRun:
    url: str
    store: LocalObjectStore
    real_pii: list[str]
    logs: str
    progress: str
    prompts: list[str]


@pytest.fixture(scope="module")
def canary_run(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> CanaryRun:
    home = tmp_path_factory.mktemp("canary")
    warehouse = home / "warehouse.duckdb"
    shutil.copyfile(sample_warehouse, warehouse)
    url = f"duckdb:///{warehouse}"
    real_pii = plant_personal_data(url)
    progress: list[str] = []
    handler = _ListHandler()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as mp, FakeOpenAIServer() as server:
        mp.setenv("OPENAI_API_KEY", API_KEY)
        mp.setenv("PERSONA_MEMBERSHIP_SALT", SALT)
        settings = make_settings(
            url,
            home / "store",
            **{
                "imaging.provider": "openai",
                "imaging.base_url": server.base_url,
                "privacy.membership_keys": "hashed",
            },
        )
        try:
            stages.run_all(context(settings, D, "canary", progress=progress.append))
        finally:
            root.removeHandler(handler)
            root.setLevel(previous_level)
        prompts = [json.dumps(r.body) for r in server.requests]
    store = LocalObjectStore(home / "store", PREFIX)
    assert_consistent_partition(url, store, D, run_id="canary")
    return CanaryRun(url, store, real_pii, "\n".join(handler.lines), "\n".join(progress), prompts)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_no_personal_data_in_prompts_objects_tables_or_logs(canary_run: CanaryRun) -> None:
    haystacks = [
        *store_texts(canary_run.store),
        *warehouse_texts(canary_run.url),
        ("log records", canary_run.logs),
        ("progress", canary_run.progress),
        *(("image request", prompt) for prompt in canary_run.prompts),
    ]
    assert len(canary_run.prompts) >= 10 and len(canary_run.logs) > 1_000
    assert find_needles(haystacks, PII_NEEDLES) == []
    assert find_needles(haystacks, canary_run.real_pii) == []


def test_markup_in_data_never_reaches_the_gallery_as_markup(canary_run: CanaryRun) -> None:
    assert_no_markup_from_data(canary_run.store)
    # The hostile category did reach the gallery: as escaped text.
    page = canary_run.store.get_bytes("dt=2026-12-01/index.html").decode("utf-8")
    assert "&lt;script&gt;alert(&#34;xss-probe&#34;)&lt;/script&gt;" in page


def test_hashed_membership_can_be_joined_by_whoever_holds_the_salt(canary_run: CanaryRun) -> None:
    with warehouse_engine(canary_run.url) as engine:
        membership = read_partition(engine, "persona", "segment_membership", D)
        with engine.connect() as conn:
            customer_ids = [str(row[0]) for row in conn.execute(sa.text("SELECT customer_id FROM customers"))]
    export = canary_run.store.get_bytes("tables/segment_membership/dt=2026-12-01/part-00000.parquet")
    exported = pq.read_table(io.BytesIO(export)).to_pandas()
    assert len(membership) > 1_000 and sorted(exported["customer_key"]) == sorted(membership["customer_key"])
    assert not set(membership["customer_key"]) & set(customer_ids)  # no plain key is published
    with_salt = {hash_key(key, SALT.encode()): key for key in customer_ids}
    assert set(exported["customer_key"]) <= set(with_salt)  # the salt holder resolves every row...
    resolved = exported["customer_key"].map(with_salt)
    assert resolved.is_unique  # ...to exactly one customer each
    wrong_salt = {hash_key(key, b"another-fake-salt-of-enough-length") for key in customer_ids}
    assert not set(exported["customer_key"]) & wrong_salt  # without it, nothing joins


# -- the CLI on PostgreSQL with a password and an API key: neither ever printed or stored ------------------------


@pytest.mark.integration
def test_cli_never_prints_or_stores_the_api_key_or_the_database_password(
    postgres_server: PostgresServer, pg_warehouse: str, tmp_path: Path
) -> None:
    api_key = "sk-test-canary-123"
    password = "pg-secret-canary-456"
    role = f"etl_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(pg_warehouse).database
    with psycopg.connect(postgres_server.dsn(database or "postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"ALTER DATABASE {database} OWNER TO {role}")
        conn.execute(f"GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    url = sa.make_url(pg_warehouse).set(username=role, password=password).render_as_string(hide_password=False)
    assert password in url
    real_pii = plant_personal_data(url)
    store_root = tmp_path / "store"
    with FakeOpenAIServer(valid_api_keys={api_key}) as server:
        config = write_config(
            tmp_path / "settings.yaml",
            url,
            store_root,
            **{"imaging.provider": "openai", "imaging.base_url": server.base_url, "personas.styles": ["portrait"]},
        )
        result = subprocess.run(
            [CLI, "-v", "run", "--date", D.isoformat(), "--config", str(config), "--run-id", "secrets"],
            capture_output=True,
            text=True,
            timeout=300,
            env=cli_env(OPENAI_API_KEY=api_key),
        )
        keys_seen = {r.api_key for r in server.requests}
    assert result.returncode == 0, result.stderr[-3000:]
    assert keys_seen == {api_key}  # the key was really used
    assert len(result.stderr) > 10_000  # debug logging of every library was on
    store = LocalObjectStore(store_root, PREFIX)
    assert_consistent_partition(pg_warehouse, store, D, run_id="secrets")
    haystacks = [
        ("stdout", result.stdout),
        ("stderr", result.stderr),
        *store_texts(store),
        *warehouse_texts(pg_warehouse),
    ]
    assert find_needles(haystacks, [api_key, password]) == []
    assert find_needles(haystacks, [*PII_NEEDLES, *real_pii]) == []


# -- S3: private, encrypted, short-lived links -------------------------------------------------------------------


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.integration
def test_s3_objects_are_private_encrypted_and_linked_by_short_lived_presigned_urls(
    s3_server: SeaweedS3Server,
    s3_bucket: tuple[Any, str],
    warehouse_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    client, bucket = s3_bucket
    use_test_credentials(monkeypatch, s3_server, tmp_path)
    settings = make_settings(
        f"duckdb:///{warehouse_copy}",
        **{
            "storage.kind": "s3",
            "storage.bucket": bucket,
            "storage.prefix": PREFIX,
            "storage.endpoint_url": s3_server.endpoint_url,
            "storage.presign_seconds": 60,
            "personas.styles": ["portrait"],
        },
    )
    ctx = context(settings, D, "s3-security")
    result = stages.run_all(ctx)
    assert isinstance(ctx.store, S3ObjectStore)
    with warehouse_engine(settings.warehouse.url) as engine:
        images = read_partition(engine, "persona", "persona_images", D)

    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]  # fmt: skip
    assert len(keys) > 30
    for key in keys:
        assert client.head_object(Bucket=bucket, Key=key).get("ServerSideEncryption") == "AES256", key
    samples = [k for k in keys if k.endswith((".png", ".html", ".parquet", ".json"))]
    for suffix in (".png", ".html", ".parquet", ".json"):
        key = next(k for k in samples if k.endswith(suffix))
        assert _status(f"{s3_server.endpoint_url}/{bucket}/{key}") == 403, key  # anonymous read refused

    for url in [*images["image_url"], result["gallery_url"]]:
        assert "X-Amz-Expires=60&" in url and "X-Amz-Signature=" in url
    link = str(images["image_url"].iloc[0])
    assert _status(link) == 200
    tampered = link.replace("X-Amz-Expires=60", "X-Amz-Expires=604800")
    assert _status(tampered) == 403  # the expiry is part of the signature

    brief = S3ObjectStore(bucket, PREFIX, client=s3_server.client(), presign_seconds=1)
    expiring = brief.url_for(str(images["object_key"].iloc[0]))
    assert _status(expiring) == 200
    time.sleep(2.5)
    assert _status(expiring) == 403  # SeaweedFS enforces X-Amz-Expires


# -- SQL identifiers from configuration ----------------------------------------------------------------------------

HOSTILE = ["persona; DROP TABLE customers; --", 'persona"; DROP TABLE customers; --', "persona.x", "1persona", ""]


@pytest.mark.parametrize("schema", HOSTILE)
def test_hostile_output_schema_is_refused_before_any_sql(schema: str, warehouse_copy: Path) -> None:
    with pytest.raises(ConfigError, match=r"warehouse\.output_schema"):
        load_settings(environ={}, overrides={"warehouse.output_schema": schema})
    with pytest.raises(ConfigError, match="PERSONA_WAREHOUSE__OUTPUT_SCHEMA"):
        load_settings(environ={"PERSONA_WAREHOUSE__OUTPUT_SCHEMA": json.dumps(schema)})
    with warehouse_engine(f"duckdb:///{warehouse_copy}") as engine:
        with pytest.raises(ConfigError, match=r"warehouse\.output_schema"):
            ensure_schema(engine, schema)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one() == 3_000
            assert not sa.inspect(conn).has_schema("persona")


@pytest.mark.parametrize("schema", HOSTILE[:4])
def test_hostile_source_schema_is_refused(schema: str) -> None:
    with pytest.raises(ConfigError, match=r"warehouse\.source_schema"):
        load_settings(environ={}, overrides={"warehouse.source_schema": schema})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("customers.table", "customers; DROP TABLE orders"),
        ("customers.columns.customer_id", "customer_id) OR (1=1"),
        ("orders.schema", 'public"."orders'),
    ],
)
def test_hostile_names_in_a_source_mapping_are_refused(key: str, value: str, tmp_path: Path) -> None:
    mapping = yaml.safe_load(example_mapping_path("normalised").read_text())
    node = mapping
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    with pytest.raises(ConfigError, match="not a plain SQL identifier"):
        load_mapping(path)
