"""Rule-based segmentation: segments a marketer defines as YAML conditions over customer features.

A rules file lists segments in priority order; each has an id (its stable segment id), a label and a ``when``
condition. A customer joins the first segment whose condition holds; everyone else joins the default segment::

    segments:
      - id: vip
        label: VIPs
        when:
          all:
            - {feature: monetary, op: ">=", value: 2000}
            - {feature: recency_days, op: "<", value: 90}
    default: {id: everyone-else, label: Everyone else}

Conditions nest with ``all`` (and), ``any`` (or) and ``not``; a leaf compares one feature with ``==``, ``!=``,
``<``, ``<=``, ``>``, ``>=``, ``in``, ``not_in``, ``between`` (inclusive ``[low, high]``) or ``is_null``.
A missing value never satisfies a comparison (use ``is_null`` to target missing values); ``not`` negates
whatever its condition says, so ``not`` of a comparison does match customers with a missing value.

The file is validated before use, and every error names the file, the segment id and the key path
(``segments[1] (vip): when.all[0].op: ...``). Evaluation is vectorised: one boolean mask per condition, and
``numpy.select`` picks the first matching segment per customer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from persona_pipeline.contracts import FEATURE_COLUMNS
from persona_pipeline.exceptions import ConfigError

FeatureKind = Literal["numeric", "boolean", "categorical"]

NUMERIC_FEATURES: frozenset[str] = frozenset(
    {
        "age",
        "household_size",
        "tenure_days",
        "recency_days",
        "frequency",
        "monetary",
        "aov",
        "returns",
        "events_90d",
        "engagement",
    }
)
BOOLEAN_FEATURES: frozenset[str] = frozenset({"marketing_consent", "profiling_consent"})
#: Derived features rules may use besides the extracted columns (same quantisation as profiles and prompts).
DERIVED_FEATURES: frozenset[str] = frozenset({"age_band", "household"})
#: The customer key is an identifier, not a trait: rules may not single customers out by it.
FEATURES: frozenset[str] = frozenset(FEATURE_COLUMNS) - {"customer_key"} | DERIVED_FEATURES

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
ORDERED = ("<", "<=", ">", ">=", "between")
OPERATORS = (*COMPARISONS, "in", "not_in", "between", "is_null")
DEFAULT_SEGMENT_ID = "everyone-else"
DEFAULT_SEGMENT_LABEL = "Everyone else"
_SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

Scalar = float | str | bool


def feature_kind(feature: str) -> FeatureKind:
    if feature in NUMERIC_FEATURES:
        return "numeric"
    if feature in BOOLEAN_FEATURES:
        return "boolean"
    return "categorical"


# -- the rule tree --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """A leaf condition: ``feature op value``."""

    feature: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Compare | AllOf | AnyOf | Not


@dataclass(frozen=True)
class Rule:
    """One segment: stable id, label and the condition its customers meet."""

    segment_id: str
    label: str
    when: Condition


@dataclass(frozen=True)
class RuleSet:
    """Rules in priority order (first match wins) and the segment for everyone else."""

    rules: tuple[Rule, ...]
    default_id: str = DEFAULT_SEGMENT_ID
    default_label: str = DEFAULT_SEGMENT_LABEL
    source: str = "rules"

    @property
    def labels(self) -> dict[str, str]:
        return {**{r.segment_id: r.label for r in self.rules}, self.default_id: self.default_label}

    def features(self) -> set[str]:
        """Every feature some rule reads."""
        found: set[str] = set()

        def walk(condition: Condition) -> None:
            if isinstance(condition, Compare):
                found.add(condition.feature)
            elif isinstance(condition, Not):
                walk(condition.condition)
            else:
                for child in condition.conditions:
                    walk(child)

        for rule in self.rules:
            walk(rule.when)
        return found


# -- loading and validation -----------------------------------------------------------------------------------


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file; errors name the file, the segment and the key."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        example = Path(__file__).resolve().parents[1] / "examples" / "segments-rules.yaml"
        raise ConfigError(
            f"segmentation.rules_file: {file} does not exist (relative paths start at the working directory; "
            f"an example ships at {example})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"segmentation.rules_file: {file} is not valid YAML: {exc}") from None
    return parse_rules(raw, source=str(file))


def parse_rules(raw: Any, *, source: str = "rules") -> RuleSet:
    """Validate the parsed YAML of a rules file into a :class:`RuleSet`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping with a 'segments' list, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"segments", "default"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; allowed: segments, default")
    segments = raw.get("segments")
    if not isinstance(segments, list) or not segments:
        raise ConfigError(f"{source}: 'segments' must be a non-empty list of {{id, label, when}} entries")
    default_id, default_label = _parse_default(raw.get("default"), source)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(segments):
        where = f"{source}: segments[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping with id, label and when")
        segment_id = entry.get("id")
        if isinstance(segment_id, str):
            where = f"{where} ({segment_id})"
        extra = sorted(set(entry) - {"id", "label", "when"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {extra}; allowed: id, label, when")
        segment_id = _check_id(segment_id, f"{where}: id")
        if segment_id in seen:
            raise ConfigError(f"{where}: id {segment_id!r} is already used by segments[{seen[segment_id]}]")
        if segment_id == default_id:
            raise ConfigError(f"{where}: id {segment_id!r} is the default segment's id; choose another")
        seen[segment_id] = index
        label = entry.get("label", segment_id.replace("-", " ").replace("_", " ").title())
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f"{where}: label must be non-empty text")
        if "when" not in entry:
            raise ConfigError(f"{where}: 'when' is missing (a segment needs a condition; use default for the rest)")
        rules.append(Rule(segment_id, label.strip(), _parse_condition(entry["when"], f"{where}: when")))
    return RuleSet(tuple(rules), default_id, default_label, source)


def _parse_default(raw: Any, source: str) -> tuple[str, str]:
    if raw is None:
        return DEFAULT_SEGMENT_ID, DEFAULT_SEGMENT_LABEL
    if not isinstance(raw, Mapping) or set(raw) - {"id", "label"}:
        raise ConfigError(f"{source}: default must be a mapping with 'id' and optional 'label'")
    default_id = _check_id(raw.get("id"), f"{source}: default.id")
    label = raw.get("label", DEFAULT_SEGMENT_LABEL)
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"{source}: default.label must be non-empty text")
    return default_id, label.strip()


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SEGMENT_ID.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not a valid segment id (lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return value


def _parse_condition(raw: Any, where: str) -> Condition:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: expected a condition: all/any/not, or {{feature, op, value}}")
    combinators = [key for key in ("all", "any", "not") if key in raw]
    if combinators:
        if len(raw) != 1:
            raise ConfigError(
                f"{where}: {combinators[0]!r} must be the only key of its condition (found {sorted(raw)}); "
                "nest conditions instead"
            )
        key = combinators[0]
        if key == "not":
            return Not(_parse_condition(raw["not"], f"{where}.not"))
        children = raw[key]
        if not isinstance(children, list) or not children:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of conditions")
        parsed = tuple(_parse_condition(child, f"{where}.{key}[{i}]") for i, child in enumerate(children))
        return AllOf(parsed) if key == "all" else AnyOf(parsed)
    return _parse_compare(raw, where)


def _parse_compare(raw: Mapping[str, Any], where: str) -> Compare:
    extra = sorted(set(raw) - {"feature", "op", "value"})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra}; a condition is all/any/not or {{feature, op, value}}")
    feature = raw.get("feature")
    if not isinstance(feature, str) or feature not in FEATURES:
        raise ConfigError(f"{where}.feature: unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
    op = raw.get("op")
    if op not in OPERATORS:
        raise ConfigError(f"{where}.op: unknown operator {op!r} (feature {feature}); use one of {', '.join(OPERATORS)}")
    kind = feature_kind(feature)
    value = raw.get("value")
    at = f"{where}.value"
    if op == "is_null":
        if "value" in raw and not isinstance(value, bool):
            raise ConfigError(f"{at}: is_null takes true or false (or no value, meaning true), got {value!r}")
        return Compare(feature, op, True if value is None else value)
    if "value" not in raw:
        raise ConfigError(f"{at}: missing (feature {feature}, op {op})")
    if op in ORDERED and kind != "numeric":
        raise ConfigError(f"{where}.op: {op!r} needs a numeric feature, but {feature} is {kind}; use == or in")
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ConfigError(f"{at}: between takes a list [low, high], got {value!r}")
        low, high = (_scalar(v, kind, f"{at}[{i}]", feature) for i, v in enumerate(value))
        assert isinstance(low, float) and isinstance(high, float)
        if low > high:
            raise ConfigError(f"{at}: between [low, high] needs low <= high, got {value!r}")
        return Compare(feature, op, (low, high))
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{at}: {op} takes a non-empty list, got {value!r}")
        return Compare(feature, op, tuple(_scalar(v, kind, f"{at}[{i}]", feature) for i, v in enumerate(value)))
    if isinstance(value, list):
        raise ConfigError(f"{at}: {op} takes a single value, got a list (use in / not_in for lists)")
    return Compare(feature, op, _scalar(value, kind, at, feature))


def _scalar(value: Any, kind: FeatureKind, where: str, feature: str) -> Scalar:
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"{where}: {feature} is numeric, so the value must be a finite number, got {value!r}")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {feature} is true/false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f'{where}: {feature} holds text, so quote the value (e.g. "{value}"), got {value!r}')
    return value


