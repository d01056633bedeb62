"""ProfileAccumulator: profiles gathered part by part equal build_profiles over the whole table."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from persona_pipeline.contracts import SegmentProfile
from persona_pipeline.profiles import DIMENSIONS, ProfileAccumulator, build_profiles, trait_frame
from persona_pipeline.segmentation.base import SegmentationResult

SEGMENTS = ("s-a", "s-b", "s-c", "s-d")
LABELS = {"s-a": "Champions", "s-b": "Loyal", "s-c": "At risk"}  # s-d and s-late fall back to their ids
LIFT = {"lift_min_support": 20, "lift_min_share": 0.05}
PREVIOUS: dict[str, dict[str, object]] = {
    "s-a": {"size": 700, "distributions": {"top_category": {"wine": 0.2, "fashion": 0.3}}},
    "s-c": {"size": 500, "distributions": {}},
}
CUT = (0, 500, 500, 1700, 2400)  # part boundaries: 500 rows, an empty part, 1200 rows, 700 rows


def customers(n: int = 2400, seed: int = 11) -> pd.DataFrame:
    """Feature rows with the gaps the real table has, plus a ``segment`` column (None = in no segment)."""
    rng = np.random.default_rng(seed)

    def pick(values: Sequence[str], p: Sequence[float] | None = None) -> np.ndarray:
        return rng.choice(np.asarray(values, dtype=object), n, p=p)

    segment = rng.choice(len(SEGMENTS), n, p=[0.4, 0.3, 0.2, 0.1])
    favourite = np.array(["wine", "fashion", "toys", "garden"], dtype=object)[segment]
    frame = pd.DataFrame(
        {
            "customer_key": [f"cust-{i:06d}" for i in range(n)],
            "age": rng.integers(18, 90, n).astype("float64"),
            "gender": pick(["female", "male", "non-binary"], [0.48, 0.48, 0.04]),
            "country": pick(["United Kingdom", "France", "Germany"]),
            "region": pick(["London", "Scotland", "Bavaria", "Occitanie", "Wales", "Berlin"]),
            "income_band": pick(["<25k", "25-50k", "50-100k", "100-150k", "150k+"]),
            "occupation": pick(["student", "manager", "retired", "nurse", "engineer"]),
            "household_size": rng.integers(1, 6, n).astype("float64"),
            "preferred_channel": pick(["web", "app", "store", "catalogue"]),
            "preferred_device": pick(["mobile", "desktop", "tablet"]),
            "top_category": np.where(rng.random(n) < 0.6, favourite, pick(["wine", "fashion", "toys", "garden"])),
            "top_interest": pick(["home", "beauty", "sports", "books"]),
            "frequency": rng.integers(0, 30, n),
            "monetary": rng.gamma(2.0, 300.0, n).round(2),
            "aov": rng.uniform(10, 200, n),
            "recency_days": rng.uniform(0, 400, n),
            "tenure_days": rng.uniform(30, 2000, n),
            "engagement": rng.exponential(2.0, n),
            "returns": rng.integers(0, 4, n),
            "marketing_consent": rng.random(n) < 0.6,
        }
    )
    no_orders = frame["frequency"] == 0
    frame.loc[no_orders, ["recency_days", "aov"]] = np.nan
    frame.loc[no_orders, "monetary"] = 0.0
    frame.loc[rng.random(n) < 0.05, "age"] = np.nan
    frame.loc[rng.random(n) < 0.04, "tenure_days"] = np.nan
    frame.loc[rng.random(n) < 0.05, "region"] = None
    frame.loc[rng.random(n) < 0.03, "household_size"] = np.nan
    ids = np.asarray(SEGMENTS, dtype=object)[segment]
    ids[rng.random(n) < 0.08] = None  # suppressed customers
    ids[n - 60 :] = "s-late"  # a segment that only the last part has
    frame["segment"] = ids
    return frame


def split(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Uneven parts; the third lacks two columns (as a part read from another source might)."""
    parts = [frame.iloc[lo:hi] for lo, hi in pairwise(CUT)]
    parts[2] = parts[2].drop(columns=["engagement", "returns"])
    return parts


def accumulate(parts: Sequence[pd.DataFrame], previous: dict[str, dict[str, object]] | None = PREVIOUS):
    accumulator = ProfileAccumulator()
    for part in parts:
        accumulator.add(part.drop(columns=["segment"]), part["segment"])
    return accumulator.finish(LABELS, **LIFT, previous=previous)


def whole(frame: pd.DataFrame, previous: dict[str, dict[str, object]] | None = PREVIOUS) -> list[SegmentProfile]:
    segmented = frame[frame["segment"].notna()]
    assignments = pd.DataFrame({"customer_key": segmented["customer_key"], "segment_id": segmented["segment"]})
    result = SegmentationResult("test", assignments, LABELS, {})
    return build_profiles(frame.drop(columns=["segment"]), result, **LIFT, previous=previous)


