"""Great Expectations validation of the customer features, quarantine and row accounting.

The feature table arrives in parts, and it is validated part by part so memory stays bounded by a part, not by
the customers. Two GX suites are built in code from :class:`ValidationSettings`:

- the **dataset suite** runs once over the columns that can only be judged across all rows (the key and the
  recency of every consenting customer): row count, key uniqueness and freshness;
- the **row suite** runs on each batch of consenting rows, over just the columns it checks: columns present,
  key not null, ranges, allowed values and control characters.

Row-level expectations carry ``mostly`` = 1 - ``max_invalid_share``. GX reports, per batch, the rows each rule
rejects (``unexpected_index_list``); they go to the quarantine with the rule and the offending value, and the
counts are summed over batches so a rule's tolerance is judged on the whole table, exactly as one GX run over
every row would judge it. Dataset-level failures (empty or stale source, missing column, duplicates or any rule
over its threshold) stop the run with a :class:`DataQualityError` naming table, column, rule and count.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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
DATASET_SUITE_NAME = "customer_features.dataset"
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
#: the columns the dataset suite reads, for every extracted row (plus ``profiling_consent`` to select them)
DATASET_COLUMNS = ("customer_key", "recency_days")
#: the dataset suite's stand-in for the key: a 64-bit hash of it (see :func:`key_hashes`)
KEY_HASH = "customer_key_hash"
_OPTIONAL_CHECKED = ("birth_date_invalid", "tenure_days", "household_size")
_UNIQUE_RULE = f"expect_column_values_to_be_unique({KEY_HASH})"


@dataclass(frozen=True)
class ValidationOutcome:
    """Valid rows, quarantined rows and the accounting that ties them to what was extracted."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS, one row per (row, failed rule)
    accounting: RowAccounting
    rule_failures: dict[str, int]  # rule label -> rows rejected
    gx_result: dict[str, Any]  # the GX validation results (JSON-ready), for Data Docs and audits
    data_docs: dict[str, bytes] = field(default_factory=dict)  # Data Docs site: relative path -> file content


def _rule_label(config: Any) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}({column})" if column else str(config.type)


def build_dataset_suite(settings: ValidationSettings, columns: list[str]) -> list[Any]:
    """The expectations judged over every consenting row at once (see :data:`DATASET_COLUMNS`).

    A missing column is left to the row suite's ``ExpectColumnToExist``, which names it.
    """
    import great_expectations.expectations as gxe

    mostly = max(0.0, 1.0 - settings.max_invalid_share)
    expectations: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=settings.min_rows)]
    if KEY_HASH in columns:
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column=KEY_HASH, mostly=mostly))
    if settings.freshness_days is not None and "recency_days" in columns:
        # The newest purchase in the whole dataset must be recent: a stale source fails the run.
        expectations.append(gxe.ExpectColumnMinToBeBetween(column="recency_days", max_value=settings.freshness_days))
    return expectations


def build_suite(settings: ValidationSettings, columns: list[str]) -> list[Any]:
    """The row-level expectations applied to each batch of consenting feature rows."""
    import great_expectations.expectations as gxe

    mostly = max(0.0, 1.0 - settings.max_invalid_share)
    expectations: list[Any] = [
        *(gxe.ExpectColumnToExist(column=c) for c in REQUIRED_COLUMNS),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_key", mostly=mostly),
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
    return expectations


def checked_columns(columns: Iterable[str]) -> list[str]:
    """The feature columns the row suite reads, in table order: GX gets these and nothing else.

    GX filters the whole frame it is given for every row rule, so unchecked columns (spend per category, device,
    interest…) would only cost time and memory.
    """
    wanted = {*REQUIRED_COLUMNS, *_TEXT_COLUMNS, *_OPTIONAL_CHECKED}
    return [c for c in columns if c in wanted]


_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_ID],
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
}


