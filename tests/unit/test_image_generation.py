"""Image stage: content-addressed cache (reruns make zero calls), per-run budget, object metadata."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from persona_pipeline.config import ImagingSettings
from persona_pipeline.contracts import DepictedTraits, ImagePrompt, Persona, RunContext
from persona_pipeline.imaging.base import GeneratedImage, png_size
from persona_pipeline.imaging.generate import OfflineImageProvider, generate_images, plan_images
from persona_pipeline.storage import LocalObjectStore

RUN = RunContext(date(2026, 12, 1), "run-1", "cfg")


class CountingProvider:
    """A paid provider stand-in that draws with the offline renderer and counts calls."""

    name = "paid"
    model = "paid-model-1"

    def __init__(self, price: float = 0.04) -> None:
        self.calls: list[str] = []
        self.price = price
        self._offline = OfflineImageProvider(64)

    def parameters(self) -> dict[str, Any]:
        return {"size": 64}

    def price_per_image(self) -> float:
        return self.price

    def generate(self, prompt: ImagePrompt) -> GeneratedImage:
        self.calls.append(prompt.prompt_hash)
        image = self._offline.generate(prompt)
        return GeneratedImage(image.data, "image/png", 64, 64, self.model, self.price)


def persona(pid: str, size: int, prompts: int = 2) -> Persona:
    depicted = DepictedTraits(
        "25-34", "female", "50-75k", "creative", ("fashion",), "app", "mobile", "urban", "portrait"
    )
    return Persona(
        persona_id=pid,
        segment_id=pid,
        method="t",
        name=pid,
        tagline="",
        narrative="",
        goals=(),
        pain_points=(),
        channels=(),
        recommendations=(),
        key_numbers={},
        top_traits=(),
        size=size,
        share=0.1,
        prompts=tuple(
            ImagePrompt(pid, f"portrait-{i}", "portrait", f"prompt {pid} {i}", f"{pid}{i:04d}".ljust(16, "0"), depicted)
            for i in range(prompts)
        ),
    )


def test_rerun_makes_zero_calls_and_costs_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    provider = CountingProvider()
    settings = ImagingSettings(max_images_per_run=100, max_usd_per_run=100)
    personas = [persona("a", 100), persona("b", 50)]
    first = generate_images(plan_images(personas, provider, store, settings).jobs, provider, store, RUN)
    assert len(provider.calls) == 4 and sum(r.cost_usd for r in first) == 0.16
    assert not any(r.cached for r in first)
    second_plan = plan_images(personas, provider, store, settings)
    assert second_plan.planned_calls == 0
    second = generate_images(second_plan.jobs, provider, store, RunContext(date(2026, 12, 2), "run-2", "cfg"))
    assert len(provider.calls) == 4  # no new calls
    assert all(r.cached for r in second) and sum(r.cost_usd for r in second) == 0.0
    assert [store.get_bytes(r.key) for r in first] == [store.get_bytes(r.key) for r in second]


def test_budget_stops_cleanly_with_offline_fallback(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    provider = CountingProvider(price=0.05)
    settings = ImagingSettings(max_images_per_run=10, max_usd_per_run=0.12)
    personas = [persona("small", 60), persona("big", 500)]
    plan = plan_images(personas, provider, store, settings)
    assert plan.planned_calls == 2 and plan.over_budget == 2 and plan.planned_cost_usd == 0.1
    # The biggest persona is served first.
    assert [j.prompt.persona_id for j in plan.jobs if j.allowed] == ["big", "big"]
    records = generate_images(plan.jobs, provider, store, RUN)
    assert len(provider.calls) == 2
    fallback = [r for r in records if "budget_fallback" in r.flags]
    assert [r.persona_id for r in fallback] == ["small", "small"]
    assert all(r.cost_usd == 0.0 and r.provider == "offline" for r in fallback)
    assert all(png_size(store.get_bytes(r.key)) != (0, 0) for r in records)


def test_max_images_budget(tmp_path: Path) -> None:
    plan = plan_images(
        [persona("a", 10, prompts=5)],
        CountingProvider(0.0),
        LocalObjectStore(tmp_path),
        ImagingSettings(max_images_per_run=3),
    )
    assert plan.planned_calls == 3 and plan.over_budget == 2


def test_images_carry_metadata(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    provider = CountingProvider()
    records = generate_images(
        plan_images([persona("a", 1)], provider, store, ImagingSettings()).jobs, provider, store, RUN
    )
    head = store.head(records[0].key)
    assert head is not None and head.content_type == "image/png"
    assert head.metadata["persona-id"] == "a" and head.metadata["run-id"] == "run-1"
    assert head.metadata["prompt-hash"] == records[0].prompt_hash and head.metadata["model"] == "paid-model-1"
    assert records[0].key == "dt=2026-12-01/images/a/portrait-0.png"
