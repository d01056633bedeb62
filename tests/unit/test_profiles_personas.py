"""Profiles (lift with a support floor, drift) and persona cards (names, citations, prompts, privacy)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_pipeline.config import PersonaSettings
from persona_pipeline.contracts import SegmentProfile
from persona_pipeline.personas import allocate, build_personas, build_prompts, scrub_prompt
from persona_pipeline.profiles import age_band, build_profiles
from persona_pipeline.segmentation.base import SegmentationResult


def population() -> tuple[pd.DataFrame, SegmentationResult]:
    rng = np.random.default_rng(4)
    n_wine, n_fashion = 300, 500
    n = n_wine + n_fashion
    features = pd.DataFrame(
        {
            "customer_key": [str(i) for i in range(n)],
            "age": np.r_[rng.integers(55, 75, n_wine), rng.integers(18, 30, n_fashion)].astype("float64"),
            "gender": np.r_[
                rng.choice(["female", "male"], n_wine), rng.choice(["female", "male"], n_fashion, p=[0.8, 0.2])
            ],
            "country": "United Kingdom",
            "region": np.r_[["Surrey"] * n_wine, ["Greater London"] * n_fashion],
            "income_band": np.r_[["150k+"] * n_wine, ["25-50k"] * n_fashion],
            "occupation": np.r_[["retired"] * n_wine, ["student"] * n_fashion],
            "household_size": 2.0,
            "preferred_channel": np.r_[["catalogue"] * n_wine, ["app"] * n_fashion],
            "preferred_device": np.r_[["desktop"] * n_wine, ["mobile"] * n_fashion],
            "top_category": np.r_[["wine"] * (n_wine - 3), ["toys"] * 3, ["fashion"] * n_fashion],
            "top_interest": np.r_[["home"] * n_wine, ["beauty"] * n_fashion],
            "frequency": np.r_[rng.integers(5, 15, n_wine), rng.integers(10, 40, n_fashion)],
            "monetary": np.r_[rng.uniform(2000, 5000, n_wine), rng.uniform(300, 900, n_fashion)],
            "aov": np.r_[rng.uniform(150, 300, n_wine), rng.uniform(20, 40, n_fashion)],
            "recency_days": np.r_[rng.uniform(10, 60, n_wine), rng.uniform(1, 20, n_fashion)],
            "tenure_days": 800.0,
            "engagement": 3.0,
            "returns": 0,
            "marketing_consent": True,
        }
    )
    assignments = pd.DataFrame(
        {"customer_key": features["customer_key"], "segment_id": ["s-wine"] * n_wine + ["s-fashion"] * n_fashion}
    )
    return features, SegmentationResult("test", assignments, {"s-wine": "Champions", "s-fashion": "Loyal"}, {})


def profiles(previous: dict | None = None) -> list[SegmentProfile]:
    features, segmentation = population()
    return build_profiles(features, segmentation, lift_min_support=20, lift_min_share=0.05, previous=previous)


def test_lift_is_segment_share_over_population_share() -> None:
    wine = next(p for p in profiles() if p.segment_id == "s-wine")
    lift = next(t for t in wine.lifts if t.dimension == "top_category" and t.value == "wine")
    assert lift.segment_share == pytest.approx(297 / 300, abs=1e-6)
    assert lift.population_share == pytest.approx(297 / 800, abs=1e-6)
    assert lift.lift == pytest.approx((297 / 300) / (297 / 800), rel=1e-3)
    assert lift.support == 297


def test_lift_ignores_tiny_support() -> None:
    wine = next(p for p in profiles() if p.segment_id == "s-wine")
    # toys is 100% of the population's toys buyers (a huge lift) but only 3 people: never reported.
    assert not any(t.value == "toys" for t in wine.lifts)


def test_profiles_sizes_shares_and_numbers() -> None:
    result = {p.segment_id: p for p in profiles()}
    assert result["s-fashion"].size == 500 and result["s-fashion"].share == pytest.approx(0.625)
    assert 55 <= result["s-wine"].numeric["median_age"] <= 75
    assert result["s-wine"].numeric["clv"] > result["s-fashion"].numeric["clv"]
    assert result["s-wine"].distributions["age_band"].keys() <= {"55-64", "65+"}
    assert all(p.drift is not None and p.drift.status == "new" for p in result.values())


def test_drift_against_previous_snapshot() -> None:
    previous = {
        "s-wine": {"size": 250, "distributions": {"top_category": {"wine": 0.80, "toys": 0.2}}},
    }
    wine = next(p for p in profiles(previous) if p.segment_id == "s-wine")
    assert wine.drift is not None and wine.drift.status == "continuing"
    assert wine.drift.size_change == pytest.approx(0.2)
    assert any(t.startswith("top_category=wine +") for t in wine.drift.moved_traits)


def test_age_bands() -> None:
    assert age_band(pd.Series([18.0, 24.9, 25.0, 64.0, 65.0, 99.0])).tolist() == [
        "18-24",
        "18-24",
        "25-34",
        "55-64",
        "65+",
        "65+",
    ]


def test_personas_are_distinct_cited_and_pii_free() -> None:
    personas = build_personas(profiles(), PersonaSettings(), method="test", min_segment_size=50)
    assert len({p.name for p in personas}) == len(personas) == 2
    wine = next(p for p in personas if p.segment_id == "s-wine")
    assert "Connoisseur" in wine.name and wine.name.startswith("Devoted")
    traits = {r.trait for r in wine.recommendations}
    assert "preferred_channel=catalogue" in traits
    assert "top_category=wine" in traits
    assert all(r.because for r in wine.recommendations)
    assert {r.kind for r in wine.recommendations} == {"marketing", "product"}
    for prompt in wine.prompts:
        assert "55-64" in prompt.prompt or "65+" in prompt.prompt
        assert not re.search(r"\d{4,}|@", prompt.prompt)


def test_min_segment_size_filters_personas() -> None:
    personas = build_personas(profiles(), PersonaSettings(), method="test", min_segment_size=400)
    assert [p.segment_id for p in personas] == ["s-fashion"]


def test_names_stay_stable_when_previous_names_are_given() -> None:
    personas = build_personas(
        profiles(), PersonaSettings(), method="t", min_segment_size=50, previous_names={"s-wine": "Cellar Keepers"}
    )
    assert next(p for p in personas if p.segment_id == "s-wine").name == "Cellar Keepers"


@pytest.mark.parametrize(
    ("text", "forbidden"),
    [
        ("contact jane.doe@example.com today", "jane.doe@example.com"),
        ("call +44 7700 900123 now", "7700"),
        ("customer 1234567 likes wine", "1234567"),
        ("lives at 221 Baker Street London", "221 Baker"),
        ("see https://example.com/x", "example.com"),
    ],
)
def test_scrubber_removes_pii_shapes(text: str, forbidden: str) -> None:
    assert forbidden not in scrub_prompt(text, 500)


def test_prompt_length_is_clamped() -> None:
    assert len(scrub_prompt("word " * 500, 120)) <= 120


@pytest.mark.parametrize(
    ("shares", "n", "expected"),
    [
        ({"female": 0.55, "male": 0.45}, 2, ["female", "male"]),
        ({"female": 0.9, "male": 0.1}, 2, ["female", "female"]),
        ({"a": 0.5, "b": 0.3, "c": 0.2}, 4, ["a", "a", "b", "c"]),
    ],
)
def test_allocation_follows_the_distribution(shares: dict[str, float], n: int, expected: list[str]) -> None:
    assert allocate(shares, n) == expected


@settings(max_examples=40, deadline=None)
@given(noise=st.floats(min_value=-0.01, max_value=0.01), size_noise=st.integers(min_value=-5, max_value=5))
def test_prompts_are_stable_under_small_drift(noise: float, size_noise: int) -> None:
    base = next(p for p in profiles() if p.segment_id == "s-fashion")
    drifted_dist = {
        dim: {v: max(0.0, s + noise) for v, s in shares.items()} for dim, shares in base.distributions.items()
    }
    drifted_numeric = {k: v * (1 + noise) for k, v in base.numeric.items()}
    drifted = replace(base, size=base.size + size_noise, distributions=drifted_dist, numeric=drifted_numeric)
    styles = ("portrait", "lifestyle")
    before = build_prompts("p", base, styles, 2, 1000)
    after = build_prompts("p", drifted, styles, 2, 1000)
    assert [p.prompt_hash for p in before] == [p.prompt_hash for p in after]
