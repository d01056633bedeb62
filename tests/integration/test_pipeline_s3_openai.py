"""The whole run on a real S3 server (SeaweedFS) with the openai image provider (real client, local server).

Credentials reach the pipeline the way they do in production: AWS keys through boto3's default chain
(environment variables here), the image API key through ``OPENAI_API_KEY``. Nothing is injected into the store
or the provider.
"""

from __future__ import annotations

import base64
import hashlib
import html
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from persona_pipeline import stages
from persona_pipeline.config import Settings, load_settings
from persona_pipeline.contracts import DepictedTraits
from persona_pipeline.imaging.openai_provider import safer_prompt
from persona_pipeline.publish import read_partition
from persona_pipeline.storage import S3ObjectStore, guess_content_type, read_json
from persona_pipeline.warehouse.engine import warehouse_engine
from tests.fake_openai import FakeOpenAIServer, RecordedRequest
from tests.services import SeaweedS3Server

pytestmark = pytest.mark.integration

D = date(2026, 12, 1)
PARTITION = "dt=2026-12-01"
PREFIX = "persona-pipeline"
API_KEY = "sk-test-persona-pipeline-0000"  # a fake key the local server accepts
PRICE = 0.042  # imaging.prices default for gpt-image-2, medium, 1024x1024
SAFETY = "Your request was rejected by the safety system."
CONTENT_TYPES = {
    ".png": "image/png",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".html": "text/html; charset=utf-8",
    ".tds": "application/xml; charset=utf-8",
    ".pbids": "application/json",
}
IMAGE_BODY_KEYS = {"model", "prompt", "n", "size", "quality", "output_format"}


def use_test_credentials(mp: pytest.MonkeyPatch, server: SeaweedS3Server, home: Path) -> None:
    """AWS and OpenAI credentials through the environment only, shielded from the machine's own config."""
    import boto3

    mp.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    mp.setenv("AWS_DEFAULT_REGION", server.region)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setattr(boto3, "DEFAULT_SESSION", None)  # no credentials cached by an earlier test
    mp.setenv("OPENAI_API_KEY", API_KEY)
    mp.delenv("OPENAI_BASE_URL", raising=False)


def make_settings(warehouse: Path, bucket: str, s3: SeaweedS3Server, fake: FakeOpenAIServer, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        "warehouse.url": f"duckdb:///{warehouse}",
        "storage.kind": "s3",
        "storage.bucket": bucket,
        "storage.prefix": PREFIX,
        "storage.endpoint_url": s3.endpoint_url,
        "segmentation.min_segment_size": 30,
        "imaging.provider": "openai",
        "imaging.base_url": fake.base_url,
        "imaging.timeout_s": 20.0,
        "imaging.max_retries": 1,
    }
    overrides.update(extra)
    return load_settings(environ={}, overrides=overrides)


def run(settings: Settings, run_id: str) -> tuple[stages.StageContext, dict[str, Any]]:
    ctx = stages.make_context(settings, D, run_id, progress=lambda _: None)
    return ctx, stages.run_all(ctx)


def read_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    with warehouse_engine(settings.warehouse.url) as engine:
        return {
            name: read_partition(engine, "persona", name, D) for name in ("persona_runs", "personas", "persona_images")
        }


def planned_prompts(store: Any) -> list[dict[str, Any]]:
    return [job["prompt"] for job in read_json(store, f"{PARTITION}/image_plan.json")["jobs"]]


def image_bodies(requests: list[RecordedRequest]) -> list[dict[str, Any]]:
    return [r.body for r in requests if r.endpoint == "images"]


