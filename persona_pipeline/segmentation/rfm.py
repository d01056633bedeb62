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
    """R, F, M and FM scores for customers with at least one completed order (others get 0)."""
    frequency = pd.to_numeric(features["frequency"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    buyers = frequency > 0
    scores = {name: np.zeros(len(features), dtype="int8") for name in ("r", "f", "m", "fm")}
    if buyers.any():
        for name, column, higher in (("r", "recency_days", False), ("f", "frequency", True), ("m", "monetary", True)):
            values = pd.Series(pd.to_numeric(features[column], errors="coerce").to_numpy()[buyers])
            scores[name][buyers] = quintile_score(values, higher_is_better=higher).to_numpy()
        f, m = scores["f"][buyers].astype("int64"), scores["m"][buyers].astype("int64")
        scores["fm"][buyers] = np.floor((f + m) / 2 + 0.5).astype("int8")
    return pd.DataFrame(scores, index=features.index)


def _label_table() -> np.ndarray:
    """Index into :data:`LABELS` for every (R, FM) pair; row and column 0 (unscored) are Prospects."""
    table = np.full((6, 6), LABELS.index(PROSPECTS), dtype="int8")
    for r_score in range(1, 6):
        for fm_score in range(1, 6):
            code = f"{r_score}{fm_score}"
            table[r_score, fm_score] = next(
                LABELS.index(label) for r_pat, fm_pat, label in SEGMENT_MAP if re.fullmatch(r_pat + fm_pat, code)
            )
    return table


def label_scores(r: pd.Series, fm: pd.Series) -> pd.Series:
    """Map R and FM scores to segment labels with :data:`SEGMENT_MAP` (a missing or 0 score: Prospects).

    The 25 score pairs are resolved once into a lookup table; customers are then labelled by indexing it.
    """
    table = _label_table()
    r_idx = r.fillna(0).to_numpy(dtype="int64")
    fm_idx = fm.fillna(0).to_numpy(dtype="int64")
    return pd.Series(np.asarray(LABELS, dtype=object)[table[r_idx, fm_idx]], index=r.index, dtype="object")


def segment_rfm(features: pd.DataFrame) -> tuple[pd.Categorical, dict[str, str], dict[str, tuple[float, ...]]]:
    """An RFM segment id for every row; returns (ids aligned with the rows, labels, centroids in (R, F, M) space).

    Reads only ``recency_days``, ``frequency`` and ``monetary``, and works on small integer codes throughout:
    10 million customers cost a few bytes each.
    """
    scores = rfm_scores(features)
    label_index = _label_table()[scores["r"].to_numpy(), scores["fm"].to_numpy()]
    counts = np.bincount(label_index, minlength=len(LABELS))
    present = np.flatnonzero(counts)
    code_of = np.full(len(LABELS), -1, dtype="int64")
    code_of[present] = np.arange(len(present))
    ids = pd.Categorical.from_codes(code_of[label_index], categories=[segment_id_for(LABELS[i]) for i in present])
    sums = {axis: np.bincount(label_index, weights=scores[axis].to_numpy(), minlength=len(LABELS)) for axis in "rfm"}
    centroids = {segment_id_for(LABELS[i]): tuple(float(sums[axis][i] / counts[i]) for axis in "rfm") for i in present}
    labels = {segment_id_for(LABELS[i]): LABELS[i] for i in present}
    return ids, labels, centroids
