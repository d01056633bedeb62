"""K-means segmentation over standardised behaviour and encoded categorical traits, sized for 10M customers.

The model is fitted on a deterministic sample and then every customer is assigned to it slice by slice:

* Sample: the ``sample_rows`` customers whose key hash (``pd.util.hash_array`` of the keys as strings) is
  smallest, in (hash, key) order. The hash does not depend on where a row sits, so the same customers are
  sampled, in the same order, however the warehouse returned them; k-means++ seeding, the silhouette sample and
  float sums all depend on row order, so this keeps the clusters reproducible. With ``sample_rows`` or fewer
  customers the sample is everyone, i.e. the fit is on all rows.
* Fit on the sample only: the feature space (log scaling, fill values for missing numbers, one-hot columns,
  means and scales), the choice of k (silhouette score, unless fixed), the warm start from the previous run's
  centroids and KMeans itself. A well-mixed sample of a few hundred thousand customers places the centroids as
  well as all of them would, at a fraction of the time and memory.
* Assign every customer in slices of ``slice_rows``: each slice is encoded with the sample's feature space
  unchanged (a category value the sample never saw gets no one-hot column) and labelled with ``predict``, so
  the one-hot matrix of all customers never exists at once; memory is bounded by the sample and one slice.

Centroids are reported in the *raw* feature space (means of the numeric features and shares of each category
value, accumulated over all customers, not just the sample), so the next run can place them in its own
standardised space and match segments even though its scaler differs. A cluster no customer is assigned to is
dropped.
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
class RawLayout:
    """How to encode customers as the raw k-means matrix, learned once (on the sample) and applied unchanged.

    ``fills`` gives each numeric column's value for missing entries, in raw units before any log scaling
    (recency: the maximum, others: the median, 0 when all are missing). ``categories`` gives, per categorical
    column, the values that get a one-hot column (missing counts as ``"unknown"``), in sorted order.
    """

    fills: dict[str, float]
    categories: dict[str, tuple[str, ...]]

    @property
    def columns(self) -> tuple[str, ...]:
        one_hot = (f"{name}_{value}" for name, values in self.categories.items() for value in values)
        return (*self.fills, *one_hot)


@dataclass(frozen=True)
class FeatureSpace:
    """Column layout, centring and scaling of the k-means input."""

    columns: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray


def _numeric(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").astype("float64")


def _categorical(column: pd.Series) -> pd.Series:
    return column.astype("string").fillna("unknown")


def fit_raw(features: pd.DataFrame) -> RawLayout:
    """Learn the fill values and one-hot columns of ``features`` (see :class:`RawLayout`)."""
    fills: dict[str, float] = {}
    for name in NUMERIC:
        if name not in features:
            continue
        values = _numeric(features[name])
        if not values.notna().any():
            fills[name] = 0.0
        else:
            fills[name] = float(values.max() if name == "recency_days" else values.median())
    categories = {
        name: tuple(sorted(str(v) for v in _categorical(features[name]).unique()))
        for name in CATEGORICAL
        if name in features
    }
    return RawLayout(fills, categories)


def transform_raw(layout: RawLayout, features: pd.DataFrame) -> np.ndarray:
    """The raw matrix of ``features`` in ``layout``: one row per customer, columns ``layout.columns``.

    Numeric columns are filled and log-scaled where skewed; a category value not in the layout gets all zeros.
    """
    n = len(features)
    out = np.zeros((n, len(layout.columns)), dtype="float64")
    for j, (name, fill) in enumerate(layout.fills.items()):
        values = _numeric(features[name]).fillna(fill).to_numpy(dtype="float64")
        out[:, j] = np.log1p(np.clip(values, 0.0, None)) if name in LOG_SCALED else values
    offset = len(layout.fills)
    rows = np.arange(n)
    for name, values in layout.categories.items():
        codes = pd.Index(values, dtype="object").get_indexer(_categorical(features[name]).to_numpy(dtype=object))
        seen = codes >= 0
        out[rows[seen], offset + codes[seen]] = 1.0
        offset += len(values)
    return out


def raw_matrix(features: pd.DataFrame, layout: RawLayout | None = None) -> pd.DataFrame:
    """Numeric columns (log-scaled where skewed, missing → median; recency → max) and one-hot categorical columns.

    The fills and one-hot columns come from ``layout`` when given, else from ``features`` itself.
    """
    layout = layout if layout is not None else fit_raw(features)
    return pd.DataFrame(transform_raw(layout, features), index=features.index, columns=list(layout.columns))


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

    segment_ids: np.ndarray  # object dtype: the segment id of each input row, in the input's row order
    labels: dict[str, str]
    centroids: dict[str, tuple[float, ...]]  # standardised space of this run
    raw_centroids: dict[str, dict[str, float]]  # raw feature space (all rows), kept for tomorrow's matching
    # segment id -> distance (standardised units) to the previous centroid it kept the id of, or, for a new
    # segment, to the nearest previous centroid (beyond ``MATCH_MAX_DISTANCE``); empty without a previous run.
    match_distances: dict[str, float]


MATCH_MAX_DISTANCE = 2.5


def _key_strings(keys: pd.Series) -> np.ndarray:
    # Keys as Python strings (object array); a missing key reads "<NA>" so it still hashes and sorts.
    return keys.astype("string").fillna("<NA>").to_numpy(dtype=object)


def key_hashes(keys: pd.Series, slice_rows: int = 200_000) -> np.ndarray:
    """``pd.util.hash_array`` of the keys as strings (uint64), computed a slice at a time to bound memory."""
    hashes = np.empty(len(keys), dtype="uint64")
    for start in range(0, len(keys), slice_rows):
        chunk = _key_strings(keys.iloc[start : start + slice_rows])
        hashes[start : start + len(chunk)] = pd.util.hash_array(chunk)
    return hashes


def sample_rows_of(keys: pd.Series, sample_rows: int, slice_rows: int = 200_000) -> np.ndarray:
    """Positions of the sample rows in canonical (hash, key) order (see the module docstring).

    The sample is the ``sample_rows`` rows with the smallest key hashes (ties at the cut broken by key), or every
    row when there are no more than ``sample_rows``; neither the choice nor the order depends on row order.
    """
    hashes = key_hashes(keys, slice_rows)
    if len(hashes) <= sample_rows:
        chosen = np.arange(len(hashes))
    else:
        cut = np.partition(hashes, sample_rows - 1)[sample_rows - 1]
        below = np.flatnonzero(hashes < cut)
        tied = np.flatnonzero(hashes == cut)
        if len(below) + len(tied) > sample_rows:
            tied = tied[np.argsort(_key_strings(keys.iloc[tied]), kind="stable")][: sample_rows - len(below)]
        chosen = np.concatenate([below, tied])
    # Sort by (hash, key): by key first, then stably by hash.
    chosen = chosen[np.argsort(_key_strings(keys.iloc[chosen]), kind="stable")]
    return chosen[np.argsort(hashes[chosen], kind="stable")]


def segment_kmeans(
    features: pd.DataFrame,
    *,
    seed: int,
    k: int | None = None,
    k_range: range = range(5, 11),
    sample_rows: int = 250_000,
    slice_rows: int = 200_000,
    previous_centroids: dict[str, dict[str, float]] | None = None,
) -> KMeansOutcome:
    """Cluster customers and give each cluster a stable id (yesterday's id when it matches).

    Fits on a deterministic sample of ``sample_rows`` customers and assigns every customer in slices of
    ``slice_rows`` (see the module docstring). ``segment_ids`` is aligned with the rows of ``features``.
    """
    from sklearn.cluster import KMeans

    if sample_rows < 1 or slice_rows < 1:
        raise ValueError(f"sample_rows and slice_rows must be positive, got {sample_rows} and {slice_rows}")
    if features.empty:
        raise ValueError("no customers to segment")
    columns = [name for name in (*NUMERIC, *CATEGORICAL) if name in features]
    sample = features.iloc[sample_rows_of(features["customer_key"], sample_rows, slice_rows)][columns]
    layout = fit_raw(sample)
    raw_sample = raw_matrix(sample, layout)
    space = fit_space(raw_sample)
    x = (raw_sample.to_numpy(dtype="float64") - space.means) / space.scales
    del sample, raw_sample
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
    model = KMeans(n_clusters=n_clusters, init=init, random_state=seed, n_init=n_init).fit(x)
    log.info("k-means: k=%d fitted on %d of %d customers", n_clusters, len(x), len(features))
    del x

    # Assign everyone a slice at a time, summing each cluster's raw rows for its all-customer raw centroid.
    cluster = np.empty(len(features), dtype="int32")
    sums = np.zeros((n_clusters, len(layout.columns)), dtype="float64")
    counts = np.zeros(n_clusters, dtype="int64")
    for start in range(0, len(features), slice_rows):
        raw = transform_raw(layout, features.iloc[start : start + slice_rows])
        assigned = model.predict((raw - space.means) / space.scales)
        cluster[start : start + len(raw)] = assigned
        counts += np.bincount(assigned, minlength=n_clusters)
        for j in range(raw.shape[1]):
            sums[:, j] += np.bincount(assigned, weights=raw[:, j], minlength=n_clusters)
    kept = [c for c in range(n_clusters) if counts[c] > 0]  # a cluster nobody was assigned to is dropped
    if len(kept) < n_clusters:
        log.info("k-means: %d cluster(s) got no customers and were dropped", n_clusters - len(kept))
    raw_means = {c: dict(zip(layout.columns, (sums[c] / counts[c]).tolist(), strict=True)) for c in kept}
    current = {c: model.cluster_centers_[c] for c in kept}
    ids, distances = match_ids(current, previous_placed, raw_means)
    lookup = np.array([ids.get(c) for c in range(n_clusters)], dtype=object)
    return KMeansOutcome(
        segment_ids=lookup[cluster],
        labels={ids[c]: f"Cluster {i + 1}" for i, c in enumerate(sorted(ids))},
        centroids={ids[c]: tuple(float(v) for v in model.cluster_centers_[c]) for c in ids},
        raw_centroids={ids[c]: raw_means[c] for c in kept},
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