def _skip_batch_fingerprints() -> None:
    """Stop GX from fingerprinting each pandas batch, as GX itself does for frames of 1 GB and more.

    The fingerprint (an MD5 over pandas' hash of every row, strings included) only labels the batch in its
    markers; it validates nothing, yet it is computed twice per batch and took about 40 % of validation time here.
    GX decides by comparing the frame's size with ``HASH_THRESHOLD``; a threshold of 0 skips it for every batch.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0


class _GxRunner:
    """One ephemeral GX context with a pandas data source; validates frames against named suites."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        _skip_batch_fingerprints()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("persona_pipeline")
        self._batches = source.add_dataframe_asset(SOURCE_NAME).add_batch_definition_whole_dataframe("run")
        self._suites: dict[str, Any] = {}
        self.results: list[tuple[str, str, Any]] = []  # (suite name, batch name, result), in run order

    def validate(self, frame: pd.DataFrame, suite_name: str, expectations: list[Any], batch_name: str) -> Any:
        suite = self._suites.get(suite_name)
        if suite is None:
            suite = self.context.suites.add(self._gx.ExpectationSuite(name=suite_name, expectations=expectations))
            self._suites[suite_name] = suite
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=_RESULT_FORMAT)
        self.results.append((suite_name, batch_name, result))
        return result


# Tutorial animations GX copies into every site; no page of a validation site refers to them.
_UNUSED_DOCS_ASSETS = frozenset({"glossary_scroller.gif", "validation_failed_unexpected_values.gif"})


def render_data_docs(context: Any, results: list[tuple[str, str, Any]], run_name: str) -> dict[str, bytes]:
    """Render ``results`` (already computed: nothing is validated again) as a GX Data Docs site.

    ``results`` holds (suite name, batch name, GX result) triples; each becomes one validation page. Returns
    every file of the site by its relative path (``index.html``, the validation pages, static assets).
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
        for suite_name, batch_name, result in results:
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
                run_id=RunIdentifier(run_name=run_name),
                batch_identifier=batch_name,
            )
            context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=["run"])
        root = Path(tmp)
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name not in _UNUSED_DOCS_ASSETS
        }


@dataclass
class _RuleTally:
    """One row rule's counts summed over batches (what GX's ``mostly`` is judged on)."""

    rule_type: str
    column: str
    mostly: float
    elements: int = 0
    missing: int = 0
    unexpected: int = 0
    hard_failures: list[str] = field(default_factory=list)  # batch failures that are not a share of rows

    def success(self) -> bool:
        if self.hard_failures:
            return False
        # The not-null rule judges every row; the others judge the rows that have a value.
        base = (
            self.elements if self.rule_type == "expect_column_values_to_not_be_null" else self.elements - self.missing
        )
        return base <= 0 or (base - self.unexpected) / base >= self.mostly


def key_hashes(keys: pd.Series) -> pd.Series:
    """64-bit hashes of customer keys (missing keys stay missing), computed by DuckDB over Arrow.

    No Python string object is made per key, so 10 million keys hash in well under a second.
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table({"k": pa.array(keys.astype("string"), type=pa.string(), from_pandas=True)})
    con = duckdb.connect()
    try:
        con.register("customer_keys", table)
        column = con.sql("SELECT hash(k) AS h FROM customer_keys").to_arrow_table().column("h")
    finally:
        con.close()
    values = pc.fill_null(column, 0).to_numpy().astype("uint64", copy=False)
    missing = table.column("k").is_null().to_numpy(zero_copy_only=False)
    return pd.Series(pd.arrays.IntegerArray(values, np.asarray(missing, dtype=bool)))


def _consent_mask(frame: pd.DataFrame) -> np.ndarray:
    if "profiling_consent" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame["profiling_consent"].fillna(False).astype(bool).to_numpy()


