"""Per-segment statistics: sizes, numeric summaries, categorical distributions, trait lift and drift.

Profiles are aggregates only; nothing customer-level leaves this module. A lift is reported only when enough
customers carry the trait (``lift_min_support``) and it is common enough inside the segment
(``lift_min_share``), so a 5x lift on three people never reaches a persona card.

:class:`ProfileAccumulator` gathers the statistics part by part (counts, sums and the float64 values that exact
medians need), so the feature table never has to be in memory at once; :func:`build_profiles` is one part.
"""

from __future__ import annotations

from collections import Counter
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


def _annual_spend(monetary: pd.Series, tenure_days: pd.Series) -> pd.Series:
    """Spend per year of tenure; an unknown tenure counts as one year and tenures under three months as three."""
    tenure_years = (pd.to_numeric(tenure_days, errors="coerce").fillna(365.0) / 365.0).clip(lower=0.25)
    return monetary.astype("float64") / tenure_years


def _churned(recency_days: pd.Series) -> pd.Series:
    """No order at all, or none in the last 180 days."""
    return recency_days.isna() | (recency_days > 180)


def _expected_lifetime(churn_share: float) -> float:
    """Expected lifetime in years: 1 / churn share, capped at ``CLV_HORIZON_YEARS``."""
    return min(CLV_HORIZON_YEARS, 1.0 / max(churn_share, 1.0 / CLV_HORIZON_YEARS))


# numeric summary key -> feature column whose per-segment median it is (``_CLV`` holds annual spend, for CLV)
_MEDIANS: dict[str, str] = {
    "median_age": "age",
    "aov": "aov",
    "recency_days": "recency_days",
    "frequency": "frequency",
    "monetary": "monetary",
    "tenure_days": "tenure_days",
    "engagement": "engagement",
}
_CLV = "clv"
# per-segment running totals
_SUMS: tuple[str, ...] = ("monetary", "monetary_n", "returns", "frequency", "churned", "marketing_consent")
# a segment's list of value chunks is concatenated once it is this long (many small parts stay cheap)
_COMPACT_AFTER = 64