# -- evaluation -----------------------------------------------------------------------------------------------


def evaluate(condition: Condition, columns: Mapping[str, pd.Series]) -> np.ndarray:
    """Boolean mask of the rows meeting ``condition`` (missing values never satisfy a comparison)."""
    if isinstance(condition, AllOf):
        mask = evaluate(condition.conditions[0], columns)
        for child in condition.conditions[1:]:
            mask = mask & evaluate(child, columns)
        return mask
    if isinstance(condition, AnyOf):
        mask = evaluate(condition.conditions[0], columns)
        for child in condition.conditions[1:]:
            mask = mask | evaluate(child, columns)
        return mask
    if isinstance(condition, Not):
        return ~evaluate(condition.condition, columns)
    return _compare(condition, columns[condition.feature])


def _compare(leaf: Compare, column: pd.Series) -> np.ndarray:
    present = column.notna().to_numpy(dtype=bool)
    if leaf.op == "is_null":
        return ~present if leaf.value else present
    op, value = leaf.op, leaf.value
    if op == "between":
        assert isinstance(value, tuple)
        result = column.between(value[0], value[1], inclusive="both")
    elif op in ("in", "not_in"):
        assert isinstance(value, tuple)
        result = column.isin(list(value))
        if op == "not_in":
            result = ~result
    elif op == "==":
        result = column == value
    elif op == "!=":
        result = column != value
    elif op == "<":
        result = column < value
    elif op == "<=":
        result = column <= value
    elif op == ">":
        result = column > value
    else:
        result = column >= value
    # Nullable dtypes give NA for a missing value; it means "no" here, and so does a missing value for != / not_in.
    return result.fillna(False).to_numpy(dtype=bool) & present


