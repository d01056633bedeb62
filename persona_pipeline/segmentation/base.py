"""What every segmentation method returns, and the minimum-size (k-anonymity) rule applied to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SegmentationResult:
    """Customer → segment assignments plus what the privacy rule did to reach them.

    ``centroids`` holds each segment's position in the method's feature space; it is used to merge a too-small
    segment into its nearest neighbour and to match segments to the previous run's.
    """

    method: str
    assignments: pd.DataFrame  # columns: customer_key, segment_id (suppressed customers are absent)
    labels: dict[str, str]  # segment_id -> method's label
    centroids: dict[str, tuple[float, ...]]
    merged: dict[str, str] = field(default_factory=dict)  # too-small segment -> segment it joined
    suppressed: dict[str, int] = field(default_factory=dict)  # too-small segment -> customers dropped
    # k-means only: segment id -> distance to the previous run's centroid it was matched to (see kmeans.py)
    match_distances: dict[str, float] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        counts = self.assignments["segment_id"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    @property
    def suppressed_customers(self) -> int:
        return sum(self.suppressed.values())


@dataclass(frozen=True)
class MinSizePlan:
    """Where every segment's customers go under the minimum-size rule (decided from sizes and centroids only)."""

    destination: dict[str, str | None]  # segment -> segment it ends in (itself if kept), None = suppressed
    merged: dict[str, str]
    suppressed: dict[str, int]
    centroids: dict[str, tuple[float, ...]]  # the remaining segments' (size-weighted) centroids


def plan_min_size(sizes: dict[str, int], centroids: dict[str, tuple[float, ...]], min_size: int) -> MinSizePlan:
    """Merge every segment smaller than ``min_size`` into its nearest neighbour, smallest first.

    Merging continues until every remaining segment has at least ``min_size`` customers. If the whole population
    is smaller than ``min_size`` nothing can be published: every customer is suppressed (and counted).
    The merged segment keeps the larger segment's id and a size-weighted centroid. Only sizes and centroids
    are needed, so the plan costs nothing per customer; :meth:`RowSegments.from_ids` moves the customers.
    """
    sizes = {str(k): int(v) for k, v in sizes.items() if v > 0}
    points = {k: np.asarray(v, dtype="float64") for k, v in centroids.items() if k in sizes}
    destination: dict[str, str | None] = {seg: seg for seg in sizes}
    merged: dict[str, str] = {}
    suppressed: dict[str, int] = {}

    while sizes:
        # Deterministic order: smallest size first, then id.
        smallest = min(sizes, key=lambda seg: (sizes[seg], seg))
        if sizes[smallest] >= min_size:
            break
        others = [seg for seg in sizes if seg != smallest]
        if not others:
            suppressed[smallest] = sizes.pop(smallest)
            for seg, dest in destination.items():
                if dest == smallest:
                    destination[seg] = None
            break
        here = points.get(smallest)
        target = min(
            others,
            key=lambda seg: (
                float(np.linalg.norm(points[seg] - here)) if here is not None and seg in points else 0.0,
                -sizes[seg],
                seg,
            ),
        )
        if here is not None and target in points:
            total = sizes[target] + sizes[smallest]
            points[target] = (points[target] * sizes[target] + here * sizes[smallest]) / total
        sizes[target] += sizes.pop(smallest)
        points.pop(smallest, None)
        for seg, dest in destination.items():
            if dest == smallest:
                destination[seg] = target
        merged[smallest] = target
        # A segment that earlier absorbed others and is now merged passes them on.
        for source, dest in list(merged.items()):
            if dest == smallest:
                merged[source] = target

    return MinSizePlan(
        destination=destination,
        merged=merged,
        suppressed=suppressed,
        centroids={k: tuple(float(x) for x in points[k]) for k in sizes if k in points},
    )


