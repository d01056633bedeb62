"""K-means segmentation over standardised behaviour and encoded categorical traits.

k is chosen by silhouette score on a sample (unless fixed); full KMeans is used up to ``minibatch_above`` rows
and MiniBatchKMeans beyond. Centroids are reported in the *raw* feature space (means of the numeric features
and shares of each category value), so the next run can place them in its own standardised space and match
segments even though its scaler differs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NUMERIC = ("age", "recency_days", "frequency", "monetary", "aov", "engagement", "tenure_days")
LOG_SCALED = ("frequency", "monetary", "aov", "engagement")
CATEGORICAL = ("top_category", "preferred_channel", "income_band", "gender")


@dataclass(frozen=True)
class FeatureSpace:
    """Column layout, centring and scaling of the k-means input."""

    columns: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray


def raw_matrix(features: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns (log-scaled where skewed, missing → median) and one-hot categorical columns."""
    parts = {}
    for name in NUMERIC:
        if name not in features:
            continue
        values = pd.to_numeric(features[name], errors="coerce").astype("float64")
        if name == "recency_days":
            values = values.fillna(values.max() if values.notna().any() else 0.0)
        values = values.fillna(values.median() if values.notna().any() else 0.0)
        parts[name] = np.log1p(values.clip(lower=0)) if name in LOG_SCALED else values
    frame = pd.DataFrame(parts, index=features.index)
    for name in CATEGORICAL:
        if name in features:
            dummies = pd.get_dummies(features[name].astype("string").fillna("unknown"), prefix=name, dtype="float64")
            frame = pd.concat([frame, dummies], axis=1)
    return frame


def fit_space(raw: pd.DataFrame) -> FeatureSpace:
    means = raw.mean().to_numpy()
    scales = raw.std(ddof=0).replace(0.0, 1.0).to_numpy()
    return FeatureSpace(tuple(raw.columns), means, scales)


