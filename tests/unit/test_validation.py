"""Validation: GX rules quarantine bad rows with reasons; dataset-level failures stop the run; nothing is lost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_pipeline.config import ValidationSettings
from persona_pipeline.exceptions import DataQualityError
from persona_pipeline.validation import FeatureValidator, ValidationOutcome, validate_features

SETTINGS = ValidationSettings(max_invalid_share=0.2, freshness_days=None)


def clean_features(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frequency = rng.integers(1, 20, n)
    monetary = frequency * rng.uniform(10, 100, n)
    return pd.DataFrame(
        {
            "customer_key": [str(i) for i in range(n)],
            "age": rng.integers(18, 90, n).astype("float64"),
            "birth_date_invalid": False,
            "gender": rng.choice(["female", "male"], n),
            "income_band": "50-75k",
            "occupation": "teacher",
            "household_size": 2.0,
            "tenure_days": 400.0,
            "frequency": frequency,
            "monetary": monetary,
            "aov": monetary / frequency,
            "recency_days": rng.uniform(1, 300, n),
            "profiling_consent": True,
            "marketing_consent": True,
        }
    )


def test_clean_data_is_all_valid() -> None:
    outcome = validate_features(clean_features(), SETTINGS)
    assert outcome.accounting.valid == 50 and outcome.accounting.quarantined == 0
    assert outcome.quarantine.empty
    assert outcome.gx_result["success"] is True


@pytest.mark.parametrize(
    ("column", "bad_value", "rule"),
    [
        ("age", 7.0, "expect_column_values_to_be_between(age)"),
        ("age", 160.0, "expect_column_values_to_be_between(age)"),
        ("monetary", -25.0, "expect_column_values_to_be_between(monetary)"),
        ("monetary", 5e9, "expect_column_values_to_be_between(monetary)"),
        ("gender", "zz", "expect_column_values_to_be_in_set(gender)"),
        ("income_band", "lots", "expect_column_values_to_be_in_set(income_band)"),
        ("occupation", "nurse\x00\x07", "expect_column_values_to_not_match_regex(occupation)"),
        ("household_size", 0.0, "expect_column_values_to_be_between(household_size)"),
        ("birth_date_invalid", True, "expect_column_values_to_be_in_set(birth_date_invalid)"),
        ("customer_key", None, "expect_column_values_to_not_be_null(customer_key)"),
    ],
)
def test_bad_row_is_quarantined_with_rule_and_value(column: str, bad_value: object, rule: str) -> None:
    features = clean_features()
    features[column] = features[column].astype(object)
    features.loc[3, column] = bad_value
    outcome = validate_features(features, SETTINGS)
    a = outcome.accounting
    assert (a.extracted, a.valid, a.quarantined, a.excluded) == (50, 49, 1, 0)
    row = outcome.quarantine.iloc[0]
    assert row["rule"] == rule and row["column"] == column
    if bad_value is not None:
        assert str(row["value"])[:4] == str(bad_value)[:4]
    assert "3" not in set(outcome.valid["customer_key"].dropna())


def test_duplicate_keys_quarantine_every_copy() -> None:
    features = clean_features()
    features.loc[7, "customer_key"] = "1"
    outcome = validate_features(features, SETTINGS)
    assert outcome.accounting.quarantined == 2
    assert set(outcome.quarantine["customer_key"]) == {"1"}


def test_customers_without_consent_are_excluded_and_counted() -> None:
    features = clean_features()
    features["profiling_consent"] = features["profiling_consent"].astype("boolean")
    features.loc[:9, "profiling_consent"] = False
    features.loc[10, "profiling_consent"] = pd.NA
    features.loc[11, "age"] = 5.0
    outcome = validate_features(features, SETTINGS)
    a = outcome.accounting
    assert (a.excluded, a.quarantined, a.valid) == (11, 1, 38)
    assert a.extracted == a.valid + a.quarantined + a.excluded


def test_too_many_invalid_rows_fail_the_run_with_counts() -> None:
    features = clean_features()
    features.loc[:19, "age"] = 200.0
    with pytest.raises(DataQualityError) as excinfo:
        validate_features(features, SETTINGS)
    message = str(excinfo.value)
    assert "customer_features.age" in message and "expect_column_values_to_be_between" in message
    assert "20 of 50 rows" in message


def test_empty_source_fails() -> None:
    with pytest.raises(DataQualityError, match="expect_table_row_count_to_be_between"):
        validate_features(clean_features().iloc[0:0], SETTINGS)


def test_missing_column_fails_naming_it() -> None:
    with pytest.raises(DataQualityError, match=r"customer_features\.monetary: rule expect_column_to_exist"):
        validate_features(clean_features().drop(columns=["monetary"]), SETTINGS)


def test_volume_drop_fails() -> None:
    with pytest.raises(DataQualityError, match="volume dropped from 200 to 50"):
        validate_features(clean_features(), SETTINGS, previous_rows=200)


def test_stale_source_fails_freshness() -> None:
    features = clean_features()
    features["recency_days"] = features["recency_days"] + 400
    with pytest.raises(DataQualityError, match="expect_column_min_to_be_between"):
        validate_features(features, ValidationSettings(max_invalid_share=0.2, freshness_days=30))


# -- batch by batch: the same verdicts as one GX run over every row ---------------------------------------------


def _validate_in_batches(
    features: pd.DataFrame, settings: ValidationSettings, sizes: list[int]
) -> tuple[pd.DataFrame, ValidationOutcome]:
    assert sum(sizes) == len(features)
    validator = FeatureValidator(settings, extracted=len(features))
    validator.check_dataset(features[["customer_key", "recency_days", "profiling_consent"]])
    valid, start = [], 0
    for size in sizes:
        valid.append(validator.validate_batch(features.iloc[start : start + size].reset_index(drop=True)))
        start += size
    return pd.concat(valid, ignore_index=True), validator.finish(data_docs_run="batches")


def test_batches_give_the_same_valid_rows_quarantine_and_accounting_as_one_run() -> None:
    features = clean_features(90)
    features.loc[3, "age"] = 7.0
    features.loc[40, "gender"] = "zz"
    features.loc[[10, 70], "profiling_consent"] = False
    features.loc[[5, 80], "customer_key"] = "dup"  # a duplicate split across batches
    whole = validate_features(features, SETTINGS)
    valid, batched = _validate_in_batches(features, SETTINGS, [30, 0, 45, 15])

    assert batched.accounting == whole.accounting
    assert batched.accounting.extracted == 90 and batched.accounting.excluded == 2
    assert set(batched.quarantine["customer_key"]) == {"3", "40", "dup"}
    assert (batched.quarantine["customer_key"] == "dup").sum() == 2  # every copy, in both batches
    assert batched.rule_failures == whole.rule_failures
    pd.testing.assert_frame_equal(valid, whole.valid)
    # The Data Docs site has the dataset page and one page per batch.
    pages = [p for p in batched.data_docs if p.startswith("validations/") and p.endswith(".html")]
    assert len(pages) == 1 + 4, pages


def test_a_rule_is_judged_on_all_batches_not_one() -> None:
    settings = ValidationSettings(max_invalid_share=0.05, freshness_days=None)
    features = clean_features(200)
    features.loc[:5, "age"] = 7.0  # 6 of 200 (3 %) overall, but 6 of 20 (30 %) in the first batch
    _, outcome = _validate_in_batches(features, settings, [20, 180])
    assert outcome.accounting.quarantined == 6

    features.loc[:11, "age"] = 7.0  # 12 of 200 (6 %) overall, spread over both batches
    with pytest.raises(DataQualityError, match=r"expect_column_values_to_be_between.*failed on 12 of 200 rows"):
        _validate_in_batches(features, settings, [100, 100])


def test_freshness_is_judged_on_the_newest_row_of_all_batches() -> None:
    settings = ValidationSettings(max_invalid_share=0.2, freshness_days=30)
    features = clean_features(60)
    features["recency_days"] = 200.0
    features.loc[59, "recency_days"] = 2.0  # only the last batch is fresh
    _, outcome = _validate_in_batches(features, settings, [30, 30])
    assert outcome.accounting.valid == 60

    features.loc[59, "recency_days"] = 45.0
    with pytest.raises(DataQualityError, match="expect_column_min_to_be_between"):
        _validate_in_batches(features, settings, [30, 30])


def test_rows_must_arrive_as_extracted() -> None:
    features = clean_features(20)
    validator = FeatureValidator(SETTINGS, extracted=20)
    with pytest.raises(RuntimeError, match="check_dataset"):
        validator.validate_batch(features)
    validator.check_dataset(features[["customer_key", "recency_days", "profiling_consent"]])
    validator.validate_batch(features.iloc[:10])
    with pytest.raises(ValueError, match="10 of 20 extracted rows"):
        validator.finish()


def test_a_hash_collision_quarantines_no_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import persona_pipeline.validation as validation

    real = validation.key_hashes

    def colliding(keys: pd.Series) -> pd.Series:
        hashes = real(keys)
        hashes[keys == "7"] = hashes[keys == "8"].iloc[0]  # two different keys, one hash
        return hashes

    monkeypatch.setattr(validation, "key_hashes", colliding)
    features = clean_features(30)
    features.loc[[20, 25], "customer_key"] = "dup"
    outcome = validate_features(features, SETTINGS)
    assert sorted(outcome.quarantine["customer_key"]) == ["dup", "dup"]  # "7" and "8" stay valid
    assert {"7", "8"} <= set(outcome.valid["customer_key"])


def test_keys_stay_out_of_the_dataset_suite_results() -> None:
    features = clean_features(30)
    features.loc[[3, 4], "customer_key"] = "secret-key-42"
    outcome = validate_features(features, SETTINGS)
    assert (outcome.quarantine["customer_key"] == "secret-key-42").sum() == 2
    dataset = next(r for r in outcome.gx_result["results"] if r["suite"].endswith(".dataset"))
    assert "secret-key-42" not in str(dataset)
