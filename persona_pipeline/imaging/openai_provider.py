"""Image provider backed by the OpenAI Images API, or any endpoint that speaks the same JSON (incl. Azure OpenAI).

Transient failures (429, 408/409, 5xx, timeouts, dropped connections) are retried by the ``openai`` client itself,
``imaging.max_retries`` times with exponential backoff that honours ``Retry-After``/``retry-after-ms``; this module
adds no retry loop of its own for them. What it does add:

* credentials come from the caller (the Airflow connection ``openai_default``) or ``OPENAI_API_KEY``, and are
  never logged;
* GPT image models always answer with ``b64_json`` (``response_format`` is never sent); the bytes are decoded at
  once. An answer that carries only a URL is rejected, because such URLs expire and are never stored;
* a moderation refusal is retried once with a neutral prompt built from the depicted traits; a second refusal
  falls back to the offline avatar renderer, so a persona never ends up without a picture;
* every permanent failure becomes an :class:`ImageGenerationError` whose message says what to fix.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from typing import Any

import openai
from openai.types.images_response import ImagesResponse

from persona_pipeline.config import ImagingSettings
from persona_pipeline.contracts import DepictedTraits, ImagePrompt
from persona_pipeline.exceptions import ImageGenerationError
from persona_pipeline.imaging.base import GeneratedImage, png_size

log = logging.getLogger(__name__)

CONNECTION_ID = "openai_default"
API_KEY_ENV = "OPENAI_API_KEY"
AZURE_API_KEY_ENV = "AZURE_OPENAI_API_KEY"
AZURE_API_VERSION_ENV = "OPENAI_API_VERSION"
FALLBACK_MODEL = "avatar-v1"
FLAG_MODERATION_RETRY = "moderation_retry"
FLAG_MODERATION_FALLBACK = "moderation_fallback"

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

#: Error codes that mean "the safety system refused this prompt" (OpenAI, legacy DALL-E, Azure content filter).
_REFUSAL_CODES = frozenset(
    {"moderation_blocked", "content_policy_violation", "content_filter", "responsibleaipolicyviolation"}
)
_REFUSAL_PHRASES = ("safety system", "content policy", "content_policy", "content management policy")

_STYLE_PHRASES = {
    "portrait": "A head-and-shoulders portrait photograph",
    "illustration": "A simple flat vector illustration",
    "lifestyle": "A candid lifestyle photograph",
}
_SETTING_PHRASES = {
    "urban": "in a calm urban setting",
    "suburban": "in a calm suburban setting",
    "rural": "in a calm rural setting",
    "home": "at home",
}
_AGE_BAND = re.compile(r"^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})|\+)\s*$")
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")


class _Refused(Exception):
    """Internal signal: the endpoint refused the prompt on content grounds."""


def safer_prompt(depicted: DepictedTraits) -> str:
    """A neutral prompt for a refused image: style, age band, "person" and setting only.

    Occupation, interests, income, channel, device and gender are dropped on purpose: they are what most often
    carries brand names or words a safety system reacts to. Age bands that start below 18 are described as
    "young adult" so the picture can never be read as showing a minor.
    """
    style = _STYLE_PHRASES.get(depicted.style, _STYLE_PHRASES["portrait"])
    setting = _SETTING_PHRASES.get(depicted.setting, "")
    subject = "an adult person"
    match = _AGE_BAND.match(depicted.age_band or "")
    if match:
        low = int(match.group(1))
        high = match.group(2)
        if low < 18:
            subject = "a young adult person"
        elif high is None:
            subject = f"an adult person aged {low} or older"
        else:
            subject = f"an adult person aged {low} to {int(high)}"
    parts = [f"{style} of {subject}"]
    if setting:
        parts.append(setting)
    return ", ".join(parts) + ". Friendly, fully clothed, neutral background, soft natural light, no text, no logos."


class OpenAIImageProvider:
    """:class:`~persona_pipeline.imaging.base.ImageProvider` that calls ``POST /images/generations``.

    ``api_key`` wins over ``OPENAI_API_KEY``; ``base_url`` wins over ``imaging.base_url`` (unset: the SDK default,
    which honours ``OPENAI_BASE_URL``). With ``imaging.azure_endpoint`` set an :class:`openai.AzureOpenAI` client is
    built and ``imaging.model`` is the Azure *deployment* name. An injected ``client`` is used as given except that
    ``imaging.max_retries`` and ``imaging.timeout_s`` are applied to it.
    """

    name = "openai"

    def __init__(
        self,
        settings: ImagingSettings,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
    ) -> None:
        self.settings = settings
        self.model: str = settings.model
        self._azure = bool(settings.azure_endpoint)
        # Resolved now so a missing price stops the run before anything is spent.
        self._price = float(settings.price_per_image(self.model))
        if client is None:
            client = self._build_client(api_key, base_url or settings.base_url)
        else:
            client = client.with_options(max_retries=settings.max_retries, timeout=settings.timeout_s)
        self._client: openai.OpenAI = client

    # -- ImageProvider -------------------------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """Request parameters that change the picture (part of the cache key)."""
        return {
            "size": self.settings.size,
            "quality": self.settings.quality,
            "output_format": self.settings.output_format,
        }

    def price_per_image(self) -> float:
        """Configured USD price of one successful call (``imaging.prices``)."""
        return self._price

    def generate(self, prompt: ImagePrompt) -> GeneratedImage:
        """Generate one image for ``prompt``.

        Cost accounting: a refused call is not billed, so it counts 0.0. A successful retry with the neutral prompt
        costs one image (flag ``moderation_retry``); the offline fallback after two refusals costs 0.0 (flag
        ``moderation_fallback``, model ``avatar-v1``).
        """
        label = f"{prompt.persona_id}/{prompt.variant}"
        try:
            response = self._call(prompt.prompt)
            flags: tuple[str, ...] = ()
        except _Refused as first:
            log.warning("image %s refused by the safety system (%s); retrying once with a neutral prompt", label, first)
            try:
                response = self._call(safer_prompt(prompt.depicted))
                flags = (FLAG_MODERATION_RETRY,)
            except _Refused as second:
                log.warning("image %s refused again (%s); using the offline avatar instead", label, second)
                return self._fallback(prompt)
        image = self._decode(response, flags)
        log.info(
            "generated image %s with %s: %s %dx%d, %d bytes%s",
            label,
            image.model,
            image.content_type,
            image.width,
            image.height,
            len(image.data),
            f", flags={','.join(flags)}" if flags else "",
        )
        return image

    # -- preflight -----------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Fail fast before a run spends anything: key valid (401), allowed (403) and model present (404).

        On OpenAI this is ``GET /models/{model}``. Azure lists base models there rather than deployments, so on
        Azure only the credentials and endpoint are checked (``GET /openai/models``).
        """
        try:
            if self._azure:
                self._client.models.list()
            else:
                self._client.models.retrieve(self.model)
        except openai.OpenAIError as exc:
            raise self._translate(exc, action="preflight check") from exc
        log.info("image endpoint %s reachable; model %s available", self._endpoint(), self.model)

    # -- internals -----------------------------------------------------------------------------------------------

    def _build_client(self, api_key: str | None, base_url: str | None) -> openai.OpenAI:
        settings = self.settings
        if self._azure:
            key = api_key or os.environ.get(API_KEY_ENV) or os.environ.get(AZURE_API_KEY_ENV)
        else:
            key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ImageGenerationError(
                f"no API key for the image provider: set the password (API key) of Airflow connection "
                f"{CONNECTION_ID!r} or the environment variable {API_KEY_ENV}"
                + (f" (or {AZURE_API_KEY_ENV})" if self._azure else "")
                + ", or set imaging.provider to 'offline'"
            )
        if not self._azure:
            return openai.OpenAI(
                api_key=key, base_url=base_url, max_retries=settings.max_retries, timeout=settings.timeout_s
            )
        if base_url:
            raise ImageGenerationError(
                "imaging.base_url and imaging.azure_endpoint are mutually exclusive: unset one of them "
                "(PERSONA_IMAGING__BASE_URL / PERSONA_IMAGING__AZURE_ENDPOINT)"
            )
        api_version = settings.azure_api_version or os.environ.get(AZURE_API_VERSION_ENV)
        if not api_version:
            raise ImageGenerationError(
                "imaging.azure_endpoint is set but no API version is: set imaging.azure_api_version "
                f"(env PERSONA_IMAGING__AZURE_API_VERSION) or {AZURE_API_VERSION_ENV}"
            )
        return openai.AzureOpenAI(
            azure_endpoint=str(settings.azure_endpoint),
            api_version=api_version,
            api_key=key,
            max_retries=settings.max_retries,
            timeout=settings.timeout_s,
        )

    def _call(self, text: str) -> ImagesResponse:
        """One logical request (the SDK may send it several times); refusals raise :class:`_Refused`."""
        try:
            return self._client.images.generate(
                model=self.model,
                prompt=text,
                n=1,
                size=self.settings.size,
                quality=self.settings.quality,
                output_format=self.settings.output_format,
            )
        except openai.BadRequestError as exc:
            if _is_refusal(exc):
                raise _Refused(_describe(exc)) from exc
            raise self._translate(exc, action="image request") from exc
        except openai.OpenAIError as exc:
            raise self._translate(exc, action="image request") from exc

    def _decode(self, response: ImagesResponse, flags: tuple[str, ...]) -> GeneratedImage:
        items = response.data or []
        if not items:
            raise ImageGenerationError(f"{self._endpoint()} answered the image request without any image")
        item = items[0]
        if not item.b64_json:
            if item.url:
                raise ImageGenerationError(
                    f"{self._endpoint()} returned only an image URL for model {self.model!r}; URLs expire and are "
                    "never stored. Use a GPT image model (they always return b64_json) or an endpoint that returns "
                    "b64_json (imaging.model / imaging.base_url)"
                )
            raise ImageGenerationError(f"{self._endpoint()} returned an image entry without data")
        try:
            data = base64.b64decode(item.b64_json, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageGenerationError(f"{self._endpoint()} returned b64_json that is not valid base64") from exc
        if response.usage is not None:
            usage = response.usage
            log.debug(
                "image usage: input_tokens=%d output_tokens=%d total_tokens=%d",
                usage.input_tokens,
                usage.output_tokens,
                usage.total_tokens,
            )
        image_format = _sniff_format(data) or response.output_format or self.settings.output_format
        content_type = CONTENT_TYPES.get(image_format, f"image/{image_format}")
        if image_format == "png":
            width, height = png_size(data)
        else:
            width, height = _parse_size(response.size) or _parse_size(self.settings.size) or (0, 0)
        return GeneratedImage(
            data=data,
            content_type=content_type,
            width=width,
            height=height,
            model=self.model,
            cost_usd=self._price,
            flags=flags,
        )

    def _fallback(self, prompt: ImagePrompt) -> GeneratedImage:
        from persona_pipeline.imaging.offline import render_portrait

        data = render_portrait(prompt.depicted, seed=prompt.prompt_hash, size=self.settings.offline_size)
        width, height = png_size(data)
        return GeneratedImage(
            data=data,
            content_type="image/png",
            width=width,
            height=height,
            model=FALLBACK_MODEL,
            cost_usd=0.0,  # both refused calls are not billed
            flags=(FLAG_MODERATION_FALLBACK,),
        )

    def _endpoint(self) -> str:
        return str(self._client.base_url).rstrip("/")

    def _attempts(self, exc: openai.APIError) -> int:
        """How many times the SDK sent the request that finally failed."""
        raw = exc.request.headers.get("x-stainless-retry-count") if exc.request is not None else None
        try:
            return int(raw) + 1 if raw is not None else self._client.max_retries + 1
        except ValueError:
            return self._client.max_retries + 1

    def _translate(self, exc: openai.OpenAIError, *, action: str) -> ImageGenerationError:
        """Turn an SDK error into a message that names the setting, connection or variable to fix."""
        endpoint = self._endpoint()
        model_key = "imaging.model (env PERSONA_IMAGING__MODEL)"
        if isinstance(exc, openai.AuthenticationError):
            return ImageGenerationError(
                f"{action} failed: API key rejected by {endpoint} (HTTP 401): set the password/API key of Airflow "
                f"connection {CONNECTION_ID!r} or {API_KEY_ENV} to a valid key"
                + (" of the Azure OpenAI resource" if self._azure else "")
            )
        if isinstance(exc, openai.PermissionDeniedError):
            return ImageGenerationError(
                f"{action} failed: access to model {self.model!r} denied by {endpoint} (HTTP 403: {_describe(exc)}). "
                "GPT image models need a verified organization (platform.openai.com > Settings > Organization > "
                "General > Verify organization) and a project that allows the model; or pick another "
                f"{model_key}, or a key from connection {CONNECTION_ID!r} of a project that has access"
            )
        if isinstance(exc, openai.NotFoundError):
            if self._azure:
                return ImageGenerationError(
                    f"{action} failed: deployment {self.model!r} not found at {endpoint} (HTTP 404): set "
                    f"{model_key} to the name of an image-model deployment of that Azure resource, and check "
                    "imaging.azure_endpoint"
                )
            known = self._available_models()
            hint = f"; models available to this key include: {', '.join(known)}" if known else ""
            return ImageGenerationError(
                f"{action} failed: model {self.model!r} not found at {endpoint} (HTTP 404: {_describe(exc)}): set "
                f"{model_key} to an image model this key can use{hint}. If the model name is right, check "
                "imaging.base_url (an OpenAI-compatible base URL ends in /v1)"
            )
        if isinstance(exc, openai.BadRequestError):
            return ImageGenerationError(
                f"{action} rejected by {endpoint} (HTTP 400: {_describe(exc)}); check imaging.model, imaging.size, "
                "imaging.quality and imaging.output_format"
            )
        if isinstance(exc, openai.RateLimitError):
            attempts = self._attempts(exc)
            if exc.code == "insufficient_quota":
                return ImageGenerationError(
                    f"{action} failed: the account behind connection {CONNECTION_ID!r} has no quota left "
                    f"(HTTP 429 insufficient_quota, {attempts} attempts): check billing and usage limits"
                )
            return ImageGenerationError(
                f"{action} still rate limited after {attempts} attempts (HTTP 429: {_describe(exc)}): lower "
                "imaging.concurrency (PERSONA_IMAGING__CONCURRENCY), raise imaging.max_retries or the account's "
                "rate limits; the task can be retried"
            )
        if isinstance(exc, openai.InternalServerError):
            attempts = self._attempts(exc)
            return ImageGenerationError(
                f"{action} failed with HTTP {exc.status_code} from {endpoint} after {attempts} attempts "
                f"({_describe(exc)}): the service is having problems; lower imaging.concurrency "
                "(PERSONA_IMAGING__CONCURRENCY) or retry the task later"
            )
        if isinstance(exc, openai.APITimeoutError):
            attempts = self._attempts(exc)
            return ImageGenerationError(
                f"{action} to {endpoint} timed out after {attempts} attempts of imaging.timeout_s="
                f"{self.settings.timeout_s:g} s each: raise imaging.timeout_s (PERSONA_IMAGING__TIMEOUT_S) or lower "
                "imaging.concurrency (PERSONA_IMAGING__CONCURRENCY); the task can be retried"
            )
        if isinstance(exc, openai.APIConnectionError):
            attempts = self._attempts(exc)
            setting = "imaging.azure_endpoint" if self._azure else "imaging.base_url (or OPENAI_BASE_URL)"
            return ImageGenerationError(
                f"{action} could not connect to {endpoint} after {attempts} attempts: check {setting}, the "
                "network and proxy settings of the worker; the task can be retried"
            )
        if isinstance(exc, openai.APIStatusError):
            return ImageGenerationError(
                f"{action} failed with HTTP {exc.status_code} from {endpoint} after {self._attempts(exc)} attempts "
                f"({_describe(exc)})"
            )
        return ImageGenerationError(f"{action} failed: {type(exc).__name__}: {exc}")

    def _available_models(self, limit: int = 8) -> list[str]:
        """A few model ids from ``GET /models`` (image models first) for an error message; [] if unavailable."""
        try:
            page = self._client.with_options(max_retries=0, timeout=min(10.0, self.settings.timeout_s)).models.list()
            ids = sorted(model.id for model in page.data)
        except openai.OpenAIError:
            return []
        image_ids = [model_id for model_id in ids if "image" in model_id]
        return (image_ids or ids)[:limit]


def _describe(exc: openai.APIError) -> str:
    """Server message and code of an API error (never request headers)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") if isinstance(body.get("message"), str) else None
    text = message or exc.message
    code = exc.code or (body.get("code") if isinstance(body.get("code"), str) else None)
    return f"{text} [code={code}]" if code else text


def _is_refusal(exc: openai.BadRequestError) -> bool:
    if exc.code and exc.code.lower() in _REFUSAL_CODES:
        return True
    body = exc.body if isinstance(exc.body, dict) else {}
    text = str(body.get("message") or exc.message).lower()
    return any(phrase in text for phrase in _REFUSAL_PHRASES)


def _sniff_format(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _parse_size(size: str | None) -> tuple[int, int] | None:
    match = _SIZE.match(size or "")
    return (int(match.group(1)), int(match.group(2))) if match else None
