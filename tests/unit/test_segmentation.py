"""Segmentation: RFM scores and labels, order independence, the k rule, k-means reproducibility and stable ids
(row order, matching distances, new and dissolved segments)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_pipeline.config import SegmentationSettings
from persona_pipeline.segmentation import identity_changes, segment_customers
from persona_pipeline.segmentation.base import SegmentationResult, enforce_min_size
from persona_pipeline.segmentation.kmeans import MATCH_MAX_DISTANCE
from persona_pipeline.segmentation.rfm import label_scores, quintile_score, segment_id_for


@pytest.mark.parametrize(
    ("r", "fm", "label"),
    [
        (5, 5, "Champions"),
        (5, 4, "Champions"),
        (4, 5, "Loyal"),
        (3, 4, "Loyal"),
        (5, 2, "Potential Loyalist"),
        (5, 1, "New"),
        (4, 1, "Promising"),
        (3, 3, "Need Attention"),
        (3, 1, "About to Sleep"),
        (1, 5, "Can't Lose Them"),
        (2, 3, "At Risk"),
        (1, 1, "Lost"),
        (2, 2, "Hibernating"),
        (None, None, "Prospects"),
    ],
)
def test_rfm_segment_map(r: int | None, fm: int | None, label: str) -> None:
    labels = label_scores(pd.Series([r], dtype="float64"), pd.Series([fm], dtype="float64"))
    assert labels.iloc[0] == label


def test_every_score_pair_has_a_label() -> None:
    r, fm = np.meshgrid(np.arange(1, 6), np.arange(1, 6))
    labels = label_scores(pd.Series(r.ravel(), dtype="float64"), pd.Series(fm.ravel(), dtype="float64"))
    assert "Prospects" not in set(labels)


def test_quintile_scores_tie_safely() -> None:
    scores = quintile_score(pd.Series([1, 1, 1, 1, 100]), higher_is_better=True)
    assert scores.tolist()[:4] == [scores.iloc[0]] * 4 and scores.iloc[4] == 5
    recency = quintile_score(pd.Series([1.0, 10, 100, 1000, 5000]), higher_is_better=False)
    assert recency.tolist() == [5, 4, 3, 2, 1]


def make_features(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(4, n)
    monetary = frequency * rng.lognormal(3.5, 0.6, n)
    return pd.DataFrame(
        {
            "customer_key": [f"c{i}" for i in range(n)],
            "age": rng.integers(18, 85, n).astype("float64"),
            "recency_days": np.where(frequency > 0, rng.exponential(120, n), np.nan),
            "frequency": frequency,
            "monetary": monetary,
            "aov": np.where(frequency > 0, monetary / np.maximum(frequency, 1), np.nan),
            "engagement": rng.exponential(3, n),
            "tenure_days": rng.uniform(30, 2000, n),
            "top_category": rng.choice(["wine", "fashion", "toys"], n),
            "preferred_channel": rng.choice(["web", "app", "store"], n),
            "income_band": rng.choice(["<25k", "50-75k", "150k+"], n),
            "gender": rng.choice(["female", "male"], n),
        }
    )


def test_rfm_assigns_everyone_and_ids_are_slugs() -> None:
    result, _ = segment_customers(make_features(2_000), SegmentationSettings(method="rfm", min_segment_size=10))
    assert len(result.assignments) == 2_000
    assert set(result.labels) <= {segment_id_for(label) for label in result.labels.values()}
    assert "rfm-champions" in result.labels


def test_rfm_is_independent_of_row_order() -> None:
    features = make_features(1_500)
    settings_ = SegmentationSettings(method="rfm", min_segment_size=40)
    first, _ = segment_customers(features, settings_)
    second, _ = segment_customers(features.sample(frac=1.0, random_state=3), settings_)
    merged = first.assignments.merge(second.assignments, on="customer_key")
    assert (merged["segment_id_x"] == merged["segment_id_y"]).all()


def test_small_segment_merges_into_nearest_neighbour() -> None:
    assignments = pd.DataFrame(
        {"customer_key": [str(i) for i in range(25)], "segment_id": ["a"] * 10 + ["b"] * 12 + ["c"] * 3}
    )
    centroids = {"a": (0.0, 0.0), "b": (10.0, 10.0), "c": (9.0, 9.0)}
    result = enforce_min_size(assignments, {"a": "A", "b": "B", "c": "C"}, centroids, 5, method="t")
    assert result.merged == {"c": "b"}
    assert result.sizes == {"b": 15, "a": 10}
    assert result.suppressed_customers == 0


def test_population_below_k_is_suppressed_entirely() -> None:
    assignments = pd.DataFrame({"customer_key": ["1", "2", "3"], "segment_id": ["a", "b", "b"]})
    result = enforce_min_size(assignments, {"a": "A", "b": "B"}, {"a": (0.0,), "b": (1.0,)}, 5, method="t")
    assert result.assignments.empty
    assert result.suppressed_customers == 3 and result.labels == {}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
    k=st.integers(min_value=2, max_value=60),
)
def test_k_anonymity_holds_for_any_input(sizes: list[int], k: int) -> None:
    segment_ids = [f"s{i}" for i, size in enumerate(sizes) for _ in range(size)]
    assignments = pd.DataFrame({"customer_key": [str(i) for i in range(len(segment_ids))], "segment_id": segment_ids})
    centroids = {f"s{i}": (float(i), float(size)) for i, size in enumerate(sizes)}
    labels = {f"s{i}": f"S{i}" for i in range(len(sizes))}
    result = enforce_min_size(assignments, labels, centroids, k, method="t")
    assert all(size >= k for size in result.sizes.values())
    assert len(result.assignments) + result.suppressed_customers == len(segment_ids)
    if len(segment_ids) >= k:
        assert result.suppressed_customers == 0


def test_kmeans_is_reproducible_and_keeps_ids_under_small_drift() -> None:
    settings_ = SegmentationSettings(method="kmeans", min_segment_size=20, seed=5)
    features = make_features(3_000, seed=1)
    first, raw = segment_customers(features, settings_)
    again, _ = segment_customers(features, settings_)
    assert first.assignments.equals(again.assignments)
    # Tomorrow: a few customers change a little, and some new ones arrive.
    tomorrow = pd.concat([features, make_features(100, seed=9).assign(customer_key=lambda f: "n" + f.customer_key)])
    tomorrow["monetary"] = tomorrow["monetary"] * 1.02
    second, _ = segment_customers(tomorrow, settings_, previous_raw_centroids=raw)
    assert set(second.labels) == set(first.labels)
    merged = first.assignments.merge(second.assignments, on="customer_key")
    assert (merged["segment_id_x"] == merged["segment_id_y"]).mean() > 0.9


@functools.cache
def _kmeans_reference() -> tuple[pd.DataFrame, SegmentationResult]:
    features = make_features(800, seed=2)
    result, _ = segment_customers(features, SegmentationSettings(method="kmeans", min_segment_size=20, seed=5))
    return features, result


@settings(max_examples=3, deadline=None)
@given(shuffle_seed=st.integers(min_value=0, max_value=10_000))
def test_kmeans_ids_do_not_depend_on_row_order(shuffle_seed: int) -> None:
    # Same seed, same customers in another order (as a warehouse may return them): same segment per customer.
    features, first = _kmeans_reference()
    shuffled, _ = segment_customers(
        features.sample(frac=1.0, random_state=shuffle_seed),
        SegmentationSettings(method="kmeans", min_segment_size=20, seed=5),
    )
    merged = first.assignments.merge(shuffled.assignments, on="customer_key", validate="one_to_one")
    assert len(merged) == len(features)
    assert (merged["segment_id_x"] == merged["segment_id_y"]).all()
    assert first.labels == shuffled.labels


def test_kmeans_records_matching_distances() -> None:
    settings_ = SegmentationSettings(method="kmeans", min_segment_size=20, seed=5)
    features = make_features(2_000, seed=4)
    first, raw = segment_customers(features, settings_)
    assert first.match_distances == {}  # nothing to match on a first run
    tomorrow = features.assign(monetary=features["monetary"] * 1.01)
    second, _ = segment_customers(tomorrow, settings_, previous_raw_centroids=raw)
    assert set(second.match_distances) == set(second.labels)
    assert all(0.0 <= d <= MATCH_MAX_DISTANCE for d in second.match_distances.values())
    # A centroid far from every previous one gets a new id, and its distance says why.
    far = {seg: {k: v + 50.0 for k, v in centroid.items()} for seg, centroid in raw.items()}
    third, _ = segment_customers(tomorrow, settings_, previous_raw_centroids=far)
    assert not set(third.labels) & set(far)
    assert all(d > MATCH_MAX_DISTANCE for d in third.match_distances.values())


@pytest.mark.parametrize(
    ("previous", "current", "new", "dissolved"),
    [
        (None, ["a", "b"], ("a", "b"), ()),  # first run: everything is new
        (["a", "b"], ["a", "b"], (), ()),
        (["a", "b", "c"], ["b", "d"], ("d",), ("a", "c")),
        (["a"], [], (), ("a",)),
    ],
)
def test_identity_changes(
    previous: list[str] | None, current: list[str], new: tuple[str, ...], dissolved: tuple[str, ...]
) -> None:
    changes = identity_changes(previous, current)
    assert changes.new == new and changes.dissolved == dissolved
    assert set(changes.continuing) == set(current) - set(new)
