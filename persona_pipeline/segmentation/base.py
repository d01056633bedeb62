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


def enforce_min_size(
    assignments: pd.DataFrame,
    labels: dict[str, str],
    centroids: dict[str, tuple[float, ...]],
    min_size: int,
    *,
    method: str,
) -> SegmentationResult:
    """Merge every segment smaller than ``min_size`` into its nearest neighbour, smallest first.

    Merging continues until every remaining segment has at least ``min_size`` customers. If the whole population
    is smaller than ``min_size`` nothing can be published: every customer is suppressed (and counted).
    The merged segment keeps the larger segment's id, label and (size-weighted) centroid.
    """
    segment_ids = assignments["segment_id"].to_numpy(dtype=object).copy()
    sizes = {str(k): int(v) for k, v in pd.Series(segment_ids).value_counts().items()}
    points = {k: np.asarray(v, dtype="float64") for k, v in centroids.items() if k in sizes}
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
            segment_ids[segment_ids == smallest] = None
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
        segment_ids[segment_ids == smallest] = target
        merged[smallest] = target
        # A segment that earlier absorbed others and is now merged passes them on.
        for source, dest in list(merged.items()):
            if dest == smallest:
                merged[source] = target

    keep = pd.notna(segment_ids)
    final = pd.DataFrame(
        {
            "customer_key": assignments["customer_key"].to_numpy()[keep],
            "segment_id": pd.array(segment_ids[keep], dtype="string"),
        }
    )
    remaining = set(sizes)
    return SegmentationResult(
        method=method,
        assignments=final,
        labels={k: v for k, v in labels.items() if k in remaining},
        centroids={k: tuple(float(x) for x in points[k]) for k in remaining if k in points},
        merged=merged,
        suppressed=suppressed,
    )


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
