"""What happens when a run of the persona DAG fails: one readable paragraph in the log, and a ``failed`` run row.

The paragraph says what failed (task, reason), how far the run got (counts from the stage summaries the run
left under ``dt=D/`` in the object store), whether the published outputs for D changed (they never do: publish
replaces a date in one transaction or not at all) and where to look next.

The run row: ``persona_runs`` gets ``status = 'failed'`` for D, unless D already has a successful row. A failed
rerun must not hide a good partition, and the ``latest_*`` views (newest ``dt`` with ``status = 'success'``)
are unaffected either way. Dry runs record nothing. The callback never raises: an alert that crashes is no alert.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_pipeline.config import Settings
    from persona_pipeline.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class FailureReport:
    """Everything the failure paragraph says, kept structured for tests and other notifiers."""

    dag_id: str
    run_id: str
    day: date | None
    failed_task: str | None
    reason: str | None
    dry_run: bool = False
    progress: dict[str, Any] = field(default_factory=dict)
    partition_uri: str | None = None
    runs_table: str | None = None
    recorded: str = "not recorded"
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The one-paragraph summary."""
        day = self.day.isoformat() if self.day else "an unknown date"
        parts = [
            f"Persona run FAILED: DAG {self.dag_id}, run {self.run_id}, date {day}"
            + (" (dry run)" if self.dry_run else "")
            + (f"; failed task: {self.failed_task}" if self.failed_task else "")
            + (f" ({self.reason})" if self.reason else "")
            + "."
        ]
        parts.append(f"Progress before the failure: {describe_progress(self.progress)}.")
        if not self.dry_run:
            parts.append(
                f"Published outputs for {day} are unchanged (BI tables are replaced in one transaction or not at "
                f"all); run record: {self.recorded}."
            )
        where = [f"the task log (Airflow UI: Dag {self.dag_id} > run {self.run_id} > task {self.failed_task or '?'})"]
        if self.partition_uri:
            where.append(f"the stage summaries under {self.partition_uri}")
        if self.runs_table:
            where.append(f"table {self.runs_table}")
        parts.append("Look at " + ", ".join(where) + ".")
        if self.day:
            parts.append(
                "Clear the failed task to resume, or rerun the date with `airflow backfill create --dag-id "
                f"{self.dag_id} --from-date {day} --to-date {day} --reprocess-behavior failed`."
            )
        if self.problems:
            parts.append("While writing this summary: " + "; ".join(self.problems) + ".")
        return " ".join(parts)


def describe_progress(progress: Mapping[str, Any]) -> str:
    """Counts in words, e.g. ``3,000 customers extracted (2,900 valid, ...), 7 segments, ...``."""
    if not progress:
        return "no stage finished"
    said = []
    if "extracted" in progress:
        text = f"{progress['extracted']:,} customers extracted"
        if "valid" in progress:
            text += (
                f" ({progress['valid']:,} valid, {progress['quarantined']:,} quarantined, "
                f"{progress['excluded']:,} excluded)"
            )
        said.append(text)
    if "segments" in progress:
        said.append(f"{progress['segments']} segment(s)")
    if "personas" in progress:
        said.append(f"{progress['personas']} persona(s)")
    if "images_planned" in progress:
        said.append(
            f"{progress.get('image_personas_done', 0)}/{progress['personas_with_images']} persona image task(s) "
            f"done ({progress['images_planned']} image(s) planned, {progress['images_to_generate']} to generate)"
        )
    return ", ".join(said)


# The DAG's stages in order, and the summaries each leaves under dt=D/.
STAGES = ("extract", "validate", "segment", "profile", "build_personas", "generate_images", "publish")


def read_progress(store: ObjectStore, day: date, failed_stage: str | None = None) -> dict[str, Any]:
    """Counts from the stage summaries of ``dt=D/`` (missing files mean the stage never ran).

    With ``failed_stage`` only the stages before it are read: later summaries in the partition belong to an
    earlier attempt (a rerun of a published date finds yesterday's complete set) and would overstate progress.
    """
    from persona_pipeline.storage import read_json

    prefix = f"dt={day.isoformat()}"
    done = STAGES[: STAGES.index(failed_stage)] if failed_stage in STAGES else STAGES
    progress: dict[str, Any] = {}

    def load(name: str) -> Any:
        key = f"{prefix}/{name}"
        return read_json(store, key) if store.head(key) is not None else None

    extract = load("extract.json") if "extract" in done else None
    if extract:
        progress["extracted"] = int(extract.get("rows", 0))
        progress["started_at"] = extract.get("started_at")
    validation = load("validation.json") if "validate" in done else None
    if validation:
        accounting = validation["accounting"]
        progress.update({k: int(accounting[k]) for k in ("extracted", "valid", "quarantined", "excluded")})
    segments = load("segments.json") if "segment" in done else None
    if segments:
        progress["segments"] = len(segments.get("sizes", {}))
        progress["method"] = segments.get("method")
    if "build_personas" in done:
        personas = store.list_keys(f"{prefix}/personas/")
        if personas:
            progress["personas"] = len(personas)
        plan = load("image_plan.json")
        if plan:
            # build_personas clears image_records/, so the records present are this attempt's.
            jobs = plan.get("jobs", [])
            progress["images_planned"] = len(jobs)
            progress["images_to_generate"] = int(plan.get("planned_calls", 0))
            progress["personas_with_images"] = len({job["prompt"]["persona_id"] for job in jobs})
            progress["image_personas_done"] = len(store.list_keys(f"{prefix}/image_records/"))
    return progress


