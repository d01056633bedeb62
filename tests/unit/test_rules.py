"""Rule-based segmentation: operators, first match wins, the default segment, validation errors, the k rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from persona_pipeline.config import SegmentationSettings, load_settings
from persona_pipeline.exceptions import ConfigError
from persona_pipeline.segmentation import segment_customers
from persona_pipeline.segmentation.rules import (
    FEATURES,
    assign_segments,
    describe,
    load_rules,
    parse_rules,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "persona_pipeline" / "examples" / "segments-rules.yaml"


def frame() -> pd.DataFrame:
    """Six customers covering numbers, text, flags and missing values."""
    return pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d", "e", "f"],
            "age": [22.0, 67.0, 41.0, np.nan, 35.0, 55.0],
            "monetary": [2500.0, 120.0, 900.0, 0.0, 2000.0, 60.0],
            "recency_days": [12.0, 400.0, 150.0, np.nan, 89.9, 30.0],
            "frequency": [20, 2, 6, 0, 9, 1],
            "household_size": [1.0, 2.0, 4.0, np.nan, 3.0, 1.0],
            "preferred_channel": ["app", "catalogue", "web", None, "phone", "store"],
            "income_band": ["<25k", "150k+", "50-75k", None, "100-150k", "25-50k"],
            "marketing_consent": [True, False, True, None, True, False],
        }
    )


def leaf(feature: str, op: str, value: Any = None, *, has_value: bool = True) -> dict[str, Any]:
    cond: dict[str, Any] = {"feature": feature, "op": op}
    if has_value:
        cond["value"] = value
    return cond


def run(when: dict[str, Any]) -> list[str]:
    """Segment ids for the six customers under a single rule ``hit`` (else ``rest``)."""
    rules = parse_rules({"segments": [{"id": "hit", "when": when}], "default": {"id": "rest"}})
    return list(assign_segments(frame(), rules))


def hits(*keys: str) -> list[str]:
    return ["hit" if k in keys else "rest" for k in "abcdef"]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (leaf("monetary", ">=", 2000), hits("a", "e")),
        (leaf("monetary", ">", 2000), hits("a")),
        (leaf("recency_days", "<", 90), hits("a", "e", "f")),  # missing recency never satisfies "<"
        (leaf("recency_days", "<=", 30), hits("a", "f")),
        (leaf("frequency", "==", 0), hits("d")),
        (leaf("preferred_channel", "==", "app"), hits("a")),
        (leaf("preferred_channel", "!=", "app"), hits("b", "c", "e", "f")),  # missing is not "!= app"
        (leaf("preferred_channel", "in", ["catalogue", "phone"]), hits("b", "e")),
        (leaf("income_band", "not_in", ["<25k", "25-50k"]), hits("b", "c", "e")),
        (leaf("age", "between", [35, 55]), hits("c", "e", "f")),  # inclusive at both ends
        (leaf("recency_days", "is_null", has_value=False), hits("d")),
        (leaf("recency_days", "is_null", False), hits("a", "b", "c", "e", "f")),
        (leaf("marketing_consent", "==", True), hits("a", "c", "e")),
        (leaf("age_band", "in", ["55-64", "65+"]), hits("b", "f")),  # derived like the profiles' bands
        (leaf("household", "==", "family"), hits("c", "e")),
        ({"not": leaf("recency_days", "<", 90)}, hits("b", "c", "d")),  # not(missing) matches
        (
            {"all": [leaf("monetary", ">=", 800), {"any": [leaf("age", "<", 30), leaf("recency_days", ">", 100)]}]},
            hits("a", "c"),
        ),
        ({"any": [leaf("frequency", "==", 0), leaf("preferred_channel", "==", "phone")]}, hits("d", "e")),
    ],
)
def test_operators_on_small_inputs(when: dict[str, Any], expected: list[str]) -> None:
    assert run(when) == expected


def test_first_match_wins_and_the_rest_get_the_default() -> None:
    rules = parse_rules(
        {
            "segments": [
                {"id": "vip", "label": "VIPs", "when": leaf("monetary", ">=", 2000)},
                {"id": "recent", "when": leaf("recency_days", "<", 100)},  # a and e are VIPs first
                {"id": "browsers", "when": leaf("frequency", "==", 0)},
            ],
            "default": {"id": "others", "label": "Others"},
        }
    )
    assert list(assign_segments(frame(), rules)) == ["vip", "others", "others", "browsers", "vip", "recent"]
    assert rules.labels == {"vip": "VIPs", "recent": "Recent", "browsers": "Browsers", "others": "Others"}
    assert describe(rules.rules[0].when) == "monetary >= 2000.0"


def test_default_segment_id_when_not_configured() -> None:
    rules = parse_rules({"segments": [{"id": "vip", "when": leaf("monetary", ">=", 2000)}]})
    assert set(assign_segments(frame(), rules)) == {"vip", "everyone-else"}


def rule_file(segment: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"segments": [{"id": "ok", "when": leaf("frequency", ">", 1)}, segment], **extra}


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        (rule_file({"id": "vip", "when": leaf("monetory", ">", 1)}), ["segments[1] (vip)", "when.feature", "monetory"]),
        (rule_file({"id": "vip", "when": leaf("monetary", "=>", 1)}), ["(vip)", "when.op", "'=>'", "between"]),
        (rule_file({"id": "vip", "when": leaf("region", ">", "A")}), ["(vip)", "needs a numeric feature"]),
        (rule_file({"id": "vip", "when": leaf("monetary", ">", "2000")}), ["(vip)", "when.value", "number"]),
        (rule_file({"id": "vip", "when": leaf("income_band", "==", 50)}), ["(vip)", "quote the value"]),
        (rule_file({"id": "vip", "when": leaf("age", "between", [60, 20])}), ["(vip)", "low <= high"]),
        (rule_file({"id": "vip", "when": leaf("age", "in", [])}), ["(vip)", "non-empty list"]),
        (rule_file({"id": "vip", "when": leaf("age", "==", [1, 2])}), ["(vip)", "use in / not_in"]),
        (rule_file({"id": "vip", "when": {"feature": "age", "op": ">"}}), ["(vip)", "when.value: missing"]),
        (rule_file({"id": "vip", "when": {"all": []}}), ["(vip)", "when.all", "non-empty list"]),
        (
            rule_file({"id": "vip", "when": {"all": [leaf("age", ">", 1), {"nope": 1}]}}),
            ["(vip)", "when.all[1]", "unknown key(s) ['nope']"],
        ),
        (rule_file({"id": "vip", "when": {"all": [leaf("age", ">", 1)], "any": []}}), ["(vip)", "only key"]),
        (rule_file({"id": "vip"}), ["(vip)", "'when' is missing"]),
        (rule_file({"id": "VIP!", "when": leaf("age", ">", 1)}), ["segments[1]", "not a valid segment id"]),
        (rule_file({"id": "ok", "when": leaf("age", ">", 1)}), ["segments[1] (ok)", "already used by segments[0]"]),
        (rule_file({"id": "vip", "when": leaf("age", ">", 1), "colour": "red"}), ["(vip)", "unknown key(s)"]),
        (rule_file({"id": "vip", "when": leaf("customer_key", "==", "c1")}), ["(vip)", "unknown feature"]),
        (rule_file({"id": "vip", "when": leaf("age", "is_null", "yes")}), ["(vip)", "true or false"]),
        (rule_file({"id": "rest", "when": leaf("age", ">", 1)}, default={"id": "rest"}), ["default segment's id"]),
        ({"segments": []}, ["non-empty list"]),
        ({"segments": [], "extra": 1}, ["unknown top-level key(s) ['extra']"]),
        (["not", "a", "mapping"], ["expected a mapping"]),
    ],
)
def test_invalid_rules_name_the_rule_and_key(raw: Any, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_rules(raw, source="my-rules.yaml")
    message = str(excinfo.value)
    assert message.startswith("my-rules.yaml")
    for fragment in fragments:
        assert fragment in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"segmentation\.rules_file: .*nope\.yaml does not exist"):
        load_rules(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("segments: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(broken)


def test_feature_missing_from_the_extract_is_a_config_error() -> None:
    rules = parse_rules({"segments": [{"id": "x", "when": leaf("occupation", "==", "retired")}]})
    with pytest.raises(ConfigError, match="feature 'occupation' is not among the extracted features"):
        assign_segments(frame(), rules)


def test_the_shipped_example_is_valid() -> None:
    rules = load_rules(EXAMPLE)
    assert [r.segment_id for r in rules.rules][:3] == ["vip", "lapsing-high-value", "first-timers"]
    assert rules.features() <= FEATURES
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert raw["default"]["id"] == rules.default_id


def population(n: int = 3_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(4, n)
    return pd.DataFrame(
        {
            "customer_key": [f"k{i}" for i in range(n)],
            "age": rng.integers(18, 85, n).astype("float64"),
            "monetary": frequency * rng.lognormal(4.0, 0.7, n),
            "frequency": frequency,
            "recency_days": np.where(frequency > 0, rng.exponential(150, n), np.nan),
            "tenure_days": rng.uniform(10, 2000, n),
            "preferred_channel": rng.choice(["web", "app", "store", "catalogue", "phone"], n),
            "preferred_device": rng.choice(["mobile", "desktop"], n),
            "household_size": rng.integers(1, 5, n).astype("float64"),
            "top_category": rng.choice(["toys", "wine", "books"], n),
        }
    )


def write_rules(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_rules_method_end_to_end_ids_are_rule_ids(tmp_path: Path) -> None:
    features = population()
    settings = SegmentationSettings(method="rules", min_segment_size=50, rules_file=str(EXAMPLE))
    result, raw_centroids = segment_customers(features, settings)
    assert raw_centroids == {}
    assert len(result.assignments) == len(features)
    assert set(result.labels) <= {r.segment_id for r in load_rules(EXAMPLE).rules} | {"everyone-else"}
    assert result.labels["everyone-else"] == "Everyone else"
    assert all(size >= 50 for size in result.sizes.values())
    # Row order does not matter: same customers, same segments.
    shuffled, _ = segment_customers(features.sample(frac=1.0, random_state=1), settings)
    merged = result.assignments.merge(shuffled.assignments, on="customer_key")
    assert (merged["segment_id_x"] == merged["segment_id_y"]).all()


def test_too_small_rule_segment_joins_the_default_segment(tmp_path: Path) -> None:
    features = population()
    path = write_rules(
        tmp_path,
        {
            "segments": [
                {"id": "tiny", "when": leaf("monetary", ">", float(features["monetary"].nlargest(5).min() - 1e-6))},
                {"id": "catalogue", "when": leaf("preferred_channel", "==", "catalogue")},
            ],
            "default": {"id": "rest", "label": "Everyone else"},
        },
    )
    result, _ = segment_customers(features, SegmentationSettings(method="rules", min_segment_size=50, rules_file=path))
    assert result.merged == {"tiny": "rest"}  # never into the other rule's segment
    assert set(result.sizes) == {"catalogue", "rest"}
    assert sum(result.sizes.values()) == len(features)


def test_rules_method_needs_a_rules_file() -> None:
    with pytest.raises(ConfigError, match=r"segmentation\.rules_file is required"):
        load_settings(environ={}, overrides={"segmentation.method": "rules"})
    settings = load_settings(
        environ={"PERSONA_SEGMENTATION__RULES_FILE": str(EXAMPLE)}, overrides={"segmentation.method": "rules"}
    )
    assert settings.segmentation.rules_file == str(EXAMPLE)


def test_evaluation_is_vectorised_over_large_inputs() -> None:
    # 200k customers through the example's eight rules: masks over whole columns, not a loop over rows.
    features = population(200_000, seed=9)
    rules = load_rules(EXAMPLE)
    ids = assign_segments(features, rules)
    assert len(ids) == 200_000
    expected_vip = (features["monetary"] >= 2000) & (features["recency_days"] < 90)
    assert (ids[expected_vip.to_numpy()] == "vip").all()
