"""Great Expectations validation of the customer features, quarantine and row accounting.

One suite is built in code from :class:`ValidationSettings`. Row-level expectations carry ``mostly`` =
1 - ``max_invalid_share``, so GX itself decides whether a rule's failure rate is tolerable; the rows each rule
rejects come back from GX (``unexpected_index_list``) and go to the quarantine with the rule and the offending
value. Dataset-level expectations (columns present, row count, freshness) and any rule over its threshold stop
the run with a :class:`DataQualityError` naming table, column, rule and count.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona_pipeline.config import ValidationSettings
from persona_pipeline.contracts import RowAccounting
from persona_pipeline.exceptions import DataQualityError

log = logging.getLogger(__name__)

SOURCE_NAME = "customer_features"
SUITE_NAME = "customer_features"
ROW_ID = "_row"
QUARANTINE_COLUMNS = ("source", "customer_key", "rule", "column", "value")
_CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_TEXT_COLUMNS = ("gender", "country", "region", "income_band", "occupation", "preferred_channel", "top_category")
REQUIRED_COLUMNS = (
    "customer_key",
    "age",
    "frequency",
    "monetary",
    "recency_days",
    "profiling_consent",
)


@dataclass(frozen=True)
class ValidationOutcome:
    """Valid rows, quarantined rows and the accounting that ties them to what was extracted."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS, one row per (row, failed rule)
    accounting: RowAccounting
    rule_failures: dict[str, int]  # rule label -> rows rejected
    gx_result: dict[str, Any]  # the GX validation result (JSON-ready), for Data Docs and audits
    data_docs: dict[str, bytes] = field(default_factory=dict)  # Data Docs site: relative path -> file content


def _rule_label(config: Any) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}({column})" if column else str(config.type)


def build_suite(settings: ValidationSettings, columns: list[str]) -> list[Any]:
    """The expectations applied to the consented feature rows."""
    import great_expectations.expectations as gxe

    mostly = max(0.0, 1.0 - settings.max_invalid_share)
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=settings.min_rows),
        *(gxe.ExpectColumnToExist(column=c) for c in REQUIRED_COLUMNS),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_key", mostly=mostly),
        gxe.ExpectColumnValuesToBeUnique(column="customer_key", mostly=mostly),
        gxe.ExpectColumnValuesToBeBetween(
            column="age", min_value=settings.min_age, max_value=settings.max_age, mostly=mostly
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="monetary", min_value=0, max_value=settings.max_monetary, mostly=mostly
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="frequency", min_value=0, max_value=settings.max_frequency, mostly=mostly
        ),
        gxe.ExpectColumnValuesToBeBetween(column="recency_days", min_value=0, mostly=mostly),
    ]
    if "birth_date_invalid" in columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column="birth_date_invalid", value_set=[False], mostly=mostly)
        )
    if "tenure_days" in columns:
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column="tenure_days", min_value=0, mostly=mostly))
    if "household_size" in columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column="household_size", min_value=1, max_value=20, mostly=mostly)
        )
    if settings.allowed_genders is not None and "gender" in columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=list(settings.allowed_genders), mostly=mostly)
        )
    if settings.allowed_income_bands is not None and "income_band" in columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="income_band", value_set=list(settings.allowed_income_bands), mostly=mostly
            )
        )
    for column in _TEXT_COLUMNS:
        if column in columns:
            expectations.append(
                gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=_CONTROL_CHARS, mostly=mostly)
            )
    if settings.freshness_days is not None:
        # The newest purchase in the whole dataset must be recent: a stale source fails the run.
        expectations.append(gxe.ExpectColumnMinToBeBetween(column="recency_days", max_value=settings.freshness_days))
    return expectations