@dataclass(frozen=True)
class RowSegments:
    """A segment id per customer row, aligned with the rows segmented (None = suppressed by the size rule).

    What the segment stage works with: no customer keys, so it costs one small array per customer however many
    columns the method read.
    """

    method: str
    segment_ids: pd.Categorical
    labels: dict[str, str]
    centroids: dict[str, tuple[float, ...]]
    merged: dict[str, str] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    match_distances: dict[str, float] = field(default_factory=dict)
    raw_centroids: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        codes = np.asarray(self.segment_ids.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(self.segment_ids.categories))
        return {str(seg): int(n) for seg, n in zip(self.segment_ids.categories, counts, strict=True) if n}

    @property
    def suppressed_customers(self) -> int:
        return sum(self.suppressed.values())

    @classmethod
    def from_ids(
        cls,
        method: str,
        segment_ids: np.ndarray | pd.Series | pd.Categorical,
        labels: dict[str, str],
        centroids: dict[str, tuple[float, ...]],
        min_size: int,
    ) -> RowSegments:
        """Apply the minimum-size rule to a method's raw ids (one per row)."""
        raw = (
            segment_ids
            if isinstance(segment_ids, pd.Categorical)
            else pd.Categorical(np.asarray(segment_ids, dtype=object))
        )
        codes = np.asarray(raw.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(raw.categories))
        sizes = {str(seg): int(n) for seg, n in zip(raw.categories, counts, strict=True)}
        plan = plan_min_size(sizes, centroids, min_size)
        remaining = sorted({d for d in plan.destination.values() if d is not None})
        position = {seg: i for i, seg in enumerate(remaining)}
        # Old code -> new code (-1 = suppressed), then one vectorised remap of every row.
        remap = np.array(
            [position.get(plan.destination.get(str(seg)) or "", -1) for seg in raw.categories] + [-1], dtype="int64"
        )
        new_codes = remap[codes]  # code -1 (missing) indexes the trailing -1
        ids = pd.Categorical.from_codes(new_codes, categories=remaining)
        return cls(
            method=method,
            segment_ids=ids,
            labels={k: v for k, v in labels.items() if k in position},
            centroids=plan.centroids,
            merged=plan.merged,
            suppressed=plan.suppressed,
        )

    def to_result(self, customer_keys: pd.Series | np.ndarray) -> SegmentationResult:
        """The keyed form: (customer_key, segment_id) of every customer kept, in row order."""
        keep = np.asarray(self.segment_ids.codes) >= 0
        assignments = pd.DataFrame(
            {
                "customer_key": np.asarray(customer_keys, dtype=object)[keep],
                "segment_id": pd.array(np.asarray(self.segment_ids, dtype=object)[keep], dtype="string"),
            }
        )
        return SegmentationResult(
            method=self.method,
            assignments=assignments,
            labels=self.labels,
            centroids=self.centroids,
            merged=self.merged,
            suppressed=self.suppressed,
            match_distances=self.match_distances,
        )


def enforce_min_size(
    assignments: pd.DataFrame,
    labels: dict[str, str],
    centroids: dict[str, tuple[float, ...]],
    min_size: int,
    *,
    method: str,
) -> SegmentationResult:
    """The minimum-size rule (:func:`plan_min_size`) applied to keyed assignments."""
    rows = RowSegments.from_ids(method, assignments["segment_id"].to_numpy(dtype=object), labels, centroids, min_size)
    return rows.to_result(assignments["customer_key"].to_numpy())


@dataclass(frozen=True)
class IdentityChanges:
    """Which segment ids appeared and which disappeared since the previous run."""

    new: tuple[str, ...]  # ids present today and not in the previous run (all of them on a first run)
    dissolved: tuple[str, ...]  # ids of the previous run that are gone today (merged, emptied or re-clustered)
    continuing: tuple[str, ...]


def identity_changes(previous: Iterable[str] | None, current: Iterable[str]) -> IdentityChanges:
    """Compare the published segment ids of two runs (``previous`` None = there was no previous run)."""
    before, now = set(previous or ()), set(current)
    return IdentityChanges(
        new=tuple(sorted(now - before)),
        dissolved=tuple(sorted(before - now)),
        continuing=tuple(sorted(now & before)),
    )