def feature_columns(features: pd.DataFrame, needed: set[str], source: str = "rules") -> dict[str, pd.Series]:
    """The typed columns the rules read (numbers as float, flags as nullable booleans, the rest as strings)."""
    from persona_pipeline.profiles import age_band, household_band

    columns: dict[str, pd.Series] = {}
    for feature in sorted(needed):
        if feature == "age_band":
            raw = age_band(pd.to_numeric(features["age"], errors="coerce")) if "age" in features else None
        elif feature == "household":
            raw = household_band(features["household_size"]) if "household_size" in features else None
        else:
            raw = features.get(feature)
        if raw is None:
            raise ConfigError(
                f"{source}: feature {feature!r} is not among the extracted features "
                f"(available: {', '.join(sorted(c for c in features.columns if c in FEATURES))})"
            )
        kind = feature_kind(feature)
        if kind == "numeric":
            columns[feature] = pd.to_numeric(raw, errors="coerce").astype("float64")
        elif kind == "boolean":
            columns[feature] = raw.astype("boolean")
        else:
            columns[feature] = raw.astype("string")
    return columns


def assign_segments(features: pd.DataFrame, rules: RuleSet) -> np.ndarray:
    """Segment id per row: the first rule that matches, else the default segment."""
    if features.empty:
        return np.array([], dtype=object)
    columns = feature_columns(features, rules.features(), rules.source)
    masks = [evaluate(rule.when, columns) for rule in rules.rules]
    # np.select returns the choice of the first true mask: exactly "first match wins".
    return np.select(masks, [rule.segment_id for rule in rules.rules], default=rules.default_id).astype(object)


def segment_rules(
    features: pd.DataFrame, rules: RuleSet
) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, ...]]]:
    """Assign every customer a rule segment; returns (ids aligned with the rows, labels, centroids).

    Centroids put each rule segment on its own axis and the default segment at the origin, so a rule segment
    that is too small is merged into the default segment (distance 1) rather than into another rule's
    (distance √2): customers of a too-small rule count as "everyone else", never as another rule's members.
    """
    segment_ids = assign_segments(features, rules)
    present = set(segment_ids.tolist())
    labels = {seg: label for seg, label in rules.labels.items() if seg in present}
    dims = len(rules.rules)
    centroids: dict[str, tuple[float, ...]] = {}
    for index, rule in enumerate(rules.rules):
        if rule.segment_id in present:
            centroids[rule.segment_id] = tuple(1.0 if i == index else 0.0 for i in range(dims))
    if rules.default_id in present:
        centroids[rules.default_id] = (0.0,) * dims
    return segment_ids, labels, centroids


def describe(condition: Condition) -> str:
    """A readable one-line form of a condition (for logs and docs)."""
    if isinstance(condition, AllOf):
        return "(" + " and ".join(describe(c) for c in condition.conditions) + ")"
    if isinstance(condition, AnyOf):
        return "(" + " or ".join(describe(c) for c in condition.conditions) + ")"
    if isinstance(condition, Not):
        return f"not {describe(condition.condition)}"
    if condition.op == "is_null":
        return f"{condition.feature} is {'' if condition.value else 'not '}null"
    value = list(condition.value) if isinstance(condition.value, tuple) else condition.value
    return f"{condition.feature} {condition.op} {value!r}"
