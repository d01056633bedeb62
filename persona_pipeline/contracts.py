"""Typed contracts between pipeline stages.

Every stage takes and returns these dataclasses (or Arrow/pandas tables whose columns are listed here), so a
stage can be run, tested and replaced on its own. Everything here is JSON-serialisable through
:func:`to_jsonable` / the ``from_dict`` constructors, which is how small results travel through XCom and how
persona documents are published.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

ImageStyle = Literal["portrait", "illustration", "lifestyle"]
RecommendationKind = Literal["marketing", "product"]
#: Who wrote a persona's narrative: the template, the LLM, or the template because the LLM call failed.
NarrativeSource = Literal["template", "llm", "template_fallback"]

#: Columns of the per-customer feature table produced by extract (one row per customer as of D).
FEATURE_COLUMNS: tuple[str, ...] = (
    "customer_key",
    "age",
    "gender",
    "country",
    "region",
    "income_band",
    "occupation",
    "household_size",
    "tenure_days",
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "returns",
    "preferred_channel",
    "preferred_device",
    "top_category",
    "top_interest",
    "events_90d",
    "engagement",
    "marketing_consent",
    "profiling_consent",
)


def stable_hash(payload: Any, length: int = 16) -> str:
    """Return a short, deterministic SHA-256 hex digest of a JSON-serialisable payload."""
    text = json.dumps(to_jsonable(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, dates and tuples into plain JSON types (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


@dataclass(frozen=True)
class RunContext:
    """Identity of one pipeline run: the logical date D and what produced it."""

    logical_date: date
    run_id: str
    config_hash: str

    @property
    def partition(self) -> str:
        """Hive-style partition label used for every output of this run."""
        return f"dt={self.logical_date.isoformat()}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunContext:
        return cls(
            logical_date=date.fromisoformat(str(data["logical_date"])),
            run_id=str(data["run_id"]),
            config_hash=str(data["config_hash"]),
        )


@dataclass(frozen=True)
class RowAccounting:
    """Where every extracted row went. ``extracted == valid + quarantined + excluded`` always."""

    extracted: int
    valid: int
    quarantined: int
    excluded: int

    def __post_init__(self) -> None:
        if self.extracted != self.valid + self.quarantined + self.excluded:
            raise ValueError(
                f"row accounting does not balance: extracted={self.extracted} != valid={self.valid} "
                f"+ quarantined={self.quarantined} + excluded={self.excluded}"
            )


@dataclass(frozen=True)
class TraitLift:
    """How over-represented one trait value is in a segment relative to the whole population."""

    dimension: str  # e.g. "top_category", "age_band"
    value: str  # e.g. "wine", "55-64"
    segment_share: float
    population_share: float
    lift: float  # segment_share / population_share
    support: int  # customers in the segment with this trait

    @property
    def label(self) -> str:
        return f"{self.dimension}={self.value}"


@dataclass(frozen=True)
class SegmentDrift:
    """Change of a segment against the previous run's snapshot."""

    previous_size: int | None
    size_change: float | None  # relative, e.g. 0.05 = +5 %
    status: Literal["new", "continuing"]
    moved_traits: tuple[str, ...] = ()  # trait labels whose share moved more than the drift threshold


@dataclass(frozen=True)
class SegmentProfile:
    """Aggregate description of one segment. Contains no customer-level data."""

    segment_id: str
    label: str  # method's own label, e.g. RFM "Champions"
    size: int
    share: float
    numeric: dict[str, float]  # median_age, aov, recency_days, frequency, monetary, tenure_days, clv, engagement
    distributions: dict[str, dict[str, float]]  # dimension -> value -> share within segment
    lifts: tuple[TraitLift, ...]
    drift: SegmentDrift | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentProfile:
        drift = data.get("drift")
        return cls(
            segment_id=data["segment_id"],
            label=data["label"],
            size=int(data["size"]),
            share=float(data["share"]),
            numeric={k: float(v) for k, v in data["numeric"].items()},
            distributions={k: dict(v) for k, v in data["distributions"].items()},
            lifts=tuple(TraitLift(**lift) for lift in data["lifts"]),
            drift=None
            if drift is None
            else SegmentDrift(**{**drift, "moved_traits": tuple(drift.get("moved_traits", ()))}),
        )


