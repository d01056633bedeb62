"""k-means fitted on a deterministic key-hash sample and assigned in slices: every row gets an id, the result does
not depend on row order or slicing, raw centroids cover all rows, unseen categories are harmless, warm starts
keep ids, and a population no larger than the sample is fitted on all of it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_pipeline.segmentation.kmeans import (
    LOG_SCALED,
    MATCH_MAX_DISTANCE,
    KMeansOutcome,
    sample_rows_of,
    segment_kmeans,
)

N = 20_000
SAMPLE = 5_000
SLICE = 3_000
TOP_CATEGORY = ("wine", "fashion", "toys", "garden", "books")
CHANNEL = ("web", "app", "store", "phone", "mail")


def clustered(n: int, seed: int = 0, *, missing: bool = True) -> pd.DataFrame:
    """Five well-separated groups of customers; ``group`` is the truth (not a k-means input).

    Each group has its own top category and channel, all about equally common, so a row whose value is unseen
    (all-zero one-hot columns) is equally far from every centroid in those columns and still joins its group.
    """
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 5, n)

    def around(centres: tuple[float, ...], spread: float) -> np.ndarray:
        return np.asarray(centres)[group] * np.exp(rng.normal(0.0, spread, n))

    frequency = np.rint(around((1, 5, 15, 40, 90), 0.05)).astype("int64")
    monetary = around((20, 200, 1_000, 5_000, 20_000), 0.05)
    recency = around((5, 60, 150, 300, 500), 0.03)
    aov = monetary / frequency
    gender = rng.choice(np.array(["female", "male", None], dtype=object), n, p=[0.48, 0.48, 0.04])
    if missing:
        recency[rng.random(n) < 0.03] = np.nan
        aov[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "customer_key": pd.array([f"c{i:06d}" for i in range(n)], dtype="string"),
            "group": group,
            "age": np.asarray([22.0, 35, 48, 61, 74])[group] + rng.normal(0, 1.0, n),
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
            "aov": aov,
            "engagement": around((0.5, 2, 5, 10, 20), 0.05),
            "tenure_days": np.asarray([100.0, 400, 800, 1_200, 1_800])[group] + rng.normal(0, 15, n),
            "top_category": pd.array(np.asarray(TOP_CATEGORY)[group], dtype="string"),
            "preferred_channel": pd.Categorical(np.asarray(CHANNEL)[group]),
            "income_band": rng.choice(["<25k", "50-75k", "150k+"], n),
            "gender": pd.array(gender, dtype="string"),
        }
    )


def run(features: pd.DataFrame, **kwargs: object) -> KMeansOutcome:
    options: dict[str, object] = {"seed": 7, "k": 5, "sample_rows": SAMPLE, "slice_rows": SLICE}
    options.update(kwargs)
    return segment_kmeans(features, **options)  # type: ignore[arg-type]


def hashes(features: pd.DataFrame) -> np.ndarray:
    """The sampling hash, written out from its definition: pd.util.hash_array of the keys as strings."""
    return pd.util.hash_array(features["customer_key"].astype(str).to_numpy(dtype=object))


def in_sample(features: pd.DataFrame, sample_rows: int = SAMPLE) -> np.ndarray:
    h = hashes(features)
    return h <= np.sort(h)[sample_rows - 1]


def by_key(features: pd.DataFrame, segment_ids: np.ndarray) -> pd.Series:
    return pd.Series(segment_ids, index=features["customer_key"].to_numpy()).sort_index()


def assert_recovers_groups(features: pd.DataFrame, outcome: KMeansOutcome) -> None:
    """Every row has an id, and ids and true groups correspond one to one."""
    ids = outcome.segment_ids
    assert ids.dtype == object and len(ids) == len(features)
    assert all(isinstance(i, str) for i in ids)
    assert set(ids) == set(outcome.labels) == set(outcome.centroids) == set(outcome.raw_centroids)
    pairs = pd.DataFrame({"group": features["group"].to_numpy(), "id": ids}).drop_duplicates()
    assert len(pairs) == pairs["group"].nunique() == pairs["id"].nunique() == 5


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return clustered(N)


@pytest.fixture(scope="module")
def outcome(features: pd.DataFrame) -> KMeansOutcome:
    return run(features)


def test_sample_is_the_smallest_key_hashes_in_hash_order(features: pd.DataFrame) -> None:
    chosen = sample_rows_of(features["customer_key"], SAMPLE, slice_rows=SLICE)
    h = hashes(features)
    assert len(chosen) == SAMPLE
    assert set(chosen.tolist()) == set(np.flatnonzero(in_sample(features)).tolist())
    assert (h[chosen][:-1] < h[chosen][1:]).all()
    shuffled = features.sample(frac=1.0, random_state=1).reset_index(drop=True)
    again = sample_rows_of(shuffled["customer_key"], SAMPLE, slice_rows=SLICE)
    assert shuffled["customer_key"].iloc[again].tolist() == features["customer_key"].iloc[chosen].tolist()
    # Fewer rows than the sample size: everyone, still in hash order.
    small = sample_rows_of(features["customer_key"].iloc[:100], SAMPLE)
    assert sorted(small.tolist()) == list(range(100))
    assert (h[:100][small][:-1] < h[:100][small][1:]).all()


def test_hash_ties_are_broken_by_key(features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    # 64-bit collisions are too rare to meet by chance: a coarse hash makes ties everywhere, the cut included.
    real = pd.util.hash_array
    monkeypatch.setattr(pd.util, "hash_array", lambda values: real(values) % np.uint64(7))
    keys = features["customer_key"].iloc[:1_000]
    coarse = pd.util.hash_array(keys.astype(str).to_numpy(dtype=object))
    expected = sorted(zip(coarse.tolist(), keys.tolist(), strict=True))[:300]
    for shuffle_seed in (0, 1, 2):
        shuffled = keys.sample(frac=1.0, random_state=shuffle_seed)
        chosen = sample_rows_of(shuffled, 300, slice_rows=128)
        assert shuffled.iloc[chosen].tolist() == [key for _, key in expected]


def test_every_row_gets_the_id_of_its_group(features: pd.DataFrame, outcome: KMeansOutcome) -> None:
    assert_recovers_groups(features, outcome)
    # Row alignment: each row's id is its group's, in the input's row order.
    group_id = pd.Series(outcome.segment_ids).groupby(features["group"].to_numpy()).first()
    assert (group_id.loc[features["group"]].to_numpy() == outcome.segment_ids).all()
    assert outcome.labels == {seg: f"Cluster {i + 1}" for i, seg in enumerate(outcome.labels)}
    assert outcome.match_distances == {}


def test_the_same_call_twice_gives_identical_output(features: pd.DataFrame, outcome: KMeansOutcome) -> None:
    again = run(features)
    assert np.array_equal(again.segment_ids, outcome.segment_ids)
    assert again.labels == outcome.labels
    assert again.centroids == outcome.centroids
    assert again.raw_centroids == outcome.raw_centroids
    assert again.match_distances == outcome.match_distances


@pytest.mark.parametrize("shuffle_seed", [1, 2])
def test_row_order_does_not_change_any_customer_id(
    features: pd.DataFrame, outcome: KMeansOutcome, shuffle_seed: int
) -> None:
    shuffled = features.sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)
    second = run(shuffled)
    assert by_key(shuffled, second.segment_ids).equals(by_key(features, outcome.segment_ids))
    assert second.labels == outcome.labels
    # Same sample in the same canonical order, so the same model, to the last bit.
    assert second.centroids == outcome.centroids
    # Raw centroids are sums over all rows in input order: equal up to float rounding.
    assert second.raw_centroids.keys() == outcome.raw_centroids.keys()
    for seg, raw in outcome.raw_centroids.items():
        assert second.raw_centroids[seg] == pytest.approx(raw, rel=1e-12, abs=1e-12)


def test_choosing_k_is_order_independent_and_finds_the_groups(features: pd.DataFrame) -> None:
    first = run(features, k=None, k_range=range(3, 8))
    shuffled = features.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = run(shuffled, k=None, k_range=range(3, 8))
    assert_recovers_groups(features, first)
    assert by_key(shuffled, second.segment_ids).equals(by_key(features, first.segment_ids))


def test_slice_size_does_not_change_the_result(features: pd.DataFrame, outcome: KMeansOutcome) -> None:
    whole = run(features, slice_rows=1_000_000)
    assert np.array_equal(whole.segment_ids, outcome.segment_ids)
    assert whole.centroids == outcome.centroids
    for seg, raw in outcome.raw_centroids.items():
        assert whole.raw_centroids[seg] == pytest.approx(raw, rel=1e-12, abs=1e-12)


def test_raw_centroids_are_means_over_all_rows_with_the_samples_fills(
    features: pd.DataFrame, outcome: KMeansOutcome
) -> None:
    sample = features[in_sample(features)]
    recency_fill = sample["recency_days"].max()
    # Fills come from the sample; the centroids are means over every row (not just the sample).
    raw = pd.DataFrame(
        {
            "age": features["age"],
            "recency_days": features["recency_days"].fillna(recency_fill),
            "frequency": features["frequency"].astype("float64"),
            "monetary": features["monetary"],
            "aov": features["aov"].fillna(sample["aov"].median()),
            "engagement": features["engagement"],
            "tenure_days": features["tenure_days"],
        }
    )
    for name in LOG_SCALED:
        raw[name] = np.log1p(raw[name])
    for name in ("top_category", "preferred_channel", "income_band", "gender"):
        values = features[name].astype("string").fillna("unknown")
        for value in sorted(values.unique()):
            raw[f"{name}_{value}"] = (values == value).astype("float64")
    expected = raw.groupby(outcome.segment_ids).mean()
    assert set(expected.index) == set(outcome.raw_centroids)
    for seg, centroid in outcome.raw_centroids.items():
        assert list(centroid) == list(raw.columns)
        assert centroid == pytest.approx(expected.loc[seg].to_dict(), rel=1e-9, abs=1e-12)
    # The sample alone gives different means: the test above would notice a sample-only centroid.
    sample_means = raw[in_sample(features)].groupby(outcome.segment_ids[in_sample(features)]).mean()
    seg = next(iter(outcome.raw_centroids))
    assert outcome.raw_centroids[seg] != pytest.approx(sample_means.loc[seg].to_dict(), rel=1e-9, abs=1e-12)


def test_category_value_missing_from_the_sample_is_harmless(features: pd.DataFrame) -> None:
    changed = features.copy()
    outside = np.flatnonzero(~in_sample(features))[:300]
    changed["top_category"] = changed["top_category"].astype("object")
    changed.loc[outside, "top_category"] = "never-seen"
    changed["top_category"] = changed["top_category"].astype("string")
    channel = changed["preferred_channel"].cat.add_categories(["kiosk", "unused"])
    channel.iloc[outside[:100]] = "kiosk"
    changed["preferred_channel"] = channel
    outcome = run(changed)
    assert_recovers_groups(changed, outcome)
    columns = set().union(*(raw.keys() for raw in outcome.raw_centroids.values()))
    assert not {"top_category_never-seen", "preferred_channel_kiosk", "preferred_channel_unused"} & columns
    # The unseen value counts as none of the known values in the raw centroids (all-zero one-hot columns).
    per_row = pd.Series(outcome.segment_ids).value_counts()
    unseen_rows = sum(
        per_row[seg] * (1 - sum(raw[f"top_category_{v}"] for v in TOP_CATEGORY))
        for seg, raw in outcome.raw_centroids.items()
    )
    assert unseen_rows == pytest.approx(300)


def test_warm_start_keeps_ids(features: pd.DataFrame, outcome: KMeansOutcome) -> None:
    newcomers = clustered(2_000, seed=9).assign(customer_key=lambda f: "n" + f["customer_key"])
    tomorrow = pd.concat([features, newcomers], ignore_index=True).sample(frac=1.0, random_state=4)
    tomorrow = tomorrow.reset_index(drop=True)
    tomorrow["monetary"] = tomorrow["monetary"] * 1.3
    # k is not fixed and the k range excludes 5: the warm start keeps yesterday's k (and clusters).
    second = run(tomorrow, k=None, k_range=range(6, 8), previous_centroids=outcome.raw_centroids)
    assert_recovers_groups(tomorrow, second)
    old = tomorrow["customer_key"].isin(features["customer_key"]).to_numpy()
    assert by_key(tomorrow[old], second.segment_ids[old]).equals(by_key(features, outcome.segment_ids))
    assert set(second.labels) == set(outcome.labels)
    assert set(second.match_distances) == set(outcome.labels)
    assert all(0 <= d <= MATCH_MAX_DISTANCE for d in second.match_distances.values())
    # Without the previous centroids the drifted groups would get new (content-derived) ids.
    fresh = run(tomorrow)
    assert not set(fresh.labels) & set(outcome.labels)


@pytest.mark.parametrize("sample_rows", [2_000, 2_001, 50_000])
def test_population_within_the_sample_is_fitted_on_all_rows(sample_rows: int) -> None:
    small = clustered(2_000, seed=5, missing=False)
    outcome = run(small, sample_rows=sample_rows, slice_rows=300)
    reference = run(small, sample_rows=2_000, slice_rows=300)
    assert np.array_equal(outcome.segment_ids, reference.segment_ids)
    assert outcome.centroids == reference.centroids
    assert outcome.raw_centroids == reference.raw_centroids
    assert_recovers_groups(small, outcome)
    # Fitted on all rows: each standardised centroid is its all-row raw centroid in the all-row space.
    raw = pd.DataFrame(outcome.raw_centroids).T
    columns = list(raw.columns)
    every = pd.DataFrame(
        {c: np.log1p(small[c]) if c in LOG_SCALED else small[c] for c in columns if c in small}
        | {
            c: (small[name].astype("string").fillna("unknown") == c[len(name) + 1 :]).astype("float64")
            for c in columns
            for name in ("top_category", "preferred_channel", "income_band", "gender")
            if c.startswith(f"{name}_")
        }
    )[columns]
    scales = every.std(ddof=0).replace(0.0, 1.0)
    for seg, centroid in outcome.centroids.items():
        assert np.allclose(centroid, (raw.loc[seg] - every.mean()) / scales, rtol=0, atol=1e-9)
    # Control: fitted on a real sample, the centroids sit elsewhere, so the check above can fail.
    sampled = run(small, sample_rows=500, slice_rows=300)
    raw = pd.DataFrame(sampled.raw_centroids).T[columns]
    assert not all(
        np.allclose(centroid, (raw.loc[seg] - every.mean()) / scales, rtol=0, atol=1e-9)
        for seg, centroid in sampled.centroids.items()
    )


def test_a_cluster_left_without_rows_is_dropped(features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.cluster import KMeans

    predict = KMeans.predict

    def never_zero(self: KMeans, x: np.ndarray) -> np.ndarray:
        labels = predict(self, x)
        return np.where(labels == 0, 1, labels)

    monkeypatch.setattr(KMeans, "predict", never_zero)
    outcome = run(features)
    assert len(outcome.labels) == len(outcome.centroids) == len(outcome.raw_centroids) == 4
    assert set(outcome.segment_ids) == set(outcome.labels)
    assert sorted(outcome.labels.values()) == [f"Cluster {i}" for i in range(1, 5)]


def test_bad_sizes_are_rejected(features: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="positive"):
        run(features, sample_rows=0)
    with pytest.raises(ValueError, match="positive"):
        run(features, slice_rows=0)
