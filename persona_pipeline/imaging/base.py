"""The image-provider interface and the content-addressed cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from persona_pipeline.contracts import ImagePrompt

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True)
class GeneratedImage:
    """Bytes of one image as the provider produced them, with what it cost."""

    data: bytes
    content_type: str
    width: int
    height: int
    model: str
    cost_usd: float
    flags: tuple[str, ...] = ()


@runtime_checkable
class ImageProvider(Protocol):
    """Something that turns an :class:`ImagePrompt` into image bytes."""

    name: str
    model: str

    def parameters(self) -> dict[str, Any]:
        """Every request parameter that changes the output (part of the cache key)."""
        ...

    def price_per_image(self) -> float:
        """USD one call costs (0.0 when free)."""
        ...

    def generate(self, prompt: ImagePrompt) -> GeneratedImage:
        """Produce the image; raise :class:`ImageGenerationError` on a permanent failure."""
        ...


def cache_key(provider: ImageProvider, prompt: ImagePrompt) -> str:
    """Content address of an image: SHA-256 of provider, model, parameters and prompt text.

    The prompt text already encodes every depicted trait, so two personas (or two runs) that would ask for the
    same picture share one cached image and one API call.
    """
    payload = {
        "provider": provider.name,
        "model": provider.model,
        "parameters": provider.parameters(),
        "prompt": prompt.prompt,
        "style": prompt.style,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG header, (0, 0) if the bytes are not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return (0, 0)
    return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