def fetch(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers["Content-Type"]


# -- one warehouse, two runs of the same date --------------------------------------------------------------------


@dataclass(frozen=True)
class S3OpenAIRun:
    settings: Settings
    store: S3ObjectStore
    client: Any
    bucket: str
    prompts: list[dict[str, Any]]
    first_requests: list[RecordedRequest]
    first: dict[str, pd.DataFrame]
    second_requests: list[RecordedRequest]
    second: dict[str, pd.DataFrame]
    second_result: dict[str, Any]


@pytest.fixture(scope="module")
def s3_openai_run(
    s3_server: SeaweedS3Server, sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3OpenAIRun]:
    home = tmp_path_factory.mktemp("s3-openai")
    warehouse = home / "warehouse.duckdb"
    warehouse.write_bytes(sample_warehouse.read_bytes())
    bucket = f"run-{uuid.uuid4().hex[:16]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    with pytest.MonkeyPatch.context() as mp, FakeOpenAIServer(valid_api_keys={API_KEY}) as fake:
        use_test_credentials(mp, s3_server, home)
        settings = make_settings(warehouse, bucket, s3_server, fake)
        ctx, _ = run(settings, "run-1")
        assert isinstance(ctx.store, S3ObjectStore)
        first_requests = fake.requests
        first = read_tables(settings)
        _, second_result = run(settings, "run-2")
        yield S3OpenAIRun(
            settings=settings,
            store=ctx.store,
            client=client,
            bucket=bucket,
            prompts=planned_prompts(ctx.store),
            first_requests=first_requests,
            first=first,
            second_requests=fake.requests[len(first_requests) :],
            second=read_tables(settings),
            second_result=second_result,
        )


def test_every_object_has_content_type_encryption_and_a_verified_checksum(s3_openai_run: S3OpenAIRun) -> None:
    client, bucket = s3_openai_run.client, s3_openai_run.bucket
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert len(keys) > 50
    assert all(key.startswith(f"{PREFIX}/") for key in keys)
    for prefix in ("bi/tableau/personas.tds", f"{PARTITION}/bi/tableau/", "tables/personas/", "cache/images/"):
        assert any(key.startswith(f"{PREFIX}/{prefix}") for key in keys), prefix
    # A DuckDB warehouse with an S3 store gets no .pbids: Power BI cannot open Parquet on S3 (docs/bi.md).
    assert not any(key.endswith(".pbids") for key in keys)
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        suffix = Path(key).suffix
        if "/validation/data_docs/" in key and suffix != ".html":
            # GX Data Docs assets (CSS, fonts, images): typed from their extension.
            assert head["ContentType"] == guess_content_type(key) != "application/octet-stream", key
        else:
            assert head["ContentType"] == CONTENT_TYPES[suffix], key
        # SeaweedFS records the requested SSE-S3 (and encrypts at rest: see test_storage_s3.py).
        assert head.get("ServerSideEncryption") == "AES256", key
        # The SHA-256 sent with each upload is kept (copies included) and matches the stored bytes.
        assert head.get("ChecksumSHA256") == base64.b64encode(hashlib.sha256(body).digest()).decode(), key
        assert head["ContentLength"] == len(body), key


def test_image_objects_carry_persona_prompt_model_and_run(s3_openai_run: S3OpenAIRun) -> None:
    client, bucket = s3_openai_run.client, s3_openai_run.bucket
    images = s3_openai_run.second["persona_images"]
    for row in images.itertuples():
        published = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{row.object_key}")["Metadata"]
        assert published["persona-id"] == row.persona_id
        assert published["prompt-hash"] == row.prompt_hash
        assert published["model"] == row.model == "gpt-image-2"
        assert published["provider"] == "openai"
        assert published["cache-key"] == row.cache_key
        assert published["run-id"] == "run-2"  # the run that published this copy
        cached = client.head_object(Bucket=bucket, Key=f"{PREFIX}/cache/images/{row.cache_key}.png")["Metadata"]
        assert cached["run-id"] == "run-1"  # the run that paid for it
        assert cached["prompt-hash"] == row.prompt_hash and cached["model"] == "gpt-image-2"
        assert cached["cost-usd"] == f"{PRICE:.4f}"


def test_each_persona_gets_one_api_image_per_prompt(s3_openai_run: S3OpenAIRun) -> None:
    personas, images = s3_openai_run.first["personas"], s3_openai_run.first["persona_images"]
    assert len(personas) >= 5
    expected = {(p["persona_id"], p["variant"]) for p in s3_openai_run.prompts}
    assert set(zip(images["persona_id"], images["variant"], strict=True)) == expected
    assert len(images) == len(expected) == 2 * len(personas)
    assert set(images["persona_id"]) == set(personas["persona_id"])
    assert (images["provider"] == "openai").all() and (images["model"] == "gpt-image-2").all()
    assert (images["content_type"] == "image/png").all()
    assert (images["width"] == 64).all() and (images["height"] == 64).all()  # the local server's scaled size
    assert (images["flags"].fillna("") == "").all()
    assert personas["image_url"].notna().all()


def test_image_requests_follow_the_images_api(s3_openai_run: S3OpenAIRun) -> None:
    requests = [r for r in s3_openai_run.first_requests if r.endpoint == "images"]
    assert len(requests) == len(s3_openai_run.prompts)
    for request in requests:
        assert request.path == "/v1/images/generations"
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        body = request.body
        assert set(body) == IMAGE_BODY_KEYS  # no response_format: GPT image models reject it
        assert body["model"] == "gpt-image-2"
        assert body["n"] == 1
        assert body["size"] == "1024x1024"
        assert body["quality"] == "medium"
        assert body["output_format"] == "png"
    assert sorted(b["prompt"] for b in image_bodies(requests)) == sorted(p["prompt"] for p in s3_openai_run.prompts)


def test_cost_is_recorded_per_image_and_per_run(s3_openai_run: S3OpenAIRun) -> None:
    runs, images = s3_openai_run.first["persona_runs"], s3_openai_run.first["persona_images"]
    record = runs.iloc[0]
    assert record["run_id"] == "run-1" and record["status"] == "success"
    assert record["image_provider"] == "openai"
    assert record["image_cost_usd"] > 0
    assert record["image_cost_usd"] == pytest.approx(PRICE * len(images))
    assert record["images_generated"] == len(images) and record["images_cached"] == 0
    assert images["cost_usd"].tolist() == pytest.approx([PRICE] * len(images))
    assert not images["cached"].any()


def test_second_run_of_the_same_date_makes_no_image_calls(s3_openai_run: S3OpenAIRun) -> None:
    assert [r for r in s3_openai_run.second_requests if r.endpoint == "images"] == []
    record = s3_openai_run.second["persona_runs"].iloc[0]
    first_images = s3_openai_run.first["persona_images"].sort_values(["persona_id", "variant"], ignore_index=True)
    images = s3_openai_run.second["persona_images"].sort_values(["persona_id", "variant"], ignore_index=True)
    assert record["run_id"] == "run-2"
    assert record["image_cost_usd"] == 0
    assert record["images_generated"] == 0 and record["images_cached"] == len(images)
    assert images["cached"].all() and (images["cost_usd"] == 0).all()
    assert images[["persona_id", "variant", "cache_key", "size_bytes"]].equals(
        first_images[["persona_id", "variant", "cache_key", "size_bytes"]]
    )


def test_image_url_opens_the_image(s3_openai_run: S3OpenAIRun) -> None:
    client, bucket = s3_openai_run.client, s3_openai_run.bucket
    tables = s3_openai_run.second
    for row in tables["persona_images"].itertuples():
        url = str(row.image_url)
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Signature=" in url
        data, content_type = fetch(url)
        assert content_type == "image/png"
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data == client.get_object(Bucket=bucket, Key=f"{PREFIX}/{row.object_key}")["Body"].read()
    by_persona = tables["persona_images"].set_index(["persona_id", "variant"])["object_key"]
    for row in tables["personas"].itertuples():
        data, _ = fetch(str(row.image_url))
        first_key = by_persona[(row.persona_id, "portrait-1")]
        assert data == client.get_object(Bucket=bucket, Key=f"{PREFIX}/{first_key}")["Body"].read()


def test_gallery_on_s3_links_the_same_working_urls(s3_openai_run: S3OpenAIRun) -> None:
    page, content_type = fetch(s3_openai_run.second_result["gallery_url"])
    text = page.decode("utf-8")
    assert content_type.startswith("text/html")
    for row in s3_openai_run.second["personas"].itertuples():
        assert html.escape(str(row.name)) in text
    assert text.count("X-Amz-Signature=") >= len(s3_openai_run.second["persona_images"])


# -- budget and moderation through the pipeline ------------------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as fake:
        yield fake


@pytest.mark.parametrize(
    ("limit", "allowed"),
    [({"imaging.max_images_per_run": 5}, 5), ({"imaging.max_usd_per_run": 0.2}, 4)],
    ids=["max_images_per_run", "max_usd_per_run"],
)
def test_budget_stops_api_calls_and_flags_the_rest(
    limit: dict[str, Any],
    allowed: int,
    s3_server: SeaweedS3Server,
    s3_bucket: tuple[Any, str],
    warehouse_copy: Path,
    fake_openai: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, bucket = s3_bucket
    use_test_credentials(monkeypatch, s3_server, tmp_path)
    settings = make_settings(warehouse_copy, bucket, s3_server, fake_openai, **limit)
    ctx, _ = run(settings, "budget-run")
    tables = read_tables(settings)
    images, personas, record = tables["persona_images"], tables["personas"], tables["persona_runs"].iloc[0]

    assert fake_openai.calls("images") == allowed
    assert record["status"] == "success"
    assert len(images) == 2 * len(personas) and images["image_url"].notna().all()
    fallback = images[images["flags"].str.contains("budget_fallback")]
    drawn = images[~images["flags"].str.contains("budget_fallback")]
    assert len(drawn) == allowed and len(fallback) == len(images) - allowed
    assert (drawn["provider"] == "openai").all()
    assert (fallback["provider"] == "offline").all() and (fallback["model"] == "avatar-v1").all()
    assert (fallback["cost_usd"] == 0).all()
    assert record["images_fallback"] == len(fallback)
    assert record["image_cost_usd"] == pytest.approx(PRICE * allowed)
    # The budget goes to the largest personas first.
    order = personas.sort_values(["size", "persona_id"], ascending=[False, True])["persona_id"].tolist()
    prompts = sorted(planned_prompts(ctx.store), key=lambda p: order.index(p["persona_id"]))
    first = {(p["persona_id"], p["variant"]) for p in prompts[:allowed]}
    assert set(zip(drawn["persona_id"], drawn["variant"], strict=True)) == first
    data, content_type = fetch(str(fallback.iloc[0]["image_url"]))
    assert content_type == "image/png" and data.startswith(b"\x89PNG")


def test_moderation_refusals_are_retried_then_replaced_and_flagged(
    s3_server: SeaweedS3Server,
    s3_bucket: tuple[Any, str],
    warehouse_copy: Path,
    fake_openai: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, bucket = s3_bucket
    use_test_credentials(monkeypatch, s3_server, tmp_path)
    blocked = ("error", 400, "moderation_blocked", SAFETY)
    # One image at a time, so the first prompt is refused twice and the second one once.
    fake_openai.script([blocked, blocked, blocked, "ok"])
    settings = make_settings(warehouse_copy, bucket, s3_server, fake_openai, **{"imaging.concurrency": 1})
    ctx, result = run(settings, "moderation-run")
    tables = read_tables(settings)
    images, record = tables["persona_images"], tables["persona_runs"].iloc[0]
    prompts = {(p["persona_id"], p["variant"]): p for p in planned_prompts(ctx.store)}

    assert fake_openai.calls("images") == len(prompts) + 2
    assert record["status"] == "success"
    flags = images.set_index(["persona_id", "variant"])["flags"].fillna("")
    refused = flags[flags.str.contains("moderation_fallback")]
    retried = flags[flags.str.contains("moderation_retry")]
    assert len(refused) == 1 and len(retried) == 1
    assert (flags[~flags.str.contains("moderation")] == "").all()

    refused_row = images.set_index(["persona_id", "variant"]).loc[refused.index[0]]
    assert refused_row["model"] == "avatar-v1" and refused_row["cost_usd"] == 0
    retried_row = images.set_index(["persona_id", "variant"]).loc[retried.index[0]]
    assert retried_row["model"] == "gpt-image-2" and retried_row["cost_usd"] == pytest.approx(PRICE)
    assert record["images_fallback"] == 1
    assert record["image_cost_usd"] == pytest.approx(PRICE * (len(prompts) - 1))

    # The retry sends the neutral prompt built from the depicted traits, never the refused text again.
    bodies = image_bodies(fake_openai.requests)
    refused_prompt, retried_prompt = prompts[refused.index[0]], prompts[retried.index[0]]
    assert [b["prompt"] for b in bodies[:4]] == [
        refused_prompt["prompt"],
        safer_prompt(DepictedTraits.from_dict(refused_prompt["depicted"])),
        retried_prompt["prompt"],
        safer_prompt(DepictedTraits.from_dict(retried_prompt["depicted"])),
    ]
    page, _ = fetch(result["gallery_url"])
    assert "moderation rejected the prompt" in page.decode("utf-8")