@dataclass(frozen=True)
class Recommendation:
    """One action for marketing or product, with the trait that motivates it."""

    kind: RecommendationKind
    title: str
    detail: str
    because: str  # human-readable citation of the trait, e.g. "catalogue orders are 3.1x the average"
    trait: str  # machine-readable trait label, e.g. "preferred_channel=catalogue"


@dataclass(frozen=True)
class DepictedTraits:
    """What an image of the persona shows: quantised so that small drift does not change it."""

    age_band: str  # e.g. "25-34"
    gender: str  # "female" | "male" | "non_binary"
    income_band: str
    occupation: str
    interests: tuple[str, ...]  # up to three categories, most distinctive first
    channel: str
    device: str
    setting: str  # "urban" | "suburban" | "rural" | "home"
    style: ImageStyle

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DepictedTraits:
        return cls(**{**data, "interests": tuple(data["interests"])})


@dataclass(frozen=True)
class ImagePrompt:
    """One image to generate for a persona."""

    persona_id: str
    variant: str  # e.g. "portrait-1"
    style: ImageStyle
    prompt: str
    prompt_hash: str
    depicted: DepictedTraits

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePrompt:
        return cls(**{**data, "depicted": DepictedTraits.from_dict(data["depicted"])})


@dataclass(frozen=True)
class Persona:
    """A persona card: the published, human-readable face of a segment."""

    persona_id: str
    segment_id: str
    method: str
    name: str
    tagline: str
    narrative: str
    goals: tuple[str, ...]
    pain_points: tuple[str, ...]
    channels: tuple[str, ...]
    recommendations: tuple[Recommendation, ...]
    key_numbers: dict[str, float]
    top_traits: tuple[TraitLift, ...]
    size: int
    share: float
    prompts: tuple[ImagePrompt, ...]
    drift: SegmentDrift | None = None
    content_hash: str = field(default="")
    narrative_source: NarrativeSource = "template"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Persona:
        drift = data.get("drift")
        return cls(
            persona_id=data["persona_id"],
            segment_id=data["segment_id"],
            method=data["method"],
            name=data["name"],
            tagline=data["tagline"],
            narrative=data["narrative"],
            goals=tuple(data["goals"]),
            pain_points=tuple(data["pain_points"]),
            channels=tuple(data["channels"]),
            recommendations=tuple(Recommendation(**r) for r in data["recommendations"]),
            key_numbers={k: float(v) for k, v in data["key_numbers"].items()},
            top_traits=tuple(TraitLift(**t) for t in data["top_traits"]),
            size=int(data["size"]),
            share=float(data["share"]),
            prompts=tuple(ImagePrompt.from_dict(p) for p in data["prompts"]),
            drift=None
            if drift is None
            else SegmentDrift(**{**drift, "moved_traits": tuple(drift.get("moved_traits", ()))}),
            content_hash=data.get("content_hash", ""),
            narrative_source=data.get("narrative_source", "template"),
        )


@dataclass(frozen=True)
class ImageRecord:
    """A generated (or cached) image stored in the object store."""

    persona_id: str
    variant: str
    style: str
    provider: str
    model: str
    prompt_hash: str
    cache_key: str
    key: str  # object key of the image for this run
    url: str  # URL a browser/BI tool can open (public base URL, presigned URL or file URI)
    content_type: str
    size_bytes: int
    width: int
    height: int
    cost_usd: float
    cached: bool
    flags: tuple[str, ...] = ()  # e.g. ("illustrative",), ("moderation_fallback",), ("budget_fallback",)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(**{**data, "flags": tuple(data.get("flags", ()))})
