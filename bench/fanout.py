"""Image fan-out against a local OpenAI-compatible server with latency and random 429s (task ``fanout``).

The real path is used end to end: :func:`~persona_pipeline.imaging.generate.plan_images` and
:func:`~persona_pipeline.imaging.generate.generate_images` with an
:class:`~persona_pipeline.imaging.openai_provider.OpenAIImageProvider` (the ``openai`` client and its own
retries, honouring ``Retry-After``) and a local object store. The first run's wall time is compared with the
ideal ``ceil(calls / concurrency) × latency``; then the same personas are planned and generated again, and
every request the server receives on that rerun is counted (the content-addressed cache must make it 0).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, rounded

_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_GENDERS = ("female", "male", "non_binary")
_INCOMES = ("<25k", "25-50k", "50-75k", "75-100k", "100-150k", "150k+")
_OCCUPATIONS = ("student", "creative", "tech professional", "manager", "teacher", "retired")
_INTERESTS = ("fashion", "electronics", "home", "beauty", "grocery", "wine", "sports", "books")
_SETTINGS = ("urban", "suburban", "rural", "home")


def synthetic_personas(count: int, prompts_per_persona: int = 1) -> list[Any]:
    """``count`` distinct personas with ``prompts_per_persona`` distinct portrait prompts each."""
    from persona_pipeline.contracts import DepictedTraits, ImagePrompt, Persona, stable_hash

    personas = []
    for index in range(count):
        pid = f"bench-{index:04d}"
        depicted = DepictedTraits(
            _AGE_BANDS[index % len(_AGE_BANDS)],
            _GENDERS[index % len(_GENDERS)],
            _INCOMES[index % len(_INCOMES)],
            _OCCUPATIONS[index % len(_OCCUPATIONS)],
            (_INTERESTS[index % len(_INTERESTS)], _INTERESTS[(index + 3) % len(_INTERESTS)]),
            "app",
            "mobile",
            _SETTINGS[index % len(_SETTINGS)],
            "portrait",
        )
        prompts = []
        for variant in range(prompts_per_persona):
            text = (
                f"A head-and-shoulders portrait photograph of a {depicted.age_band} {depicted.occupation} "
                f"who loves {' and '.join(depicted.interests)}, {depicted.setting} setting (persona {pid}, "
                f"variant {variant})."
            )
            prompts.append(
                ImagePrompt(pid, f"portrait-{variant}", "portrait", text, stable_hash({"p": text})[:16], depicted)
            )
        personas.append(
            Persona(
                persona_id=pid,
                segment_id=pid,
                method="bench",
                name=f"Bench persona {index}",
                tagline="",
                narrative="",
                goals=(),
                pain_points=(),
                channels=(),
                recommendations=(),
                key_numbers={},
                top_traits=(),
                size=10_000 - index,
                share=0.01,
                prompts=tuple(prompts),
            )
        )
    return personas


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Child task: first run against the server, then a rerun on the same store; timings and call counts."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from persona_pipeline.config import ImagingSettings
    from persona_pipeline.contracts import RunContext
    from persona_pipeline.imaging.generate import generate_images, plan_images
    from persona_pipeline.imaging.openai_provider import OpenAIImageProvider
    from persona_pipeline.storage import LocalObjectStore
    from tests.fake_openai import FakeOpenAIServer

    personas_n = int(params["personas"])
    per_persona = int(params.get("prompts_per_persona", 1))
    concurrency = int(params["concurrency"])
    latency = float(params["latency_s"])
    calls = personas_n * per_persona
    settings = ImagingSettings(
        provider="openai",
        concurrency=concurrency,
        max_images_per_run=calls,
        max_usd_per_run=1_000_000.0,
        timeout_s=max(30.0, latency * 10),
    )
    personas = synthetic_personas(personas_n, per_persona)
    with (
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp,
        FakeOpenAIServer(
            latency_s=latency,
            rate_limit_share=float(params["rate_429"]),
            rate_limit_retry_after_s=float(params["retry_after_s"]),
            seed=int(params.get("seed", 0)),
        ) as server,
    ):
        store = LocalObjectStore(Path(tmp))
        provider = OpenAIImageProvider(settings, api_key="sk-test-bench", base_url=server.base_url)

        started = time.perf_counter()
        plan = plan_images(personas, provider, store, settings)
        records = generate_images(
            plan.jobs, provider, store, RunContext(date(2026, 12, 1), "bench-1", "bench"), concurrency=concurrency
        )
        first_s = time.perf_counter() - started
        first_requests = server.calls("images")
        before_rerun = server.calls()

        rerun_started = time.perf_counter()
        replan = plan_images(personas, provider, store, settings)
        rerecords = generate_images(
            replan.jobs, provider, store, RunContext(date(2026, 12, 2), "bench-2", "bench"), concurrency=concurrency
        )
        rerun_s = time.perf_counter() - rerun_started
        rerun_requests = server.calls() - before_rerun  # every endpoint counts: a rerun must not call at all

    ideal = math.ceil(calls / concurrency) * latency
    return {
        "personas": personas_n,
        "images": len(records),
        "planned_calls": plan.planned_calls,
        "concurrency": concurrency,
        "latency_s": latency,
        "rate_429": float(params["rate_429"]),
        "retry_after_s": float(params["retry_after_s"]),
        "fanout_s": rounded(first_s),
        "fanout_ideal_s": rounded(ideal),
        "fanout_over_ideal": rounded(first_s / ideal if ideal else None),
        "requests": first_requests,
        "retried_requests": first_requests - plan.planned_calls,
        "cost_usd": rounded(sum(r.cost_usd for r in records), 4),
        "rerun_planned_calls": replan.planned_calls,
        "rerun_calls": rerun_requests,
        "rerun_s": rounded(rerun_s),
        "rerun_cached": sum(r.cached for r in rerecords),
    }