def _run_gx(frame: pd.DataFrame, expectations: list[Any]) -> tuple[Any, Any]:
    """Validate ``frame`` once; return the (ephemeral) GX context and the validation result."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("persona_pipeline")
    asset = source.add_dataframe_asset(SOURCE_NAME)
    batch_definition = asset.add_batch_definition_whole_dataframe("run")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [ROW_ID],
            "partial_unexpected_count": 0,
            "return_unexpected_index_query": False,
        },
    )
    return context, result


# Tutorial animations GX copies into every site; no page of a validation site refers to them.
_UNUSED_DOCS_ASSETS = frozenset({"glossary_scroller.gif", "validation_failed_unexpected_values.gif"})


def render_data_docs(context: Any, result: Any, run_name: str) -> dict[str, bytes]:
    """Render ``result`` (already computed: nothing is validated again) as a GX Data Docs site.

    Returns every file of the site by its relative path (``index.html``, the validation page, static assets).
    """
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    with tempfile.TemporaryDirectory(prefix="persona-data-docs-") as tmp:
        context.add_data_docs_site(
            site_name="run",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": tmp},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=SUITE_NAME),
            run_id=RunIdentifier(run_name=run_name),
            batch_identifier=SOURCE_NAME,
        )
        context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=["run"])
        root = Path(tmp)
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name not in _UNUSED_DOCS_ASSETS
        }


def validate_features(
    features: pd.DataFrame,
    settings: ValidationSettings,
    *,
    previous_rows: int | None = None,
    data_docs_run: str | None = None,
) -> ValidationOutcome:
    """Exclude non-consenting customers, validate the rest with GX, quarantine failing rows.

    Raises :class:`DataQualityError` on a dataset-level failure (empty or stale source, missing column, a rule
    failing on more than ``max_invalid_share`` of rows, or a volume drop beyond ``max_volume_drop`` against
    ``previous_rows``). With ``data_docs_run`` the same GX result is also rendered as a Data Docs site
    (:attr:`ValidationOutcome.data_docs`) under that run name.
    """
    extracted = len(features)
    if previous_rows and extracted < previous_rows * (1.0 - settings.max_volume_drop):
        raise DataQualityError(
            f"{SOURCE_NAME}: volume dropped from {previous_rows} to {extracted} rows "
            f"(rule max_volume_drop={settings.max_volume_drop:.0%}); check the extract before publishing",
            [f"{SOURCE_NAME}.*: volume_drop {previous_rows}->{extracted}"],
        )
    consent = (
        features["profiling_consent"].fillna(False).astype(bool)
        if "profiling_consent" in features
        else pd.Series(False, index=features.index)
    )
    consented = features.loc[consent.to_numpy()].reset_index(drop=True)
    excluded = extracted - len(consented)

    frame = consented.copy()
    for column, dtype in frame.dtypes.items():
        # Nullable extension floats/ints make GX check values one by one; plain float64 (NaN = missing) is vectorised.
        if (
            isinstance(dtype, pd.api.extensions.ExtensionDtype)
            and pd.api.types.is_numeric_dtype(dtype)
            and not (pd.api.types.is_bool_dtype(dtype))
        ):
            frame[column] = frame[column].astype("float64")
    frame[ROW_ID] = np.arange(len(frame), dtype="int64")
    context, result = _run_gx(frame, build_suite(settings, list(frame.columns)))

    failures: list[str] = []
    rule_failures: dict[str, int] = {}
    quarantine_parts: list[pd.DataFrame] = []
    for item in result.results:
        config = item.expectation_config
        label = _rule_label(config)
        details = item.result or {}
        index_list = details.get("unexpected_index_list") or []
        if index_list:
            column = str(config.kwargs.get("column", ""))
            rows = pd.DataFrame(index_list)
            row_ids = rows[ROW_ID].to_numpy(dtype="int64")
            values = rows[column] if column in rows else pd.Series([None] * len(rows))
            quarantine_parts.append(
                pd.DataFrame(
                    {
                        "source": SOURCE_NAME,
                        "customer_key": frame["customer_key"].to_numpy()[row_ids],
                        "rule": label,
                        "column": column,
                        "value": [_short(v) for v in values],
                        ROW_ID: row_ids,
                    }
                )
            )
            rule_failures[label] = len(row_ids)
        if not item.success:
            count = details.get("unexpected_count")
            observed = details.get("observed_value")
            failures.append(
                f"{SOURCE_NAME}.{config.kwargs.get('column', '*')}: rule {config.type} failed"
                + (f" on {count} of {len(frame)} rows" if count is not None else "")
                + (f" (observed {observed!r})" if observed is not None else "")
            )
    too_few = [f for f in failures if "expect_table_row_count_to_be_between" in f]
    if too_few:
        # Every other rule fails on an empty table too; those failures are consequences and only bury the cause.
        failures = [
            f"{too_few[0]}: {len(frame)} row(s) to validate, at least {settings.min_rows} required "
            f"(rule min_rows; {extracted} extracted, {excluded} excluded without profiling consent)"
        ]
    if failures:
        raise DataQualityError(
            f"validation of {SOURCE_NAME} failed {len(failures)} rule(s):\n  " + "\n  ".join(failures), failures
        )

    quarantine = (
        pd.concat(quarantine_parts, ignore_index=True)
        if quarantine_parts
        else pd.DataFrame({c: pd.Series(dtype="object") for c in (*QUARANTINE_COLUMNS, ROW_ID)})
    )
    bad_rows = np.unique(quarantine[ROW_ID].to_numpy(dtype="int64"))
    valid = frame.drop(index=bad_rows).drop(columns=[ROW_ID]).reset_index(drop=True)
    accounting = RowAccounting(extracted=extracted, valid=len(valid), quarantined=len(bad_rows), excluded=excluded)
    log.info(
        "validated %s: %d extracted, %d valid, %d quarantined, %d excluded (no profiling consent)",
        SOURCE_NAME,
        accounting.extracted,
        accounting.valid,
        accounting.quarantined,
        accounting.excluded,
    )
    return ValidationOutcome(
        valid=valid,
        quarantine=quarantine.drop(columns=[ROW_ID]).astype({"value": "string"}),
        accounting=accounting,
        rule_failures=rule_failures,
        gx_result=result.to_json_dict(),
        data_docs=render_data_docs(context, result, data_docs_run) if data_docs_run else {},
    )


def _short(value: Any, limit: int = 200) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