def record_failed_run(
    settings: Settings, day: date, run_id: str, progress: Mapping[str, Any], *, image_provider: str
) -> str:
    """Write ``status = 'failed'`` for ``day`` in ``persona_runs`` unless the date already has a successful row.

    Returns what happened, in words. Earlier failed rows for the date are replaced, so there is at most one row.
    """
    import sqlalchemy as sa

    from persona_pipeline.publish import ensure_schema
    from persona_pipeline.warehouse.engine import warehouse_engine

    with warehouse_engine(settings.warehouse.url) as engine:
        runs = ensure_schema(engine, settings.warehouse.output_schema)["persona_runs"]
        with engine.begin() as conn:
            statuses = set(conn.execute(sa.select(runs.c.status).where(runs.c.dt == day)).scalars())
            if "success" in statuses:
                return f"kept the successful run row of {day.isoformat()} (a failed rerun does not replace it)"
            conn.execute(runs.delete().where(runs.c.dt == day))
            started = progress.get("started_at")
            conn.execute(
                runs.insert().values(
                    dt=day,
                    run_id=run_id[:250],
                    config_hash=settings.config_hash(),
                    method=progress.get("method") or settings.segmentation.method,
                    image_provider=image_provider,
                    status="failed",
                    started_at=datetime.fromisoformat(started) if started else None,
                    finished_at=datetime.now(UTC).replace(tzinfo=None),
                    rows_extracted=progress.get("extracted"),
                    rows_valid=progress.get("valid"),
                    rows_quarantined=progress.get("quarantined"),
                    rows_excluded=progress.get("excluded"),
                    segments=progress.get("segments"),
                    personas=progress.get("personas"),
                )
            )
    return f"status 'failed' recorded for {day.isoformat()}"


def _failed_task(context: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(label with map index, task id) of the task whose failure failed the run, if the context says."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None, None
    map_index = getattr(ti, "map_index", -1)
    label = f"{ti.task_id}[{map_index}]" if map_index is not None and map_index >= 0 else str(ti.task_id)
    return label, str(ti.task_id)


def failure_report(context: Mapping[str, Any]) -> FailureReport:
    """Gather the report for a failed run from its callback ``context`` (best effort, never raises)."""
    from persona_airflow.runtime import RunOptions, run_date, run_store, settings_for_run

    dag = context.get("dag")
    failed_label, failed_stage = _failed_task(context)
    report = FailureReport(
        dag_id=str(getattr(dag, "dag_id", "persona_nightly")),
        run_id=str(context.get("run_id", "?")),
        day=None,
        failed_task=failed_label,
        reason=context.get("reason"),
    )
    try:
        report.day = run_date(context)
    except Exception as exc:
        report.problems.append(f"run date unknown ({exc})")
        return report
    options = RunOptions.from_params(context.get("params"))
    report.dry_run = options.dry_run
    try:
        try:
            settings = settings_for_run(options)
        except Exception as exc:
            # Invalid Params may be why the run failed; the store and warehouse do not depend on them.
            report.problems.append(f"the run's Params are not valid settings ({type(exc).__name__}: {exc})")
            settings = settings_for_run(RunOptions(dry_run=options.dry_run))
        store = run_store(settings, report.day, dry_run=options.dry_run)
    except Exception as exc:
        report.problems.append(f"settings or object store unavailable ({type(exc).__name__}: {exc})")
        return report
    report.partition_uri = store.uri_for(f"dt={report.day.isoformat()}/")
    report.runs_table = f"{settings.warehouse.output_schema}.persona_runs"
    try:
        report.progress = read_progress(store, report.day, failed_stage)
    except Exception as exc:
        report.problems.append(f"object store unreadable ({type(exc).__name__}: {exc})")
    if options.dry_run:
        report.recorded = "none (dry run)"
        return report
    try:
        report.recorded = record_failed_run(
            settings, report.day, report.run_id, report.progress, image_provider=settings.imaging.provider
        )
    except Exception as exc:
        report.recorded = f"not written ({type(exc).__name__}: {exc})"
    return report


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: log the summary paragraph and record the failed run."""
    try:
        report = failure_report(context)
        log.error("%s", report.text())
    except Exception:
        log.exception("persona failure callback could not build its summary for run %s", context.get("run_id"))
