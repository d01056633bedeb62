"""Segmentation methods behind one function, with the minimum-size privacy rule applied to every method."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from persona_pipeline.config import SegmentationSettings
from persona_pipeline.exceptions import ConfigError
from persona_pipeline.segmentation.base import (
    IdentityChanges,
    SegmentationResult,
    enforce_min_size,
    identity_changes,
)

__all__ = ["IdentityChanges", "SegmentationResult", "enforce_min_size", "identity_changes", "segment_customers"]


def segment_customers(
    features: pd.DataFrame,
    settings: SegmentationSettings,
    *,
    previous_raw_centroids: dict[str, dict[str, float]] | None = None,
) -> tuple[SegmentationResult, dict[str, dict[str, float]]]:
    """Segment the valid, consenting customers with ``settings.method`` and enforce ``min_segment_size``.

    Returns the result and each segment's raw centroid (kept with the run so tomorrow's segments can be matched
    to today's).
    """
    raw_centroids: dict[str, dict[str, float]] = {}
    match_distances: dict[str, float] = {}
    if features.empty:
        empty = pd.DataFrame({"customer_key": pd.Series(dtype="string"), "segment_id": pd.Series(dtype="string")})
        return SegmentationResult(settings.method, empty, {}, {}), {}
    if settings.method == "rfm":
        from persona_pipeline.segmentation.rfm import segment_rfm

        assignments, labels, centroids = segment_rfm(features)
    elif settings.method == "kmeans":
        from persona_pipeline.segmentation.kmeans import segment_kmeans

        outcome = segment_kmeans(features, seed=settings.seed, previous_centroids=previous_raw_centroids)
        assignments, labels, centroids = outcome.assignments, outcome.labels, outcome.centroids
        raw_centroids, match_distances = outcome.raw_centroids, outcome.match_distances
    elif settings.method == "rules":
        from persona_pipeline.segmentation.rules import load_rules, segment_rules

        if not settings.rules_file:
            raise ConfigError("segmentation.rules_file is required when segmentation.method is 'rules'")
        assignments, labels, centroids = segment_rules(features, load_rules(settings.rules_file))
    else:
        raise ConfigError(f"segmentation.method {settings.method!r} is unknown; use 'rfm', 'kmeans' or 'rules'")
    result = enforce_min_size(assignments, labels, centroids, settings.min_segment_size, method=settings.method)
    if match_distances:
        result = replace(result, match_distances={k: v for k, v in match_distances.items() if k in result.labels})
    return result, {k: v for k, v in raw_centroids.items() if k in result.labels}