def _floats(features: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as float64 (non-numbers and a missing column are NaN), on the frame's own index."""
    if column not in features:
        return pd.Series(np.nan, index=features.index, dtype="float64")
    return pd.to_numeric(features[column], errors="coerce").astype("float64")


class ProfileAccumulator:
    """Per-segment statistics gathered part by part; holds only counts, sums and the numeric columns medians need."""

    def __init__(self) -> None:
        self._segments: list[str] = []  # global segment index -> id, in order of first appearance
        self._index: dict[str, int] = {}
        self._sizes = np.zeros(0, dtype="int64")
        self._sums: dict[str, np.ndarray] = {name: np.zeros(0, dtype="float64") for name in _SUMS}
        # median key -> segment index -> non-NaN float64 chunks
        self._values: dict[str, list[list[np.ndarray]]] = {key: [] for key in (*_MEDIANS, _CLV)}
        # dimension -> (segment index, trait value) -> customers
        self._traits: dict[str, Counter[tuple[int, str]]] = {dim: Counter() for dim in DIMENSIONS}

    def _segment_indices(self, uniques: np.ndarray) -> np.ndarray:
        """Global indices of a part's distinct segment ids, registering new ones."""
        for segment_id in map(str, uniques):
            if segment_id not in self._index:
                self._index[segment_id] = len(self._segments)
                self._segments.append(segment_id)
        grow = len(self._segments) - len(self._sizes)
        if grow:
            self._sizes = np.concatenate([self._sizes, np.zeros(grow, dtype="int64")])
            for name, sums in self._sums.items():
                self._sums[name] = np.concatenate([sums, np.zeros(grow, dtype="float64")])
            for chunks in self._values.values():
                chunks.extend([] for _ in range(grow))
        return np.array([self._index[str(u)] for u in uniques], dtype="int64")

    def add(self, features: pd.DataFrame, segment_ids: np.ndarray | pd.Series) -> None:
        """features: one part of valid customers (same columns as the feature table; any may be missing, as today);
        segment_ids: aligned row for row with `features` (strings; None/NA = customer not in any segment: skip the row).
        """
        ids = np.asarray(segment_ids, dtype=object)
        if ids.shape != (len(features),):
            raise ValueError(f"segment_ids has shape {ids.shape}, expected ({len(features)},) to match features")
        local, uniques = pd.factorize(ids)
        rows = np.flatnonzero(local >= 0)
        if len(rows) == 0:
            return
        codes = self._segment_indices(np.asarray(uniques))[local[rows]]
        n_segments = len(self._segments)

        def total(values: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=values, minlength=n_segments)

        self._sizes += np.bincount(codes, minlength=n_segments)
        monetary = _floats(features, "monetary")
        recency = _floats(features, "recency_days")
        consent = (
            features["marketing_consent"].fillna(False).astype(bool).to_numpy(dtype="float64")[rows]
            if "marketing_consent" in features
            else np.zeros(len(rows))
        )
        money = monetary.to_numpy()[rows]
        self._sums["monetary"] += total(np.nan_to_num(money, nan=0.0))
        self._sums["monetary_n"] += total((~np.isnan(money)).astype("float64"))
        self._sums["returns"] += total(np.nan_to_num(_floats(features, "returns").to_numpy()[rows], nan=0.0))
        self._sums["frequency"] += total(np.nan_to_num(_floats(features, "frequency").to_numpy()[rows], nan=0.0))
        self._sums["churned"] += total(_churned(recency).to_numpy(dtype="float64")[rows])
        self._sums["marketing_consent"] += total(consent)

        # Group the part's rows by segment once (stable, so each segment keeps its rows' order).
        order = np.argsort(codes, kind="stable")
        by_segment = codes[order]
        present = np.unique(by_segment)
        starts = np.searchsorted(by_segment, present, side="left")
        ends = np.searchsorted(by_segment, present, side="right")
        columns = {key: _floats(features, column) for key, column in _MEDIANS.items()}
        columns[_CLV] = _annual_spend(monetary, _floats(features, "tenure_days"))
        for key, series in columns.items():
            values = series.to_numpy(dtype="float64")[rows][order]
            for segment, start, end in zip(present, starts, ends, strict=True):
                chunk = values[start:end]
                chunk = chunk[~np.isnan(chunk)]
                if len(chunk):
                    chunks = self._values[key][segment]
                    chunks.append(chunk)
                    if len(chunks) >= _COMPACT_AFTER:
                        chunks[:] = [np.concatenate(chunks)]

        traits = trait_frame(features)
        for dim in DIMENSIONS:
            value_codes, values = pd.factorize(traits[dim].iloc[rows])
            known = value_codes >= 0
            if not known.any():
                continue
            pairs = pd.Series(codes[known] * len(values) + value_codes[known]).value_counts(sort=False)
            counter = self._traits[dim]
            for pair, count in pairs.items():
                segment, value = divmod(int(pair), len(values))
                counter[(segment, str(values[value]))] += int(count)

    def finish(
        self,
        labels: Mapping[str, str],
        *,
        lift_min_support: int,
        lift_min_share: float,
        previous: Mapping[str, Mapping[str, object]] | None = None,
    ) -> list[SegmentProfile]:
        """One profile per segment, largest first. ``previous`` maps segment id → its previous snapshot
        (``{"size": int, "distributions": {...}}``) for drift."""
        population = int(self._sizes.sum())
        if population == 0:
            return []
        # dimension -> segment index -> [(value, customers)], most frequent first
        counts: dict[str, dict[int, list[tuple[str, int]]]] = {}
        population_shares: dict[str, dict[str, float]] = {}
        for dim in DIMENSIONS:
            per_segment: dict[int, list[tuple[str, int]]] = {}
            overall: Counter[str] = Counter()
            for (segment, value), count in self._traits[dim].items():
                per_segment.setdefault(segment, []).append((value, count))
                overall[value] += count
            for pairs in per_segment.values():
                pairs.sort(key=lambda pair: (-pair[1], pair[0]))
            counts[dim] = per_segment
            known = sum(overall.values())
            population_shares[dim] = {value: count / known for value, count in overall.items()}

        profiles = []
        for segment, segment_id in enumerate(self._segments):
            size = int(self._sizes[segment])
            distributions: dict[str, dict[str, float]] = {}
            lifts: list[TraitLift] = []
            for dim in DIMENSIONS:
                pairs = counts[dim].get(segment, [])
                known = sum(count for _, count in pairs)
                if known == 0:
                    continue
                distributions[dim] = {value: round(count / known, 6) for value, count in pairs}
                for value, count in pairs:
                    share = count / known
                    pop_share = population_shares[dim].get(value, 0.0)
                    if count < lift_min_support or share < lift_min_share or pop_share <= 0:
                        continue
                    lifts.append(
                        TraitLift(dim, value, round(share, 6), round(pop_share, 6), round(share / pop_share, 4), count)
                    )
            lifts.sort(key=lambda t: (-t.lift, -t.support, t.dimension, t.value))
            numeric = self._numeric(segment, size)
            profiles.append(
                SegmentProfile(
                    segment_id=segment_id,
                    label=labels.get(segment_id, segment_id),
                    size=size,
                    share=round(size / population, 6),
                    numeric={k: round(v, 4) if np.isfinite(v) else v for k, v in numeric.items()},
                    distributions=distributions,
                    lifts=tuple(lifts),
                    drift=compute_drift(size, distributions, (previous or {}).get(segment_id)),
                )
            )
        profiles.sort(key=lambda p: (-p.size, p.segment_id))
        return profiles

    def _median(self, key: str, segment: int) -> float:
        chunks = self._values[key][segment]
        return float(np.median(np.concatenate(chunks))) if chunks else float("nan")

    def _numeric(self, segment: int, size: int) -> dict[str, float]:
        sums = {name: float(values[segment]) for name, values in self._sums.items()}
        medians = {key: self._median(key, segment) for key in _MEDIANS}
        lifetime = _expected_lifetime(sums["churned"] / size)
        return {
            **medians,
            "mean_monetary": sums["monetary"] / sums["monetary_n"] if sums["monetary_n"] else float("nan"),
            # CLV (a ranking estimate, not a forecast): median annual spend × expected lifetime.
            "clv": self._median(_CLV, segment) * lifetime,
            "return_rate": sums["returns"] / max(sums["frequency"] + sums["returns"], 1),
            "marketing_consent_share": sums["marketing_consent"] / size,
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
    assignments = segmentation.assignments[["customer_key", "segment_id"]]
    segmented = features.merge(assignments, on="customer_key", how="inner", validate="one_to_one")
    accumulator = ProfileAccumulator()
    accumulator.add(segmented, segmented["segment_id"])
    return accumulator.finish(
        segmentation.labels, lift_min_support=lift_min_support, lift_min_share=lift_min_share, previous=previous
    )


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