def assert_same(actual: list[SegmentProfile], expected: list[SegmentProfile]) -> None:
    assert [p.segment_id for p in actual] == [p.segment_id for p in expected]
    for got, want in zip(actual, expected, strict=True):
        assert (got.label, got.size, got.share) == (want.label, want.size, want.share)
        assert got.distributions == want.distributions
        assert [list(d) for d in got.distributions.values()] == [list(d) for d in want.distributions.values()]
        assert got.lifts == want.lifts
        assert got.drift == want.drift
        assert list(got.numeric) == list(want.numeric)
        for key, value in want.numeric.items():
            if math.isnan(value):
                assert math.isnan(got.numeric[key]), (got.segment_id, key)
            else:
                assert got.numeric[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (got.segment_id, key)


def test_parts_give_the_profiles_of_the_whole_table() -> None:
    frame = customers()
    parts = split(frame)
    assert len(parts[1]) == 0 and parts[2]["segment"].isna().any()
    expected = whole(pd.concat(parts, ignore_index=True))
    actual = accumulate(parts)
    assert_same(actual, expected)
    # the fixture exercises what it should: lifts, drift, a late segment, label fallback, missing columns
    by_id = {p.segment_id: p for p in actual}
    assert set(by_id) == {*SEGMENTS, "s-late"}
    assert by_id["s-late"].size == 60 and by_id["s-late"].label == "s-late"
    assert any(t.dimension == "top_category" for t in by_id["s-a"].lifts)
    assert by_id["s-a"].drift is not None and by_id["s-a"].drift.moved_traits
    assert by_id["s-c"].drift is not None and by_id["s-c"].drift.status == "continuing"
    assert sum(p.size for p in actual) == int(frame["segment"].notna().sum())


def test_numbers_match_a_direct_groupby() -> None:
    """Checked against pandas on the whole table, independently of build_profiles."""
    frame = customers()
    segmented = frame[frame["segment"].notna()]
    groups = segmented.groupby("segment")
    profiles = {p.segment_id: p for p in accumulate([frame.iloc[:900], frame.iloc[900:]], previous=None)}
    medians = groups[["age", "aov", "recency_days", "tenure_days", "engagement", "frequency"]].median()
    traits = trait_frame(segmented)
    for segment_id, profile in profiles.items():
        assert profile.size == len(groups.get_group(segment_id))
        assert profile.share == round(profile.size / len(segmented), 6)
        row = medians.loc[segment_id]
        assert profile.numeric["median_age"] == round(row["age"], 4)
        assert profile.numeric["aov"] == round(row["aov"], 4)
        assert profile.numeric["tenure_days"] == round(row["tenure_days"], 4)
        assert profile.numeric["frequency"] == round(row["frequency"], 4)
        assert profile.numeric["mean_monetary"] == pytest.approx(groups.get_group(segment_id)["monetary"].mean(), 1e-6)
        for dim in DIMENSIONS:
            counts = traits.loc[segmented["segment"] == segment_id, dim].value_counts()
            shares = {str(k): round(v / counts.sum(), 6) for k, v in counts.items()}
            assert profile.distributions.get(dim, {}) == shares
            # deterministic order: most frequent first, ties by value
            order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            assert list(profile.distributions.get(dim, {})) == [str(k) for k, _ in order]


def test_part_order_does_not_matter() -> None:
    parts = split(customers())
    forward = accumulate(parts)
    assert_same(accumulate(parts[::-1]), forward)
    assert_same(accumulate([parts[3], parts[0], parts[1], parts[2]]), forward)
    in_order = accumulate([customers()])
    shuffled = customers().sample(frac=1.0, random_state=3)
    assert_same(accumulate([shuffled.iloc[:1000], shuffled.iloc[1000:1001], shuffled.iloc[1001:]]), in_order)


def test_rows_without_a_segment_are_ignored() -> None:
    frame = customers()
    segmented = frame[frame["segment"].notna()]
    junk = frame.iloc[:300].copy()
    junk["segment"] = [None, pd.NA, np.nan] * 100
    junk["top_category"] = "only-in-unsegmented-rows"
    junk["monetary"] = 1e9
    junk["age"] = 200.0
    mixed = pd.concat([junk, segmented.iloc[:1000]]).sample(frac=1.0, random_state=5)
    with_junk = accumulate([mixed, junk, segmented.iloc[1000:]])
    assert_same(with_junk, accumulate([segmented]))
    assert not any("only-in-unsegmented-rows" in p.distributions["top_category"] for p in with_junk)
    assert all(p.numeric["mean_monetary"] < 1e6 for p in with_junk)


def test_nothing_segmented_gives_no_profiles() -> None:
    assert ProfileAccumulator().finish(LABELS, **LIFT) == []
    frame = customers()
    accumulator = ProfileAccumulator()
    accumulator.add(frame.iloc[:0], np.array([], dtype=object))
    accumulator.add(frame.iloc[:50], np.full(50, None, dtype=object))
    assert accumulator.finish(LABELS, **LIFT) == []


def test_segment_ids_must_be_aligned_with_the_part() -> None:
    frame = customers()
    with pytest.raises(ValueError, match="segment_ids"):
        ProfileAccumulator().add(frame.iloc[:10], frame["segment"].iloc[:9])


def _reachable(obj: object, seen: set[int] | None = None) -> Iterator[object]:
    """Every object reachable from ``obj`` through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, dict):
        children: list[object] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        children = []
    for child in children:
        yield from _reachable(child, seen)


def test_accumulator_keeps_aggregates_not_the_parts() -> None:
    frame = customers(n=6000, seed=2)
    accumulator = ProfileAccumulator()
    for lo in range(0, len(frame), 1500):
        part = frame.iloc[lo : lo + 1500]
        accumulator.add(part.drop(columns=["segment"]), part["segment"])
    held = list(_reachable(accumulator))
    assert not [o for o in held if isinstance(o, pd.DataFrame | pd.Series | pd.Index)]
    arrays = [o for o in held if isinstance(o, np.ndarray)]
    assert all(a.dtype != object for a in arrays)
    strings = {o for o in held if isinstance(o, str)}
    assert not strings & set(frame["customer_key"])  # no customer keys
    assert len(strings) < 100  # segment ids and trait values only, not one string per row
    # at most one float64 per customer for each of the 8 median columns (7 features + annual spend), plus totals
    kept = sum(a.nbytes for a in arrays)
    assert kept <= 8 * 8 * len(frame) + 16_384
    assert kept < frame.memory_usage(deep=True).sum() / 3
