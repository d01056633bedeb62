"""RFM segmentation: quintile scores for recency, frequency and monetary value, and the standard segment map.

Scores use average ranks, so tied customers always get the same score and the result does not depend on row
order. Customers who have never completed an order cannot be scored and form the "Prospects" segment.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: (R score pattern, FM score pattern) → segment label, checked in order. R and FM are 1 (worst) … 5 (best).
SEGMENT_MAP: tuple[tuple[str, str, str], ...] = (
    ("5", "[4-5]", "Champions"),
    ("[3-4]", "[4-5]", "Loyal"),
    ("[4-5]", "[2-3]", "Potential Loyalist"),
    ("5", "1", "New"),
    ("4", "1", "Promising"),
    ("3", "3", "Need Attention"),
    ("3", "[1-2]", "About to Sleep"),
    ("[1-2]", "5", "Can't Lose Them"),
    ("[1-2]", "[3-4]", "At Risk"),
    ("1", "1", "Lost"),
    ("[1-2]", "[1-2]", "Hibernating"),
)
PROSPECTS = "Prospects"
LABELS: tuple[str, ...] = (*(label for _, _, label in SEGMENT_MAP), PROSPECTS)


def segment_id_for(label: str) -> str:
    """Stable id of an RFM segment: the slug of its label (the same label is the same segment every night)."""
    return "rfm-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def quintile_score(values: pd.Series, *, higher_is_better: bool) -> pd.Series:
    """Score 1..5 from the average-rank percentile (ties share a score)."""
    ranks = values.rank(method="average", pct=True, ascending=higher_is_better)
    return np.ceil(ranks * 5).clip(1, 5).astype("int64")


def rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """R, F, M and FM scores for customers with at least one completed order (others get NaN)."""
    buyers = features["frequency"] > 0
    scores = pd.DataFrame(index=features.index, columns=["r", "f", "m", "fm"], dtype="float64")
    if buyers.any():
        subset = features.loc[buyers]
        r = quintile_score(subset["recency_days"], higher_is_better=False)
        f = quintile_score(subset["frequency"], higher_is_better=True)
        m = quintile_score(subset["monetary"], higher_is_better=True)
        scores.loc[buyers, "r"] = r
        scores.loc[buyers, "f"] = f
        scores.loc[buyers, "m"] = m
        scores.loc[buyers, "fm"] = np.floor((f + m) / 2 + 0.5).astype("int64")
    return scores


def label_scores(r: pd.Series, fm: pd.Series) -> pd.Series:
    """Map R and FM scores to segment labels with :data:`SEGMENT_MAP`.

    The 25 score pairs are resolved once into a 5×5 lookup table; customers are then labelled by indexing it.
    """
    lookup = np.empty((6, 6), dtype=object)
    lookup[:, :] = PROSPECTS
    for r_score in range(1, 6):
        for fm_score in range(1, 6):
            code = f"{r_score}{fm_score}"
            lookup[r_score, fm_score] = next(
                label for r_pat, fm_pat, label in SEGMENT_MAP if re.fullmatch(r_pat + fm_pat, code)
            )
    r_idx = r.fillna(0).to_numpy(dtype="int64")
    fm_idx = fm.fillna(0).to_numpy(dtype="int64")
    return pd.Series(lookup[r_idx, fm_idx], index=r.index, dtype="object")


def segment_rfm(features: pd.DataFrame) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, ...]]]:
    """An RFM segment id for every row; returns (ids aligned with the rows, labels, centroids in (R, F, M) space).

    Reads only ``recency_days``, ``frequency`` and ``monetary``.
    """
    scores = rfm_scores(features)
    labels = label_scores(scores["r"], scores["fm"])
    segment_ids = labels.map({label: segment_id_for(label) for label in labels.unique()})
    centroid_frame = scores[["r", "f", "m"]].fillna(0.0).groupby(segment_ids.to_numpy()).mean()
    centroids = {str(seg): tuple(float(x) for x in row) for seg, row in centroid_frame.iterrows()}
    id_labels = {segment_id_for(label): label for label in labels.unique()}
    return segment_ids.to_numpy(dtype=object), id_labels, centroids