class FeatureValidator:
    """Validates the feature table batch by batch with bounded memory and exact accounting.

    Use: :meth:`check_dataset` once with the dataset columns of every extracted row, then
    :meth:`validate_batch` for each batch of full rows **in the same row order**, then :meth:`finish`.
    Consent exclusion happens before any rule: customers without ``profiling_consent`` are counted as excluded
    and never validated, quarantined or kept.
    """

    def __init__(self, settings: ValidationSettings, *, extracted: int, previous_rows: int | None = None) -> None:
        if previous_rows and extracted < previous_rows * (1.0 - settings.max_volume_drop):
            raise DataQualityError(
                f"{SOURCE_NAME}: volume dropped from {previous_rows} to {extracted} rows "
                f"(rule max_volume_drop={settings.max_volume_drop:.0%}); check the extract before publishing",
                [f"{SOURCE_NAME}.*: volume_drop {previous_rows}->{extracted}"],
            )
        self.settings = settings
        self.extracted = extracted
        self._gx = _GxRunner()
        self._row_suite: list[Any] | None = None
        self._tallies: dict[str, _RuleTally] = {}
        self._duplicate_rows = np.empty(0, dtype="int64")  # consented row ids (global) with a non-unique key
        self._quarantine: list[pd.DataFrame] = []
        self._bad_rows = 0
        self._seen = 0  # extracted rows handed to validate_batch so far
        self._consented_seen = 0
        self._consented = 0
        self._valid = 0
        self._checked = False

    # -- dataset level ------------------------------------------------------------------------------------------

    def check_dataset(self, rows: pd.DataFrame) -> None:
        """Judge the dataset suite on ``rows`` (:data:`DATASET_COLUMNS` plus ``profiling_consent`` of every row).

        Raises :class:`DataQualityError` when a dataset rule fails (too few rows, a stale source, duplicated keys
        beyond ``max_invalid_share``).
        """
        if len(rows) != self.extracted:
            raise ValueError(f"check_dataset got {len(rows)} rows, {self.extracted} were extracted")
        chosen = np.flatnonzero(_consent_mask(rows))
        frame = pd.DataFrame(index=pd.RangeIndex(len(chosen)))
        keys: pd.Series | None = None
        if "customer_key" in rows:
            # GX checks uniqueness on 64-bit hashes of the keys: cheap to hash, compare and copy at any size, and
            # the keys themselves stay out of GX's results. Equal keys always have equal hashes, so no duplicate is
            # missed; rows GX flags are then compared by key, so a hash collision never quarantines anyone.
            keys = rows["customer_key"].iloc[chosen].reset_index(drop=True)
            frame[KEY_HASH] = key_hashes(keys)
        if "recency_days" in rows:
            frame["recency_days"] = pd.to_numeric(rows["recency_days"], errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan
            )[chosen]
        frame[ROW_ID] = np.arange(len(frame), dtype="int64")
        self._consented = len(frame)
        suite = build_dataset_suite(self.settings, list(frame.columns))
        result = self._gx.validate(frame, DATASET_SUITE_NAME, suite, "all-rows")
        del frame
        failures: list[str] = []
        too_few: str | None = None
        for item in result.results:
            config = item.expectation_config
            details = item.result or {}
            if config.type == "expect_column_values_to_be_unique" and keys is not None:
                index_list = details.get("unexpected_index_list") or []
                if index_list:
                    flagged = np.unique(pd.DataFrame(index_list)[ROW_ID].to_numpy(dtype="int64"))
                    flagged_keys = keys.iloc[flagged]
                    self._duplicate_rows = flagged[flagged_keys.duplicated(keep=False).to_numpy()]
            if not item.success:
                message = _failure_message(config, details, len(chosen))
                if config.type == "expect_table_row_count_to_be_between":
                    too_few = message
                failures.append(message)
        if too_few is not None:
            # Every other rule fails on an empty table too; those failures are consequences and only bury the cause.
            failures = [
                f"{too_few}: {len(chosen)} row(s) to validate, at least {self.settings.min_rows} required "
                f"(rule min_rows; {self.extracted} extracted, {self.extracted - len(chosen)} excluded without "
                "profiling consent)"
            ]
        _raise_if_failed(failures)
        self._checked = True

    # -- row level ----------------------------------------------------------------------------------------------

    def validate_batch(self, features: pd.DataFrame) -> pd.DataFrame:
        """Validate the next batch of extracted rows; returns its valid, consenting rows (table order kept)."""
        if not self._checked:
            raise RuntimeError("check_dataset must run before validate_batch")
        consent = _consent_mask(features)
        frame = features.loc[consent].reset_index(drop=True)
        self._seen += len(features)
        if self._seen > self.extracted:
            raise ValueError(f"more rows validated ({self._seen}) than extracted ({self.extracted})")
        for column, dtype in frame.dtypes.items():
            # Nullable extension floats/ints make GX check values one by one; plain float64 (NaN = missing) is
            # vectorised.
            if (
                isinstance(dtype, pd.api.extensions.ExtensionDtype)
                and pd.api.types.is_numeric_dtype(dtype)
                and not pd.api.types.is_bool_dtype(dtype)
            ):
                frame[column] = frame[column].astype("float64")
        offset = self._consented_seen
        self._consented_seen += len(frame)
        batch_index = sum(1 for suite, _, _ in self._gx.results if suite == SUITE_NAME)
        checked = frame[checked_columns(frame.columns)].copy()
        checked[ROW_ID] = np.arange(offset, offset + len(frame), dtype="int64")
        if self._row_suite is None:
            self._row_suite = build_suite(self.settings, list(frame.columns))
        result = self._gx.validate(checked, SUITE_NAME, self._row_suite, f"batch-{batch_index:05d}")

        keys = frame["customer_key"].to_numpy() if "customer_key" in frame else np.full(len(frame), None)
        bad: list[np.ndarray] = []
        for item in result.results:
            config = item.expectation_config
            label = _rule_label(config)
            details = item.result or {}
            tally = self._tallies.get(label)
            if tally is None:
                tally = self._tallies[label] = _RuleTally(
                    str(config.type), str(config.kwargs.get("column", "")), float(config.kwargs.get("mostly") or 1.0)
                )
            index_list = details.get("unexpected_index_list") or []
            if "unexpected_count" in details:
                tally.elements += int(details.get("element_count") or 0)
                tally.missing += int(details.get("missing_count") or 0)
                tally.unexpected += int(details.get("unexpected_count") or 0)
            elif not item.success:
                tally.hard_failures.append(_failure_message(config, details, len(frame)))
            if index_list:
                listed = pd.DataFrame(index_list)
                local = listed[ROW_ID].to_numpy(dtype="int64") - offset
                column = tally.column
                values = listed[column] if column in listed else pd.Series([None] * len(listed))
                self._quarantine.append(_quarantine_rows(keys[local], label, column, values))
                bad.append(local)
        duplicates = (
            self._duplicate_rows[(self._duplicate_rows >= offset) & (self._duplicate_rows < offset + len(frame))]
            - offset
        )
        if len(duplicates):
            self._quarantine.append(
                _quarantine_rows(keys[duplicates], _UNIQUE_RULE, "customer_key", pd.Series(keys[duplicates]))
            )
            bad.append(duplicates)
        bad_rows = np.unique(np.concatenate(bad)) if bad else np.empty(0, dtype="int64")
        self._bad_rows += len(bad_rows)
        keep = np.ones(len(frame), dtype=bool)
        keep[bad_rows] = False
        valid = frame.loc[keep].reset_index(drop=True)
        self._valid += len(valid)
        return valid

    # -- the verdict --------------------------------------------------------------------------------------------

    def finish(self, *, data_docs_run: str | None = None) -> ValidationOutcome:
        """Judge every row rule on its summed counts; returns the quarantine, accounting and GX results.

        The outcome's ``valid`` frame is empty: valid rows were returned batch by batch.
        """
        if self._seen != self.extracted:
            raise ValueError(f"{self._seen} of {self.extracted} extracted rows were validated")
        failures = [
            message
            for tally in self._tallies.values()
            if not tally.success()
            for message in (
                tally.hard_failures
                or [
                    f"{SOURCE_NAME}.{tally.column or '*'}: rule {tally.rule_type} failed on {tally.unexpected} "
                    f"of {self._consented} rows (more than max_invalid_share={self.settings.max_invalid_share:g})"
                ]
            )
        ]
        _raise_if_failed(failures)
        rule_failures = {label: t.unexpected for label, t in self._tallies.items() if t.unexpected}
        if len(self._duplicate_rows):
            rule_failures[_UNIQUE_RULE] = len(self._duplicate_rows)
        quarantine = (
            pd.concat(self._quarantine, ignore_index=True)
            if self._quarantine
            else pd.DataFrame({c: pd.Series(dtype="object") for c in QUARANTINE_COLUMNS})
        )
        excluded = self.extracted - self._consented
        accounting = RowAccounting(
            extracted=self.extracted, valid=self._valid, quarantined=self._bad_rows, excluded=excluded
        )
        if accounting.valid + accounting.quarantined + accounting.excluded != accounting.extracted:
            raise AssertionError(f"row accounting does not add up: {accounting}")
        log.info(
            "validated %s: %d extracted, %d valid, %d quarantined, %d excluded (no profiling consent)",
            SOURCE_NAME,
            accounting.extracted,
            accounting.valid,
            accounting.quarantined,
            accounting.excluded,
        )
        results = self._gx.results
        return ValidationOutcome(
            valid=pd.DataFrame(),
            quarantine=quarantine.astype({"value": "string"}),
            accounting=accounting,
            rule_failures=rule_failures,
            gx_result={
                "success": True,
                "results": [
                    {"suite": suite, "batch": batch, **result.to_json_dict()} for suite, batch, result in results
                ],
            },
            data_docs=render_data_docs(self._gx.context, results, data_docs_run) if data_docs_run else {},
        )


