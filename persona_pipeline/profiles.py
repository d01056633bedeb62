"""Per-segment statistics: sizes, numeric summaries, categorical distributions, trait lift and drift.

Profiles are aggregates only; nothing customer-level leaves this module. A lift is reported only when enough
customers carry the trait (``lift_min_support``) and it is common enough inside the segment
(``lift_min_share``), so a 5x lift on three people never reaches a persona card.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from persona_pipeline.contracts import SegmentDrift, SegmentProfile, TraitLift
from persona_pipeline.segmentation.base import SegmentationResult

AGE_BANDS: tuple[tuple[float, str], ...] = (
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (65, "55-64"),
    (np.inf, "65+"),
)
DIMENSIONS: tuple[str, ...] = (
    "age_band",
    "gender",
    "country",
    "region",
    "income_band",
    "occupation",
    "household",
    "preferred_channel",
    "preferred_device",
    "top_category",
    "top_interest",
)
DRIFT_SHARE_THRESHOLD = 0.05
CLV_HORIZON_YEARS = 5.0


def age_band(age: pd.Series) -> pd.Series:
    """Quantise ages into the bands used everywhere (profiles, prompts, images)."""
    edges = [-np.inf] + [edge for edge, _ in AGE_BANDS]
    labels = [label for _, label in AGE_BANDS]
    return pd.cut(age, bins=edges, labels=labels, right=False).astype("string")


def household_band(size: pd.Series) -> pd.Series:
    values = pd.to_numeric(size, errors="coerce")
    band = pd.Series(pd.NA, index=size.index, dtype="string")
    band[values == 1] = "single"
    band[values == 2] = "couple"
    band[values >= 3] = "family"
    return band


def trait_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The categorical view of customers that profiles and lifts are computed on."""
    traits = pd.DataFrame(index=features.index)
    traits["age_band"] = age_band(features["age"]) if "age" in features else pd.NA
    traits["household"] = household_band(features["household_size"]) if "household_size" in features else pd.NA
    for dim in DIMENSIONS:
        if dim not in traits:
            traits[dim] = features[dim].astype("string") if dim in features else pd.NA
    return traits


def estimate_clv(segment: pd.DataFrame) -> float:
    """Median annual spend times expected lifetime (1 / churn share, capped at 5 years).

    Churn share = customers with no order in the last 180 days. A transparent estimate for ranking segments, not a
    forecast.
    """
    if segment.empty:
        return 0.0
    tenure_years = (pd.to_numeric(segment["tenure_days"], errors="coerce").fillna(365.0) / 365.0).clip(lower=0.25)
    annual = segment["monetary"].astype("float64") / tenure_years
    churned = segment["recency_days"].isna() | (segment["recency_days"] > 180)
    lifetime = min(CLV_HORIZON_YEARS, 1.0 / max(float(churned.mean()), 1.0 / CLV_HORIZON_YEARS))
    return float(np.nanmedian(annual.to_numpy(dtype="float64"))) * lifetime


def _numeric_summary(segment: pd.DataFrame) -> dict[str, float]:
    def median(column: str) -> float:
        if column not in segment:
            return float("nan")
        values = pd.to_numeric(segment[column], errors="coerce").dropna()
        return float(values.median()) if len(values) else float("nan")

    return {
        "median_age": median("age"),
        "aov": median("aov"),
        "recency_days": median("recency_days"),
        "frequency": median("frequency"),
        "monetary": median("monetary"),
        "mean_monetary": float(segment["monetary"].mean()) if len(segment) else 0.0,
        "tenure_days": median("tenure_days"),
        "engagement": median("engagement"),
        "clv": estimate_clv(segment),
        "return_rate": float(segment["returns"].sum() / max(segment["frequency"].sum() + segment["returns"].sum(), 1))
        if "returns" in segment
        else 0.0,
        "marketing_consent_share": float(segment["marketing_consent"].fillna(False).astype(bool).mean())
        if "marketing_consent" in segment and len(segment)
        else 0.0,
    }


def build_profiles(
    features: pd.DataFrame,
    segmentation: SegmentationResult,
    *,
    lift_min_support: int,
    lift_min_share: float,
    previous: Mapping[str, Mapping[str, object]] | None = None,
) -> list[SegmentProfile]:
    """One profile per segment, largest first. ``previous`` maps segment id → its previous snapshot
    (``{"size": int, "distributions": {...}}``) for drift."""
    segmented = features.merge(segmentation.assignments, on="customer_key", how="inner", validate="one_to_one")
    population = len(segmented)
    if population == 0:
        return []
    traits = trait_frame(segmented)
    population_shares = {dim: traits[dim].value_counts(normalize=True, dropna=True) for dim in DIMENSIONS}
    profiles = []
    for segment_id, index in segmented.groupby("segment_id", sort=True).groups.items():
        segment = segmented.loc[index]
        seg_traits = traits.loc[index]
        distributions: dict[str, dict[str, float]] = {}
        lifts: list[TraitLift] = []
        for dim in DIMENSIONS:
            counts = seg_traits[dim].value_counts(dropna=True)
            total = int(counts.sum())
            if total == 0:
                continue
            shares = counts / total
            distributions[dim] = {str(k): round(float(v), 6) for k, v in shares.items()}
            for value, count in counts.items():
                share = float(shares[value])
                pop_share = float(population_shares[dim].get(value, 0.0))
                if count < lift_min_support or share < lift_min_share or pop_share <= 0:
                    continue
                lifts.append(
                    TraitLift(
                        dim, str(value), round(share, 6), round(pop_share, 6), round(share / pop_share, 4), int(count)
                    )
                )
        lifts.sort(key=lambda t: (-t.lift, -t.support, t.dimension, t.value))
        size = len(segment)
        profile = SegmentProfile(
            segment_id=str(segment_id),
            label=segmentation.labels.get(str(segment_id), str(segment_id)),
            size=size,
            share=round(size / population, 6),
            numeric={k: round(v, 4) if np.isfinite(v) else v for k, v in _numeric_summary(segment).items()},
            distributions=distributions,
            lifts=tuple(lifts),
            drift=compute_drift(size, distributions, (previous or {}).get(str(segment_id))),
        )
        profiles.append(profile)
    profiles.sort(key=lambda p: (-p.size, p.segment_id))
    return profiles


def compute_drift(
    size: int, distributions: Mapping[str, Mapping[str, float]], previous: Mapping[str, object] | None
) -> SegmentDrift:
    """Size change and the traits whose share moved by more than 5 points since the previous run."""
    if not previous:
        return SegmentDrift(previous_size=None, size_change=None, status="new")
    previous_size = int(previous.get("size", 0))  # type: ignore[call-overload]
    previous_dist = previous.get("distributions") or {}
    moved = []
    for dim, shares in distributions.items():
        before = previous_dist.get(dim, {}) if isinstance(previous_dist, Mapping) else {}
        for value in sorted(set(shares) | set(before)):
            delta = float(shares.get(value, 0.0)) - float(before.get(value, 0.0))
            if abs(delta) > DRIFT_SHARE_THRESHOLD:
                moved.append(f"{dim}={value} {'+' if delta > 0 else ''}{delta * 100:.0f}pt")
    change = (size - previous_size) / previous_size if previous_size else None
    return SegmentDrift(
        previous_size=previous_size,
        size_change=None if change is None else round(change, 4),
        status="continuing",
        moved_traits=tuple(moved),
    )
