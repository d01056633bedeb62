"""
### Persona nightly

Turns the warehouse's customer data into visual customer personas, once per logical date **D** (the end of
the data interval): extract per-customer features as of D → validate (Great Expectations; bad rows quarantined)
→ segment (k-anonymous) → profile → persona cards → one mapped image task per persona (pool `persona_images`)
→ publish (BI tables replaced for D in one transaction, Parquet copies, persona JSON, HTML gallery).

Every task calls one function of `persona_pipeline.stages`; data moves through the object store under
`dt=D/`, XCom carries only small summaries. Rerunning or backfilling a date replaces that date's outputs.

**Connections** (each optional; without it the settings and environment are used): `persona_warehouse`
(the warehouse, any SQLAlchemy database), `aws_default` (the S3 object store), `openai_default` (image API).

**Params** (empty = as configured in `$PERSONA_CONFIG` / `PERSONA_*`): `segmentation_method`,
`image_provider`, `image_styles`, `variants_per_style`, `max_images`, `max_usd`, and `dry_run`: run every
stage with offline images into a sandbox prefix (`<prefix>-dry-run`), write no BI table, and skip publish's
asset event. See `docs/operations.md`.

On failure a one-paragraph summary is logged and `persona_runs` records `failed` for D (a successful D is
kept). Three failed runs in a row pause the DAG.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

# A name-only asset: a custom URI scheme would make Airflow load every provider (boto3 included) at parse time.
PERSONAS_ASSET = Asset(name="persona_pipeline.personas")
IMAGE_POOL = "persona_images"
STYLES = ["portrait", "illustration", "lifestyle"]


def _on_failure(context: Any) -> None:
    """Log the failure summary and record the failed run (the glue lives in plugins/persona_airflow)."""
    from persona_airflow.alerts import on_dag_failure

    on_dag_failure(context)


@dag(
    dag_id="persona_nightly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # Pause the DAG after three failed runs in a row instead of failing (and alerting) every night.
    max_consecutive_failed_dag_runs=3,
    dagrun_timeout=timedelta(hours=6),
    on_failure_callback=_on_failure,
    doc_md=__doc__,
    tags=["personas", "marketing", "nightly"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "segmentation_method": Param(
            None, type=["null", "string"], enum=[None, "rfm", "kmeans", "rules"], description="How to segment"
        ),
        "image_provider": Param(
            None, type=["null", "string"], enum=[None, "offline", "openai"], description="Who draws"
        ),
        "image_styles": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": STYLES},
            description='Image styles per persona, e.g. ["portrait", "lifestyle"]',
        ),
        "variants_per_style": Param(None, type=["null", "integer"], minimum=1, maximum=6, description="Variants"),
        "max_images": Param(None, type=["null", "integer"], minimum=0, description="Most images to generate"),
        "max_usd": Param(None, type=["null", "number"], minimum=0, description="Most USD to spend on images"),
        "dry_run": Param(False, type="boolean", description="Offline images, sandbox outputs, no BI tables"),
    },
)
def persona_nightly() -> None:
    @task
    def extract() -> dict[str, Any]:
        from persona_airflow.runtime import stage_context

        from persona_pipeline import stages

        return stages.extract(stage_context())

    @task
    def validate(_: Any) -> dict[str, Any]:
        from persona_airflow.runtime import stage_context

        from persona_pipeline import stages

        return stages.validate(stage_context())

    @task
    def segment(_: Any) -> dict[str, Any]:
        from persona_airflow.runtime import stage_context

        from persona_pipeline import stages

        return stages.segment(stage_context())

    @task
    def profile(_: Any) -> dict[str, Any]:
        from persona_airflow.runtime import stage_context

        from persona_pipeline import stages

        return stages.profile(stage_context())

    @task
    def build_personas(_: Any) -> list[str]:
        from persona_airflow.runtime import image_credentials, stage_context

        from persona_pipeline import stages

        ctx = stage_context()
        # The image plan prices every prompt with the configured provider, so it needs the credentials too.
        return stages.build_personas(ctx, **image_credentials(ctx.settings))

    @task(
        pool=IMAGE_POOL,
        map_index_template="{{ task.op_kwargs['persona_id'] }}",
        execution_timeout=timedelta(minutes=30),
    )
    def generate_images(persona_id: str) -> dict[str, Any]:
        from persona_airflow.runtime import image_credentials, stage_context

        from persona_pipeline import stages

        ctx = stage_context()
        return stages.generate_persona_images(ctx, persona_id, **image_credentials(ctx.settings))

    @task(outlets=[PERSONAS_ASSET])
    def publish(images: Any) -> dict[str, Any]:
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowSkipException
        from persona_airflow.runtime import RunOptions, stage_context

        from persona_pipeline import stages

        context = get_current_context()
        ctx = stage_context(context)
        dry_run = RunOptions.from_params(context["params"]).dry_run
        summary = stages.publish(ctx, write_tables=not dry_run)
        if dry_run:
            # Skipped, not succeeded: no asset event, so nothing downstream reacts to a rehearsal.
            raise AirflowSkipException(f"dry run: gallery at {summary['gallery_url']}; no BI table was written")
        return summary

    persona_ids = build_personas(profile(segment(validate(extract()))))
    publish(generate_images.expand(persona_id=persona_ids))


persona_nightly()
