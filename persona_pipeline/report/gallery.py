"""Render the nightly persona gallery: one self-contained HTML page marketers can open anywhere.

The page has no external assets (inline CSS, inline SVG charts, no JavaScript), so it renders identically
from an object store, an e-mail attachment or a laptop with no network. Every data string goes through
Jinja2 autoescaping; this module only prepares numbers and chart geometry, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

import jinja2

from persona_pipeline.contracts import (
    ImageRecord,
    Persona,
    RowAccounting,
    SegmentDrift,
    TraitLift,
)

__all__ = ["GalleryRun", "render_gallery"]

PRODUCT_NAME = "Persona Pipeline"
TEMPLATE_NAME = "gallery.html.j2"

# Chart geometry in SVG user units; the SVGs scale with the page through their viewBox.
_SIZE_LABEL_W = 250
_SIZE_BAR_W = 420
_SIZE_VALUE_W = 200
_SIZE_ROW_H = 34
_SIZE_BAR_H = 20
_LIFT_LABEL_W = 280
_LIFT_BAR_W = 330
_LIFT_VALUE_W = 190
_LIFT_ROW_H = 30
_LIFT_BAR_H = 18
_CHART_PAD = 8
_MAX_SVG_LABEL = 32  # SVG text does not wrap; longer labels are shortened and kept whole in <title>

_MONEY_KEYS = frozenset({"aov", "monetary", "clv", "revenue", "spend", "avg_order_value"})
_MONEY_SUFFIXES = ("_usd", "_eur", "_gbp", "_revenue", "_spend", "_value", "_clv", "_aov")
_SHARE_SUFFIXES = ("_share", "_rate", "_pct")
_KEY_LABELS: Mapping[str, str] = {
    "median_age": "Median age",
    "aov": "Average order value",
    "recency_days": "Days since last order",
    "frequency": "Orders per customer",
    "monetary": "Spend per customer",
    "tenure_days": "Customer for",
    "clv": "Customer lifetime value",
    "engagement": "Engagement score",
    "returns": "Returns per customer",
    "household_size": "Household size",
}
_FLAG_NOTES: Mapping[str, str] = {
    "illustrative": "Illustrative image; it does not show a real customer.",
    "moderation_fallback": "The provider's moderation rejected the prompt; a neutral fallback image is shown.",
    "budget_fallback": "The image budget for this run was exhausted; a fallback image is shown.",
}
_KIND_TITLES: Mapping[str, str] = {"marketing": "Marketing", "product": "Product"}
_KIND_ORDER = ("marketing", "product")
# Typographic signs read better than "-" and "x" next to numbers.
_MINUS = "\N{MINUS SIGN}"
_TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class GalleryRun:
    """Run-level facts shown in the gallery header."""

    logical_date: date
    run_id: str
    method: str  # segmentation method, e.g. "rfm"
    image_provider: str  # e.g. "offline", "openai"
    accounting: RowAccounting
    images_generated: int
    images_cached: int
    image_cost_usd: float
    min_segment_size: int  # the k of k-anonymity
    generated_at: datetime


# ---------------------------------------------------------------------------------------------------------
# View model: plain values the template lays out. Geometry is pre-formatted to fixed decimals so the same
# input always gives byte-identical output.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageView:
    src: str
    alt: str
    variant: str
    style: str
    provider: str
    model: str
    width: int
    height: int
    cached: bool
    flags: tuple[tuple[str, str, bool], ...]  # (flag, explanation, is_warning)
    fallback: bool  # any warning flag: the picture is a stand-in, not the requested image


@dataclass(frozen=True)
class _DriftView:
    kind: str  # "new" | "up" | "down" | "flat"
    symbol: str
    text: str
    detail: str
    moved_traits: tuple[str, ...]


@dataclass(frozen=True)
class _Bar:
    label: str
    full_label: str
    href: str
    y: str
    text_y: str
    width: str
    value_x: str
    value: str


@dataclass(frozen=True)
class _Chart:
    width: int
    height: int
    label_w: int
    track_w: int
    bar_h: int
    bars: tuple[_Bar, ...]
    baseline_x: str | None  # x of the "lift = 1" reference line, lift charts only
    aria_label: str


@dataclass(frozen=True)
class _Recommendation:
    title: str
    detail: str
    because: str
    trait: str


@dataclass(frozen=True)
class _RecommendationGroup:
    kind: str
    title: str
    items: tuple[_Recommendation, ...]


@dataclass(frozen=True)
class _PersonaView:
    persona_id: str
    anchor: str
    name: str
    tagline: str
    narrative: str
    size: str
    share: str
    goals: tuple[str, ...]
    pain_points: tuple[str, ...]
    channels: tuple[str, ...]
    key_numbers: tuple[tuple[str, str], ...]
    images: tuple[_ImageView, ...]
    lift_chart: _Chart | None
    drift: _DriftView | None
    recommendation_groups: tuple[_RecommendationGroup, ...]
    flagged_images: int


def render_gallery(
    run: GalleryRun,
    personas: Sequence[Persona],
    images: Sequence[ImageRecord],
    *,
    image_href: Callable[[ImageRecord], str],
) -> dict[str, str]:
    """Render the persona gallery and return ``{"index.html": html}``.

    ``image_href`` maps each image record to the ``src`` used in the page (a path relative to the page or
    a URL); its output is used verbatim, escaped. Personas are ordered by size (largest first), images by
    the persona's prompt order. Apart from ``run.generated_at`` the output depends only on the inputs.
    """
    ordered = sorted(personas, key=lambda p: (-p.size, p.persona_id))
    images_by_persona: dict[str, list[ImageRecord]] = {}
    for record in images:
        images_by_persona.setdefault(record.persona_id, []).append(record)

    views = [_persona_view(p, images_by_persona.get(p.persona_id, []), image_href) for p in ordered]
    flagged = sum(v.flagged_images for v in views)
    context = {
        "product_name": PRODUCT_NAME,
        "run": _run_view(run, ordered, flagged),
        "personas": views,
        "size_chart": _size_chart(ordered, views) if ordered else None,
    }
    html = _environment().get_template(TEMPLATE_NAME).render(**context)
    return {"index.html": html}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # autoescape=True (not extension-based) because the templates end in .j2; StrictUndefined turns a
    # template typo into an error instead of a silently blank field.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("persona_pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _run_view(run: GalleryRun, personas: Sequence[Persona], flagged_images: int) -> dict[str, object]:
    acc = run.accounting
    generated_at = run.generated_at
    tz = generated_at.tzname()
    return {
        "logical_date": run.logical_date.isoformat(),
        "run_id": run.run_id,
        "method": run.method,
        "image_provider": run.image_provider,
        "k": format_count(run.min_segment_size),
        "extracted": format_count(acc.extracted),
        "valid": format_count(acc.valid),
        "quarantined": format_count(acc.quarantined),
        "excluded": format_count(acc.excluded),
        "images_generated": format_count(run.images_generated),
        "images_cached": format_count(run.images_cached),
        "image_cost": format_money(run.image_cost_usd, symbol="$"),
        "persona_count": format_count(len(personas)),
        "customers": format_count(sum(p.size for p in personas)),
        "flagged_images": flagged_images,
        "generated_at_iso": generated_at.isoformat(timespec="seconds"),
        "generated_at": generated_at.strftime("%Y-%m-%d %H:%M") + (f" {tz}" if tz else ""),
    }


def _persona_view(
    persona: Persona, records: Sequence[ImageRecord], image_href: Callable[[ImageRecord], str]
) -> _PersonaView:
    prompt_order = {prompt.variant: i for i, prompt in enumerate(persona.prompts)}
    ordered = sorted(records, key=lambda r: (prompt_order.get(r.variant, len(prompt_order)), r.variant))
    image_views = tuple(_image_view(persona, r, image_href) for r in ordered)
    return _PersonaView(
        persona_id=persona.persona_id,
        anchor=f"persona-{persona.persona_id}",
        name=persona.name,
        tagline=persona.tagline,
        narrative=persona.narrative,
        size=format_count(persona.size),
        share=format_share(persona.share),
        goals=tuple(persona.goals),
        pain_points=tuple(persona.pain_points),
        channels=tuple(persona.channels),
        key_numbers=tuple(format_key_number(k, v) for k, v in persona.key_numbers.items()),
        images=image_views,
        lift_chart=_lift_chart(persona.name, persona.top_traits) if persona.top_traits else None,
        drift=_drift_view(persona.drift, persona.size),
        recommendation_groups=_group_recommendations(persona),
        flagged_images=sum(1 for v in image_views if v.fallback),
    )


def _image_view(persona: Persona, record: ImageRecord, image_href: Callable[[ImageRecord], str]) -> _ImageView:
    flags = tuple((flag, _FLAG_NOTES.get(flag, f"Flagged: {flag}"), flag != "illustrative") for flag in record.flags)
    return _ImageView(
        src=image_href(record),
        alt=f"{persona.name} — {record.variant}",
        variant=record.variant,
        style=record.style,
        provider=record.provider,
        model=record.model,
        width=int(record.width),
        height=int(record.height),
        cached=record.cached,
        flags=flags,
        fallback=any(warn for _, _, warn in flags),
    )


def _drift_view(drift: SegmentDrift | None, size: int) -> _DriftView | None:
    if drift is None:
        return None
    moved = tuple(drift.moved_traits)
    if drift.status == "new":
        return _DriftView("new", "", "new", "New segment since the previous run", moved)
    change = drift.size_change
    previous = "" if drift.previous_size is None else f" ({format_count(drift.previous_size)} → {format_count(size)})"
    if change is None or not math.isfinite(change) or round(change * 100, 1) == 0:
        return _DriftView("flat", "●", "stable", f"Size unchanged since the previous run{previous}", moved)
    pct = f"{abs(change) * 100:.1f}%"
    if change > 0:
        return _DriftView("up", "▲", f"+{pct}", f"Grew {pct} since the previous run{previous}", moved)
    return _DriftView("down", "▼", f"{_MINUS}{pct}", f"Shrank {pct} since the previous run{previous}", moved)


def _group_recommendations(persona: Persona) -> tuple[_RecommendationGroup, ...]:
    grouped: dict[str, list[_Recommendation]] = {}
    for rec in persona.recommendations:
        grouped.setdefault(rec.kind, []).append(_Recommendation(rec.title, rec.detail, rec.because, rec.trait))
    # Known kinds first in a fixed order, anything unexpected after them alphabetically.
    kinds = [k for k in _KIND_ORDER if k in grouped] + sorted(k for k in grouped if k not in _KIND_ORDER)
    return tuple(
        _RecommendationGroup(kind, _KIND_TITLES.get(kind, kind.replace("_", " ").capitalize()), tuple(grouped[kind]))
        for kind in kinds
    )


def _size_chart(personas: Sequence[Persona], views: Sequence[_PersonaView]) -> _Chart:
    max_share = max((p.share for p in personas if _finite(p.share)), default=0.0)
    bars = []
    for i, (persona, view) in enumerate(zip(personas, views, strict=True)):
        share = persona.share if _finite(persona.share) else 0.0
        width = _SIZE_BAR_W * share / max_share if max_share > 0 else 0.0
        width = max(width, 2.0) if share > 0 else 0.0  # keep tiny segments visible
        y = _CHART_PAD + i * _SIZE_ROW_H + (_SIZE_ROW_H - _SIZE_BAR_H) / 2
        bars.append(
            _Bar(
                label=_shorten(persona.name),
                full_label=persona.name,
                href=f"#{view.anchor}",
                y=_num(y),
                text_y=_num(y + _SIZE_BAR_H / 2),
                width=_num(width),
                value_x=_num(_SIZE_LABEL_W + width + 8),
                value=f"{format_share(share)} · {format_count(persona.size)} customers",
            )
        )
    return _Chart(
        width=_SIZE_LABEL_W + _SIZE_BAR_W + _SIZE_VALUE_W,
        height=2 * _CHART_PAD + len(bars) * _SIZE_ROW_H,
        label_w=_SIZE_LABEL_W,
        track_w=_SIZE_BAR_W,
        bar_h=_SIZE_BAR_H,
        bars=tuple(bars),
        baseline_x=None,
        aria_label="Segment sizes as share of customers",
    )


def _lift_chart(persona_name: str, traits: Sequence[TraitLift]) -> _Chart:
    max_lift = max((t.lift for t in traits if _finite(t.lift)), default=0.0)
    bars = []
    for i, trait in enumerate(traits):
        lift = trait.lift if _finite(trait.lift) and trait.lift > 0 else 0.0
        width = _LIFT_BAR_W * lift / max_lift if max_lift > 0 else 0.0
        y = _CHART_PAD + i * _LIFT_ROW_H + (_LIFT_ROW_H - _LIFT_BAR_H) / 2
        label = f"{trait.dimension}: {trait.value}"
        bars.append(
            _Bar(
                label=_shorten(label),
                full_label=(
                    f"{label} — {format_share(trait.segment_share)} of segment vs "
                    f"{format_share(trait.population_share)} of all customers"
                ),
                href="",
                y=_num(y),
                text_y=_num(y + _LIFT_BAR_H / 2),
                width=_num(width),
                value_x=_num(_LIFT_LABEL_W + width + 8),
                value=f"{format_lift(trait.lift)} · {format_count(trait.support)} customers",
            )
        )
    # The lift = 1 line marks "as common as in the whole customer base".
    baseline = _num(_LIFT_LABEL_W + _LIFT_BAR_W / max_lift) if max_lift >= 1 else None
    return _Chart(
        width=_LIFT_LABEL_W + _LIFT_BAR_W + _LIFT_VALUE_W,
        height=2 * _CHART_PAD + len(bars) * _LIFT_ROW_H,
        label_w=_LIFT_LABEL_W,
        track_w=_LIFT_BAR_W,
        bar_h=_LIFT_BAR_H,
        bars=tuple(bars),
        baseline_x=baseline,
        aria_label=f"Most distinctive traits of {persona_name}, by lift over all customers",
    )


# ---------------------------------------------------------------------------------------------------------
# Number formatting: locale-independent so output does not depend on the worker's environment.
# ---------------------------------------------------------------------------------------------------------


def format_count(value: float) -> str:
    """Format an integer count with thousands separators, e.g. ``12,345``."""
    if not _finite(value):
        return "—"
    return f"{round(value):,}"


def format_money(value: float, symbol: str = "") -> str:
    """Format money with two decimals and thousands separators, e.g. ``$1,234.50``."""
    if not _finite(value):
        return "—"
    sign = _MINUS if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.2f}"


def format_share(value: float) -> str:
    """Format a 0..1 fraction as a percentage with one decimal, e.g. ``12.5%``."""
    if not _finite(value):
        return "—"
    return f"{value * 100:.1f}%"


def format_lift(value: float) -> str:
    """Format a lift ratio, e.g. ``3.1`` followed by a multiplication sign."""
    if not _finite(value):
        return "—"
    return f"{value:.1f}{_TIMES}"


def format_key_number(key: str, value: float) -> tuple[str, str]:
    """Return ``(label, formatted value)`` for one entry of ``Persona.key_numbers``.

    Money gets two decimals, day counts are whole days, shares and rates are percentages; unknown keys are
    labelled from the key itself and shown with up to two decimals.
    """
    label = _KEY_LABELS.get(key, key.replace("_", " ").strip().capitalize() or key)
    lowered = key.lower()
    if lowered in _MONEY_KEYS or lowered.endswith(_MONEY_SUFFIXES):
        return label, format_money(value)
    if lowered.endswith("_days") or lowered == "days":
        return label, "—" if not _finite(value) else f"{round(value):,} days"
    if lowered.endswith(_SHARE_SUFFIXES) or lowered == "share":
        return label, format_share(value)
    if lowered in ("median_age", "age"):
        return label, format_count(value)
    return label, _plain(value)


def _plain(value: float) -> str:
    if not _finite(value):
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _num(value: float) -> str:
    # Fixed one-decimal coordinates: deterministic text and no float repr noise in the SVG.
    return f"{value:.1f}"


def _shorten(text: str, limit: int = _MAX_SVG_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
