"""Image generation for a run: cache first, then budget, then the provider — with bounded concurrency.

The budget is planned once per run, before any call, over every prompt in priority order (largest persona
first): each uncached prompt is either *allowed* to call the provider or marked for the offline renderer with a
``budget_fallback`` flag. Planning up front keeps the budget exact even when images are drawn by many mapped
Airflow tasks on different workers, with no shared counter to coordinate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from persona_pipeline.config import ImagingSettings
from persona_pipeline.contracts import ImagePrompt, ImageRecord, Persona, RunContext
from persona_pipeline.imaging.base import EXTENSIONS, GeneratedImage, ImageProvider, cache_key, png_size
from persona_pipeline.storage import ObjectStore

log = logging.getLogger(__name__)


class OfflineImageProvider:
    """Draws an illustrative avatar portrait from the depicted traits (free, deterministic, no network)."""

    name = "offline"

    def __init__(self, size: int = 512) -> None:
        from persona_pipeline.imaging.offline import RENDERER_MODEL

        self.size = size
        self.model = RENDERER_MODEL

    def parameters(self) -> dict[str, object]:
        return {"size": self.size}

    def price_per_image(self) -> float:
        return 0.0

    def generate(self, prompt: ImagePrompt) -> GeneratedImage:
        from persona_pipeline.imaging.offline import render_portrait

        data = render_portrait(prompt.depicted, seed=prompt.prompt_hash, size=self.size)
        return GeneratedImage(data, "image/png", self.size, self.size, self.model, 0.0, ("illustrative",))


def get_provider(
    settings: ImagingSettings, *, provider: str | None = None, api_key: str | None = None, base_url: str | None = None
) -> ImageProvider:
    """The provider named in settings (or ``provider``); OpenAI credentials come from the caller."""
    name = provider or settings.provider
    if name == "offline":
        return OfflineImageProvider(settings.offline_size)
    if name == "openai":
        from persona_pipeline.imaging.openai_provider import OpenAIImageProvider

        return OpenAIImageProvider(settings, api_key=api_key, base_url=base_url or settings.base_url)
    from persona_pipeline.exceptions import ConfigError

    raise ConfigError(f"imaging.provider {name!r} is unknown; use 'offline' or 'openai'")


@dataclass(frozen=True)
class ImageJob:
    """One prompt to turn into an image, with the budget decision made at planning time."""

    prompt: ImagePrompt
    cache_key: str
    cached: bool
    allowed: bool  # may call the provider (False: cached, or over budget → offline fallback)
    estimated_cost_usd: float


@dataclass(frozen=True)
class ImagePlan:
    jobs: tuple[ImageJob, ...]
    planned_calls: int
    planned_cost_usd: float
    over_budget: int  # prompts that will use the offline fallback because the budget is spent


def cache_object_key(key: str, content_type: str) -> str:
    return f"cache/images/{key}.{EXTENSIONS.get(content_type, 'bin')}"


def _expected_content_type(provider: ImageProvider) -> str:
    fmt = str(provider.parameters().get("output_format", "png"))
    return {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}.get(fmt, "image/png")


def plan_images(
    personas: Sequence[Persona], provider: ImageProvider, store: ObjectStore, settings: ImagingSettings
) -> ImagePlan:
    """Decide, before any call, which prompts hit the cache, which may call the provider and which fall back."""
    price = provider.price_per_image()
    content_type = _expected_content_type(provider)
    calls, spent, over = 0, 0.0, 0
    jobs = []
    for persona in sorted(personas, key=lambda p: (-p.size, p.persona_id)):
        for prompt in persona.prompts:
            key = cache_key(provider, prompt)
            cached = store.head(cache_object_key(key, content_type)) is not None
            allowed = False
            if not cached:
                if calls < settings.max_images_per_run and spent + price <= settings.max_usd_per_run + 1e-9:
                    allowed = True
                    calls += 1
                    spent += price
                else:
                    over += 1
            jobs.append(ImageJob(prompt, key, cached, allowed, price if allowed else 0.0))
    if over:
        log.warning(
            "image budget reached: %d prompt(s) will use the offline renderer (max_images_per_run=%d, "
            "max_usd_per_run=%.2f)",
            over,
            settings.max_images_per_run,
            settings.max_usd_per_run,
        )
    return ImagePlan(tuple(jobs), calls, round(spent, 6), over)


def _store_image(
    store: ObjectStore,
    run: RunContext,
    job: ImageJob,
    provider_name: str,
    image: GeneratedImage,
    *,
    cached: bool,
    cost: float,
    cache_key_used: str,
) -> ImageRecord:
    ext = EXTENSIONS.get(image.content_type, "bin")
    run_key = f"{run.partition}/images/{job.prompt.persona_id}/{job.prompt.variant}.{ext}"
    metadata = {
        "persona-id": job.prompt.persona_id,
        "variant": job.prompt.variant,
        "prompt-hash": job.prompt.prompt_hash,
        "provider": provider_name,
        "model": image.model,
        "run-id": run.run_id,
        "cache-key": cache_key_used,
        "cost-usd": f"{cost:.4f}",
        "flags": ",".join(image.flags),
    }
    cache_key_path = cache_object_key(cache_key_used, image.content_type)
    if not cached:
        store.put_bytes(cache_key_path, image.data, content_type=image.content_type, metadata=metadata)
    store.copy(cache_key_path, run_key, metadata=metadata)
    width, height = (image.width, image.height)
    return ImageRecord(
        persona_id=job.prompt.persona_id,
        variant=job.prompt.variant,
        style=job.prompt.style,
        provider=provider_name,
        model=image.model,
        prompt_hash=job.prompt.prompt_hash,
        cache_key=cache_key_used,
        key=run_key,
        url=store.url_for(run_key),
        content_type=image.content_type,
        size_bytes=len(image.data),
        width=width,
        height=height,
        cost_usd=round(cost, 6),
        cached=cached,
        flags=image.flags,
    )


def _from_cache(store: ObjectStore, key: str, content_type: str) -> GeneratedImage:
    path = cache_object_key(key, content_type)
    head = store.head(path)
    data = store.get_bytes(path)
    width, height = png_size(data)
    meta = head.metadata if head else {}
    flags = tuple(f for f in meta.get("flags", "").split(",") if f)
    return GeneratedImage(data, content_type, width, height, meta.get("model", "unknown"), 0.0, flags)


def generate_images(
    jobs: Sequence[ImageJob],
    provider: ImageProvider,
    store: ObjectStore,
    run: RunContext,
    *,
    concurrency: int = 4,
    fallback: ImageProvider | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ImageRecord]:
    """Produce every job's image: cached ones are copied, allowed ones call the provider (at most
    ``concurrency`` at once), over-budget ones are drawn offline and flagged ``budget_fallback``."""
    content_type = _expected_content_type(provider)
    offline = fallback or OfflineImageProvider()

    def run_job(job: ImageJob) -> ImageRecord:
        if job.cached:
            image = _from_cache(store, job.cache_key, content_type)
            return _store_image(
                store, run, job, provider.name, image, cached=True, cost=0.0, cache_key_used=job.cache_key
            )
        if job.allowed and store.head(cache_object_key(job.cache_key, content_type)) is not None:
            # Drawn since the plan was made (an earlier attempt of this task that failed later): never pay twice.
            image = _from_cache(store, job.cache_key, content_type)
            return _store_image(
                store, run, job, provider.name, image, cached=True, cost=0.0, cache_key_used=job.cache_key
            )
        if job.allowed:
            image = provider.generate(job.prompt)
            key = job.cache_key
            if image.flags and "moderation_fallback" in image.flags:
                # A refused prompt's fallback must not be served from the provider's cache slot later.
                key = cache_key(offline, job.prompt)
            return _store_image(
                store, run, job, provider.name, image, cached=False, cost=image.cost_usd, cache_key_used=key
            )
        fallback_key = cache_key(offline, job.prompt)
        if store.head(cache_object_key(fallback_key, "image/png")) is not None:
            image = _from_cache(store, fallback_key, "image/png")
            cached = True
        else:
            image = offline.generate(job.prompt)
            cached = False
        image = GeneratedImage(
            image.data,
            image.content_type,
            image.width,
            image.height,
            image.model,
            0.0,
            tuple(dict.fromkeys((*image.flags, "budget_fallback"))),
        )
        return _store_image(store, run, job, offline.name, image, cached=cached, cost=0.0, cache_key_used=fallback_key)

    records: list[ImageRecord] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="image") as pool:
        for done, record in enumerate(pool.map(run_job, jobs), start=1):
            records.append(record)
            if progress:
                progress(
                    f"image {done}/{len(jobs)}: {record.persona_id}/{record.variant} "
                    f"({'cached' if record.cached else record.provider}, ${record.cost_usd:.3f})"
                )
    return records
