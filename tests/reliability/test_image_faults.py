"""Image API faults, injected for real by the local OpenAI-compatible server: 429 storms, 5xx, timeouts,
moderation refusals, 401/403.

Every test starts from the same prepared partition (D-1 published, D planned up to ``build_personas``) and runs
what Airflow runs next: one image task per persona, then publish. A fault either is absorbed by the ``openai``
client's own retries (the run succeeds) or fails the image task with a clear error; a rerun then leaves exactly
one consistent partition, the ``latest_*`` views never show a partial run, and no image is paid for twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from persona_pipeline import stages
from persona_pipeline.config import Settings
from persona_pipeline.exceptions import ImageGenerationError
from persona_pipeline.storage import LocalObjectStore, read_json
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.reliability.checks import (
    API_KEY,
    D_PREV,
    D,
    assert_consistent_partition,
    assert_nothing_published,
    context,
    finish_run,
    latest_view_dates,
    make_settings,
)

PRICE = 0.042  # imaging.prices default for gpt-image-2, medium, 1024x1024
RATE_LIMITED: Behaviour = ("rate_limit", 0.02)
SERVER_ERROR: Behaviour = ("error", 500, "server_error", "The server had an error while processing your request.")
OVERLOADED: Behaviour = ("error", 503, "overloaded", "The engine is currently overloaded, please try again later.")
HANG: Behaviour = ("hang", 3.0)
FORBIDDEN: Behaviour = (
    "error",
    403,
    "permission_denied",
    "Your organization must be verified to use the model `gpt-image-2`.",
)
REFUSED: Behaviour = ("error", 400, "moderation_blocked", "Your request was rejected by the safety system.")


def image_settings(url: str, store: Path, server: FakeOpenAIServer, **imaging: Any) -> Settings:
    """The openai provider against ``server``, one image at a time (so scripted faults hit a known image)."""
    values = {"concurrency": 1, "timeout_s": 10.0, "max_retries": 2, **imaging}
    return make_settings(
        url,
        store,
        **{"imaging.provider": "openai", "imaging.base_url": server.base_url},
        **{f"imaging.{key}": value for key, value in values.items()},
    )


def prepare(ctx: stages.StageContext) -> None:
    """Every stage before the image tasks."""
    stages.extract(ctx)
    stages.validate(ctx)
    stages.segment(ctx)
    stages.profile(ctx)
    stages.build_personas(ctx)


@dataclass(frozen=True)
class Prepared:
    warehouse: Path
    store: Path
    images: int  # images planned for D


@pytest.fixture(scope="module")
def image_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(valid_api_keys={API_KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def prepared(
    sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory, image_server: FakeOpenAIServer
) -> Prepared:
    """D-1 published (low quality, so D's images are not cached), D planned up to its image tasks."""
    home = tmp_path_factory.mktemp("image-faults")
    warehouse = home / "warehouse.duckdb"
    shutil.copyfile(sample_warehouse, warehouse)
    url = f"duckdb:///{warehouse}"
    store = home / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", API_KEY)  # planning builds the provider too
        ctx = context(image_settings(url, store, image_server, quality="low", concurrency=4), D_PREV, "prev")
        prepare(ctx)
        finish_run(ctx, api_key=API_KEY)
        ctx = context(image_settings(url, store, image_server), D, "first")
        prepare(ctx)
    plan = read_json(ctx.store, f"dt={D.isoformat()}/image_plan.json")
    assert not any(job["cached"] for job in plan["jobs"])
    return Prepared(warehouse, store, len(plan["jobs"]))


@dataclass(frozen=True)
class Attempt:
    url: str
    root: Path
    store: LocalObjectStore
    server: FakeOpenAIServer
    images: int

    def context(self, run_id: str, **imaging: Any) -> stages.StageContext:
        return context(image_settings(self.url, self.root, self.server, **imaging), D, run_id)

    def cached_images(self) -> int:
        return len(self.store.list_keys("cache/images/")) - self.images  # minus D-1's images


@pytest.fixture
def attempt(prepared: Prepared, image_server: FakeOpenAIServer, tmp_path: Path) -> Attempt:
    """A private copy of the prepared warehouse and store, and a server with no requests recorded."""
    shutil.copyfile(prepared.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(prepared.store, tmp_path / "store")
    image_server.reset()
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    store = LocalObjectStore(tmp_path / "store", "persona-pipeline")
    assert latest_view_dates(url) == D_PREV
    return Attempt(url, tmp_path / "store", store, image_server, prepared.images)


TRANSIENT: dict[str, tuple[dict[str, Any], list[Behaviour]]] = {
    # the first 8 images are each rate limited three times (Retry-After 20 ms) before they are served
    "429-storm": ({"max_retries": 3}, [RATE_LIMITED, RATE_LIMITED, RATE_LIMITED, "ok"] * 8),
    "5xx": ({"max_retries": 2}, [SERVER_ERROR, OVERLOADED]),
    "timeout": ({"max_retries": 1, "timeout_s": 0.5}, [HANG]),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_image_faults_are_absorbed_by_the_clients_retries(fault: str, attempt: Attempt) -> None:
    imaging, script = TRANSIENT[fault]
    attempt.server.script(script)
    ctx = attempt.context(f"retried-{fault}", **imaging)

    finish_run(ctx, api_key=API_KEY)

    faults = sum(1 for behaviour in script if behaviour != "ok")
    requests = attempt.server.image_requests()
    assert len(requests) == attempt.images + faults
    assert attempt.server.pending() == 0
    run = assert_consistent_partition(attempt.url, attempt.store, D, run_id=f"retried-{fault}")
    assert run["images_generated"] == attempt.images and run["images_fallback"] == 0
    assert run["image_cost_usd"] == pytest.approx(PRICE * attempt.images)  # failed attempts are not billed
    assert latest_view_dates(attempt.url) == D
    if fault == "429-storm":
        # The SDK waited for Retry-After before each retry.
        gaps = [b.received_at - a.received_at for a, b in pairwise(requests)]
        retried = [gap for i, gap in enumerate(gaps[:32]) if i % 4 != 3]  # the gap after each 429
        assert min(retried) >= 0.018


PERSISTENT: dict[str, tuple[dict[str, Any], list[Behaviour], tuple[str, ...]]] = {
    "429-beyond-retries": (
        {"max_retries": 2},
        [RATE_LIMITED] * 3,
        ("still rate limited after 3 attempts", "HTTP 429", "imaging.concurrency"),
    ),
    "500-beyond-retries": (
        {"max_retries": 1},
        [SERVER_ERROR] * 2,
        ("failed with HTTP 500", "after 2 attempts", "retry the task later"),
    ),
    "timeouts-beyond-retries": (
        {"max_retries": 1, "timeout_s": 0.5},
        [HANG] * 2,
        ("timed out after 2 attempts", "imaging.timeout_s=0.5", "PERSONA_IMAGING__TIMEOUT_S"),
    ),
    "403-model-not-allowed": (
        {"max_retries": 2},
        [FORBIDDEN],
        ("HTTP 403", "verified organization", "openai_default"),
    ),
}


@pytest.mark.parametrize("fault", list(PERSISTENT))
def test_persistent_image_faults_fail_clearly_and_a_retry_pays_only_for_what_is_missing(
    fault: str, attempt: Attempt
) -> None:
    imaging, script, phrases = PERSISTENT[fault]
    attempt.server.script(script)
    ctx = attempt.context("failed", **imaging)

    with pytest.raises(ImageGenerationError) as failure:
        finish_run(ctx, api_key=API_KEY)

    message = str(failure.value)
    for phrase in phrases:
        assert phrase in message
    assert API_KEY not in message
    # The first persona's other image was served and cached; nothing was published for D.
    assert attempt.cached_images() == 1
    assert_nothing_published(attempt.url, attempt.store, D)
    assert latest_view_dates(attempt.url) == D_PREV

    # Airflow retries the image task (the API has recovered), then publish runs.
    attempt.server.reset()
    finish_run(attempt.context("retried"), api_key=API_KEY)

    assert attempt.server.calls("images") == attempt.images - 1  # the cached image is not paid for again
    run = assert_consistent_partition(attempt.url, attempt.store, D, run_id="retried")
    assert run["images_generated"] == attempt.images - 1 and run["images_cached"] == 1
    assert latest_view_dates(attempt.url) == D


def test_rejected_api_key_fails_fast_then_the_fixed_key_succeeds(attempt: Attempt) -> None:
    wrong_key = "sk-test-revoked-key-9999"
    ctx = attempt.context("bad-key", max_retries=4)

    with pytest.raises(ImageGenerationError) as failure:
        finish_run(ctx, api_key=wrong_key)

    message = str(failure.value)
    assert "API key rejected" in message and "HTTP 401" in message
    assert "openai_default" in message and "OPENAI_API_KEY" in message
    assert wrong_key not in message
    requests = attempt.server.image_requests()
    # No retries: one request per image of the first persona, then the task stops.
    assert 1 <= len(requests) <= 2
    assert all(r.headers.get("x-stainless-retry-count") == "0" for r in requests)
    assert attempt.cached_images() == 0
    assert_nothing_published(attempt.url, attempt.store, D)

    attempt.server.reset()
    finish_run(attempt.context("fixed-key"), api_key=API_KEY)

    assert attempt.server.calls("images") == attempt.images
    assert_consistent_partition(attempt.url, attempt.store, D, run_id="fixed-key")
    assert latest_view_dates(attempt.url) == D


def test_moderation_refusal_falls_back_then_a_rerun_asks_the_api_again(
    attempt: Attempt, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt.server.script([REFUSED, REFUSED])  # the first image: refused, and refused again with the safer prompt
    finish_run(attempt.context("refused"), api_key=API_KEY)

    run = assert_consistent_partition(attempt.url, attempt.store, D, run_id="refused")
    assert run["images_fallback"] == 1 and run["images_generated"] == attempt.images
    assert run["image_cost_usd"] == pytest.approx(PRICE * (attempt.images - 1))  # refusals are not billed
    assert attempt.server.calls("images") == attempt.images + 1

    # A full rerun of the date when the API no longer refuses: only the refused prompt is asked for again.
    attempt.server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    ctx = attempt.context("rerun")
    stages.run_all(ctx)

    assert attempt.server.calls("images") == 1
    run = assert_consistent_partition(attempt.url, attempt.store, D, run_id="rerun")
    assert run["images_fallback"] == 0 and run["images_generated"] == 1
    assert run["images_cached"] == attempt.images - 1
    assert latest_view_dates(attempt.url) == D