def _raise_if_failed(failures: list[str]) -> None:
    if failures:
        raise DataQualityError(
            f"validation of {SOURCE_NAME} failed {len(failures)} rule(s):\n  " + "\n  ".join(failures), failures
        )


def _failure_message(config: Any, details: dict[str, Any], rows: int) -> str:
    count = details.get("unexpected_count")
    observed = details.get("observed_value")
    return (
        f"{SOURCE_NAME}.{config.kwargs.get('column', '*')}: rule {config.type} failed"
        + (f" on {count} of {rows} rows" if count is not None else "")
        + (f" (observed {observed!r})" if observed is not None else "")
    )


def _quarantine_rows(keys: np.ndarray, rule: str, column: str, values: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": SOURCE_NAME,
            "customer_key": keys,
            "rule": rule,
            "column": column,
            "value": [_short(v) for v in values],
        }
    )


def validate_features(
    features: pd.DataFrame,
    settings: ValidationSettings,
    *,
    previous_rows: int | None = None,
    data_docs_run: str | None = None,
) -> ValidationOutcome:
    """Exclude non-consenting customers, validate the rest with GX, quarantine failing rows (one batch).

    Raises :class:`DataQualityError` on a dataset-level failure (empty or stale source, missing column, a rule
    failing on more than ``max_invalid_share`` of rows, or a volume drop beyond ``max_volume_drop`` against
    ``previous_rows``). With ``data_docs_run`` the same GX results are also rendered as a Data Docs site
    (:attr:`ValidationOutcome.data_docs`) under that run name. Large tables go through
    :class:`FeatureValidator` batch by batch instead.
    """
    validator = FeatureValidator(settings, extracted=len(features), previous_rows=previous_rows)
    validator.check_dataset(features[[c for c in (*DATASET_COLUMNS, "profiling_consent") if c in features]])
    valid = validator.validate_batch(features)
    return replace(validator.finish(data_docs_run=data_docs_run), valid=valid)


def _short(value: Any, limit: int = 200) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
