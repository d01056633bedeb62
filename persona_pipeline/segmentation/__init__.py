"""Segmentation methods behind one function, with the minimum-size privacy rule applied to every method."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from persona_pipeline.config import SegmentationSettings
from persona_pipeline.exceptions import ConfigError
from persona_pipeline.segmentation.base import (
    IdentityChanges,
    RowSegments,
    SegmentationResult,
    enforce_min_size,
    identity_changes,
)

__all__ = [
    "IdentityChanges",
    "RowSegments",
    "SegmentationResult",
    "columns_needed",
    "enforce_min_size",
    "identity_changes",
    "segment_customers",
    "segment_rows",
]


def columns_needed(settings: SegmentationSettings) -> list[str]:
    """The feature columns ``settings.method`` reads: the segment stage loads only these for every customer."""
    if settings.method == "rfm":
        return ["recency_days", "frequency", "monetary"]
    if settings.method == "kmeans":
        from persona_pipeline.segmentation.kmeans import CATEGORICAL, NUMERIC

        return ["customer_key", *NUMERIC, *CATEGORICAL]
    if settings.method == "rules":
        from persona_pipeline.segmentation.rules import load_rules

        if not settings.rules_file:
            raise ConfigError("segmentation.rules_file is required when segmentation.method is 'rules'")
        derived_from = {"age_band": "age", "household": "household_size"}
        return sorted({derived_from.get(f, f) for f in load_rules(settings.rules_file).features()})
    raise ConfigError(f"segmentation.method {settings.method!r} is unknown; use 'rfm', 'kmeans' or 'rules'")


def segment_rows(
    features: pd.DataFrame,
    settings: SegmentationSettings,
    *,
    previous_raw_centroids: dict[str, dict[str, float]] | None = None,
) -> RowSegments:
    """A segment id for every row of ``features`` (None where the ``min_segment_size`` rule suppressed it).

    ``features`` needs only :func:`columns_needed`; the result is aligned with its rows. Each segment's raw
    centroid (k-means) is kept so tomorrow's segments can be matched to today's.
    """
    columns_needed(settings)  # a clear error for an unknown method or a missing rules file
    if features.empty:
        return RowSegments(settings.method, pd.Categorical(np.array([], dtype=object)), {}, {})
    raw_centroids: dict[str, dict[str, float]] = {}
    match_distances: dict[str, float] = {}
    if settings.method == "rfm":
        from persona_pipeline.segmentation.rfm import segment_rfm

        ids, labels, centroids = segment_rfm(features)
    elif settings.method == "kmeans":
        from persona_pipeline.segmentation.kmeans import segment_kmeans

        outcome = segment_kmeans(features, seed=settings.seed, previous_centroids=previous_raw_centroids)
        ids, labels, centroids = outcome.segment_ids, outcome.labels, outcome.centroids
        raw_centroids, match_distances = outcome.raw_centroids, outcome.match_distances
    else:
        from persona_pipeline.segmentation.rules import load_rules, segment_rules

        ids, labels, centroids = segment_rules(features, load_rules(str(settings.rules_file)))
    rows = RowSegments.from_ids(settings.method, ids, labels, centroids, settings.min_segment_size)
    return replace(
        rows,
        match_distances={k: v for k, v in match_distances.items() if k in rows.labels},
        raw_centroids={k: v for k, v in raw_centroids.items() if k in rows.labels},
    )


def segment_customers(
    features: pd.DataFrame,
    settings: SegmentationSettings,
    *,
    previous_raw_centroids: dict[str, dict[str, float]] | None = None,
) -> tuple[SegmentationResult, dict[str, dict[str, float]]]:
    """Segment the valid, consenting customers with ``settings.method`` and enforce ``min_segment_size``.

    Returns the keyed result and each segment's raw centroid (kept with the run so tomorrow's segments can be
    matched to today's).
    """
    rows = segment_rows(features, settings, previous_raw_centroids=previous_raw_centroids)
    keys = features["customer_key"] if "customer_key" in features else pd.Series([], dtype="string")
    return rows.to_result(keys), rows.raw_centroids