def to_space(space: FeatureSpace, raw_centroids: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """Place raw centroids (possibly from another run) in ``space``; unknown columns count as 0."""
    placed = {}
    for seg, centroid in raw_centroids.items():
        vector = np.array([centroid.get(col, 0.0) for col in space.columns], dtype="float64")
        placed[seg] = (vector - space.means) / space.scales
    return placed


def choose_k(x: np.ndarray, k_range: range, seed: int, sample_size: int = 4_000) -> int:
    """k with the best silhouette score on a sample."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = x if len(x) <= sample_size else x[rng.choice(len(x), sample_size, replace=False)]
    best_k, best_score = k_range.start, -np.inf
    for k in k_range:
        if k >= len(sample):
            break
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(sample)
        score = float(silhouette_score(sample, labels, random_state=seed))
        log.debug("k=%d silhouette=%.4f", k, score)
        if score > best_score:
            best_k, best_score = k, score
    return best_k


@dataclass(frozen=True)
class KMeansOutcome:
    """Clusters with their stable ids, and how each matched yesterday's segments."""

    assignments: pd.DataFrame  # customer_key, segment_id
    labels: dict[str, str]
    centroids: dict[str, tuple[float, ...]]  # standardised space of this run
    raw_centroids: dict[str, dict[str, float]]  # raw feature space, kept for tomorrow's matching
    # segment id -> distance (standardised units) to the previous centroid it kept the id of, or, for a new
    # segment, to the nearest previous centroid (beyond ``MATCH_MAX_DISTANCE``); empty without a previous run.
    match_distances: dict[str, float]


MATCH_MAX_DISTANCE = 2.5


def segment_kmeans(
    features: pd.DataFrame,
    *,
    seed: int,
    k: int | None = None,
    k_range: range = range(5, 11),
    minibatch_above: int = 5_000_000,
    previous_centroids: dict[str, dict[str, float]] | None = None,
) -> KMeansOutcome:
    """Cluster customers and give each cluster a stable id (yesterday's id when it matches)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    # Canonical row order: k-means++ seeding, the silhouette sample and float sums all depend on row order, so
    # sorting by key makes the same customers yield the same clusters however the warehouse returned them.
    order = np.argsort(features["customer_key"].astype("string").to_numpy(dtype=object), kind="stable")
    features = features.iloc[order].reset_index(drop=True)
    raw = raw_matrix(features)
    space = fit_space(raw)
    x = ((raw.to_numpy(dtype="float64") - space.means) / space.scales).astype("float64")
    previous_placed = to_space(space, previous_centroids or {})
    init: np.ndarray | str = "k-means++"
    if previous_placed and (k is None or k == len(previous_placed)) and len(previous_placed) <= len(x):
        # Warm start from yesterday's segments: the same kind of customers land in the same cluster, so ids,
        # names and images carry over; k stays as it was unless fixed otherwise.
        n_clusters = len(previous_placed)
        init = np.vstack([previous_placed[seg] for seg in sorted(previous_placed)])
    else:
        n_clusters = k or choose_k(x, k_range, seed)
    n_clusters = max(1, min(n_clusters, len(x)))
    n_init = 1 if isinstance(init, np.ndarray) else 4
    model: KMeans | MiniBatchKMeans
    if len(x) > minibatch_above:
        model = MiniBatchKMeans(n_clusters=n_clusters, init=init, random_state=seed, batch_size=10_000, n_init=n_init)
    else:
        model = KMeans(n_clusters=n_clusters, init=init, random_state=seed, n_init=n_init)
    cluster = model.fit_predict(x)
    raw_by_cluster = raw.groupby(cluster).mean()
    current = {int(c): model.cluster_centers_[c] for c in range(n_clusters)}
    ids, distances = match_ids(
        current, previous_placed, {int(c): raw_by_cluster.loc[c].to_dict() for c in raw_by_cluster.index}
    )
    segment_ids = np.array([ids[int(c)] for c in cluster], dtype=object)
    assignments = pd.DataFrame({"customer_key": features["customer_key"].to_numpy(), "segment_id": segment_ids})
    labels = {ids[c]: f"Cluster {i + 1}" for i, c in enumerate(sorted(ids))}
    centroids = {ids[c]: tuple(float(v) for v in model.cluster_centers_[c]) for c in ids}
    raw_centroids = {
        ids[int(c)]: {k_: float(v) for k_, v in raw_by_cluster.loc[c].items()} for c in raw_by_cluster.index
    }
    return KMeansOutcome(
        assignments=assignments,
        labels=labels,
        centroids=centroids,
        raw_centroids=raw_centroids,
        match_distances={ids[c]: round(d, 4) for c, d in distances.items()},
    )


def match_ids(
    current: dict[int, np.ndarray],
    previous: dict[str, np.ndarray],
    current_raw: dict[int, dict[str, float]],
    max_distance: float = MATCH_MAX_DISTANCE,
) -> tuple[dict[int, str], dict[int, float]]:
    """Give each cluster the id of the previous segment it matches (optimal assignment), else a new id.

    A match needs the centroids to be within ``max_distance`` (standardised units); further apart, the segment
    is new and the old one is dissolved. Returns the ids and, per cluster, the distance to the previous centroid
    it matched (or to the nearest previous centroid when it is new); no distances without a previous run.
    """
    from scipy.optimize import linear_sum_assignment

    ids: dict[int, str] = {}
    distances: dict[int, float] = {}
    if previous:
        clusters = sorted(current)
        prev_ids = sorted(previous)
        cost = np.array([[float(np.linalg.norm(current[c] - previous[p])) for p in prev_ids] for c in clusters])
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= max_distance:
                ids[clusters[r]] = prev_ids[c]
                distances[clusters[r]] = float(cost[r, c])
        for r, cluster in enumerate(clusters):
            distances.setdefault(cluster, float(cost[r].min()))
    for cluster in sorted(current):
        if cluster not in ids:
            ids[cluster] = _new_id(current_raw[cluster], taken=set(ids.values()) | set(previous))
    return ids, distances


def _new_id(raw_centroid: dict[str, float], taken: set[str]) -> str:
    # Content-derived, so the same clustering of the same data yields the same ids on a rerun.
    text = ",".join(f"{k}={round(v, 1)}" for k, v in sorted(raw_centroid.items()))
    digest = hashlib.sha256(text.encode()).hexdigest()
    for start in range(0, len(digest) - 8):
        candidate = f"km-{digest[start : start + 8]}"
        if candidate not in taken:
            return candidate
    raise RuntimeError("could not derive a unique segment id")
