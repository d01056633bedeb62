"""Optional LLM-written persona narratives (``personas.narrative: llm``), with the template as the fallback.

The model sees only what a persona card already publishes: its name, tagline, segment size and share, segment
medians, trait shares and lifts, goals, pain points, channels and recommendation titles — aggregates of at
least *k* customers, never a customer row or key (see :func:`narrative_facts`). Its answer is clamped to
``personas.narrative_max_chars`` and passed through the same PII scrubber as the image prompts.

Any failure (no API key, connection error, timeout, HTTP error, empty answer) leaves the template narrative in
place; the persona records ``narrative_source = "template_fallback"``. Errors that will not go away within the
run (no key, bad key, unknown model, unreachable endpoint) stop further calls for the rest of the run.
Transient errors are retried by the ``openai`` client itself.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Protocol

from persona_pipeline.config import PersonaSettings
from persona_pipeline.contracts import Persona, SegmentProfile
from persona_pipeline.personas import scrub_prompt

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
MAX_TRAITS = 8
MAX_FAILURES = 3
MIN_CHARS = 40  # shorter answers are treated as failures

SYSTEM_PROMPT = (
    "You write short customer persona narratives for a marketing team. Use only the facts you are given: do not "
    "invent numbers, names of people, places, brands or contact details. Write two short paragraphs in plain "
    "English, third person plural, about who these customers are, how they shop and what would win them over. "
    "At most {words} words. No headings, no lists, no markdown."
)


class Narrator(Protocol):
    """Writes a narrative for a persona from its aggregates; None means "use the template"."""

    def narrate(self, persona: Persona, profile: SegmentProfile) -> str | None: ...


def _round(value: float, digits: int = 0) -> float | int | None:
    if not math.isfinite(value):
        return None
    return round(value) if digits == 0 else round(value, digits)


def narrative_facts(persona: Persona, profile: SegmentProfile) -> dict[str, Any]:
    """The aggregate facts the model may use (JSON-able; no customer-level data can appear here)."""
    n = profile.numeric
    return {
        "persona": persona.name,
        "tagline": persona.tagline,
        "customers": profile.size,
        "share_of_customers_pct": _round(profile.share * 100, 1),
        "typical_member": {
            "median_age": _round(n.get("median_age", math.nan)),
            "orders": _round(n.get("frequency", math.nan)),
            "order_value": _round(n.get("aov", math.nan)),
            "total_spend": _round(n.get("monetary", math.nan)),
            "days_since_last_order": _round(n.get("recency_days", math.nan)),
            "estimated_lifetime_value": _round(n.get("clv", math.nan)),
        },
        "distinctive_traits": [
            {
                "trait": f"{t.dimension}={t.value}",
                "share_pct": _round(t.segment_share * 100),
                "times_average": _round(t.lift, 1),
            }
            for t in persona.top_traits[:MAX_TRAITS]
        ],
        "goals": list(persona.goals),
        "pain_points": list(persona.pain_points),
        "channels": list(persona.channels),
        "recommended_actions": [r.title for r in persona.recommendations],
    }


def facts_text(facts: dict[str, Any]) -> str:
    """The user message: one fact per line."""
    member = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts["typical_member"].items() if v is not None)
    traits = "; ".join(
        f"{t['trait']} ({t['share_pct']}% of them, {t['times_average']}x the average)"
        for t in facts["distinctive_traits"]
    )
    lines = [
        f"Persona: {facts['persona']}",
        f"Tagline: {facts['tagline']}",
        f"Segment: {facts['customers']} customers, {facts['share_of_customers_pct']}% of profiled customers",
        f"Typical member (medians): {member}",
        f"Distinctive traits: {traits or 'none stand out'}",
        f"Goals: {'; '.join(facts['goals'])}",
        f"Pain points: {'; '.join(facts['pain_points'])}",
        f"Preferred channels: {', '.join(facts['channels'])}",
        f"Recommended actions: {'; '.join(facts['recommended_actions'])}",
    ]
    return "\n".join(lines)


class LLMNarrator:
    """Chat-completions narrator for any OpenAI-compatible endpoint."""

    def __init__(
        self,
        *,
        model: str,
        max_chars: int,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        client: Any | None = None,
    ) -> None:
        self.model = model
        self.max_chars = max_chars
        self.failures: list[str] = []  # one line per failed call (error type and status, never the key)
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client = client
        self._disabled: str | None = None

    @property
    def disabled(self) -> str | None:
        """Why further calls are skipped this run, if they are."""
        return self._disabled

    def _disable(self, reason: str) -> None:
        if self._disabled is None:
            self._disabled = reason
            log.warning("LLM narratives disabled for this run (%s); using the template narrative", reason)

    def _openai_client(self) -> Any:
        if self._client is None:
            import openai

            key = self._api_key or os.environ.get(API_KEY_ENV)
            if not key:
                raise _Unavailable(f"no API key: set {API_KEY_ENV}")
            self._client = openai.OpenAI(
                api_key=key, base_url=self._base_url, timeout=self._timeout_s, max_retries=self._max_retries
            )
        return self._client

    def messages(self, persona: Persona, profile: SegmentProfile) -> list[dict[str, str]]:
        words = max(60, self.max_chars // 7)
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(words=words)},
            {"role": "user", "content": facts_text(narrative_facts(persona, profile))},
        ]

    def narrate(self, persona: Persona, profile: SegmentProfile) -> str | None:
        if self._disabled is not None:
            return None
        import openai

        try:
            client = self._openai_client()
            response = client.chat.completions.create(
                model=self.model,
                messages=self.messages(persona, profile),
                # About 4 characters per token; the text is clamped below anyway.
                max_completion_tokens=max(256, self.max_chars // 2),
            )
            choices = getattr(response, "choices", None) or []
            text = (choices[0].message.content or "") if choices else ""
        except _Unavailable as exc:
            self._disable(str(exc))
            return None
        except (
            openai.AuthenticationError,
            openai.PermissionDeniedError,
            openai.NotFoundError,
            openai.APIConnectionError,
        ) as exc:
            self._record(persona, exc)
            self._disable(f"{type(exc).__name__}{_status(exc)}")
            return None
        except openai.OpenAIError as exc:
            self._record(persona, exc)
            if len(self.failures) >= MAX_FAILURES:
                self._disable(f"{len(self.failures)} failed calls")
            return None
        text = scrub_prompt(text, self.max_chars)
        if len(text) < MIN_CHARS:
            self.failures.append(f"{persona.persona_id}: empty or too short answer")
            return None
        return text

    def _record(self, persona: Persona, exc: Exception) -> None:
        line = f"{persona.persona_id}: {type(exc).__name__}{_status(exc)}"
        self.failures.append(line)
        log.warning("LLM narrative failed for %s", line)


class _Unavailable(Exception):
    """The narrator cannot be used at all this run (e.g. no API key)."""


def _status(exc: Exception) -> str:
    code = getattr(exc, "status_code", None)
    return f" (HTTP {code})" if code else ""


def make_narrator(settings: PersonaSettings, *, api_key: str | None = None, base_url: str | None = None) -> LLMNarrator:
    """The narrator ``settings`` describe (credentials from the caller or ``OPENAI_API_KEY``)."""
    return LLMNarrator(
        model=settings.narrative_model,
        max_chars=settings.narrative_max_chars,
        api_key=api_key,
        base_url=base_url or settings.narrative_base_url,
        timeout_s=settings.narrative_timeout_s,
    )
