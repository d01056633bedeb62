"""Load: 200 personas' images fan out through the real ``openai`` client without ever exceeding
``imaging.concurrency`` requests in flight at the image endpoint, 429s included."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from persona_pipeline.config import ImagingSettings
from persona_pipeline.contracts import DepictedTraits, ImagePrompt, RunContext
from persona_pipeline.imaging.base import cache_key
from persona_pipeline.imaging.generate import ImageJob, generate_images
from persona_pipeline.imaging.openai_provider import OpenAIImageProvider
from persona_pipeline.storage import LocalObjectStore
from tests.fake_openai import FakeOpenAIServer
from tests.reliability.checks import API_KEY, D

PERSONAS = 200
AGES = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
INTERESTS = ("books", "garden", "electronics", "fashion", "sports", "home", "beauty", "toys")


def synthetic_prompts(count: int) -> list[ImagePrompt]:
    """One portrait prompt for each of ``count`` distinct personas."""
    prompts = []
    for index in range(count):
        depicted = DepictedTraits(
            age_band=AGES[index % len(AGES)],
            gender=("female", "male", "non_binary")[index % 3],
            income_band="50-75k",
            occupation="teacher",
            interests=(INTERESTS[index % len(INTERESTS)], INTERESTS[(index // 8) % len(INTERESTS)]),
            channel="web",
            device="mobile",
            setting=("urban", "suburban", "rural", "home")[index % 4],
            style="portrait",
        )
        text = (
            f"A head-and-shoulders portrait of a {depicted.gender} adult aged {depicted.age_band} who loves "
            f"{' and '.join(depicted.interests)}, {depicted.setting} setting, segment variant {index}."
        )
        prompts.append(
            ImagePrompt(
                persona_id=f"p-load-{index:03d}",
                variant="portrait-1",
                style="portrait",
                prompt=text,
                prompt_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
                depicted=depicted,
            )
        )
    return prompts


@pytest.mark.parametrize("concurrency", [4, 8])
def test_200_personas_never_exceed_the_configured_concurrency(concurrency: int, tmp_path: Path) -> None:
    with FakeOpenAIServer(
        valid_api_keys={API_KEY}, latency_s=0.04, rate_limit_share=0.1, rate_limit_retry_after_s=0.01, seed=3
    ) as server:
        settings = ImagingSettings(
            provider="openai", concurrency=concurrency, max_retries=8, timeout_s=10.0, base_url=server.base_url
        )
        provider = OpenAIImageProvider(settings, api_key=API_KEY)
        price = provider.price_per_image()
        jobs = [
            ImageJob(prompt, cache_key(provider, prompt), cached=False, allowed=True, estimated_cost_usd=price)
            for prompt in synthetic_prompts(PERSONAS)
        ]
        store = LocalObjectStore(tmp_path / "store", "persona-pipeline")
        records = generate_images(jobs, provider, store, RunContext(D, "load", "0" * 16), concurrency=concurrency)
        requests = server.image_requests()
        in_flight = server.max_in_flight

    assert len(records) == PERSONAS and len({r.key for r in records}) == PERSONAS
    assert in_flight == concurrency  # the fan-out uses every slot it is allowed, and never more
    prompts = Counter(r.body["prompt"] for r in requests)
    assert len(prompts) == PERSONAS  # every persona asked for
    assert len(requests) > PERSONAS  # some were rate limited and retried (inside the same slot)
    assert sum(r.cost_usd for r in records) == pytest.approx(price * PERSONAS)  # each paid exactly once
    assert len(store.list_keys("cache/images/")) == PERSONAS
