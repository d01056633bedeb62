"""
### Persona nightly

Turns the warehouse's customer data into visual customer personas, once per logical date **D** (the end of
the data interval): extract per-customer features as of D → validate (Great Expectations; bad rows quarantined)
→ segment (k-anonymous) → profile → persona cards → one mapped image task per persona → publish (BI tables
replaced for D in one transaction, Parquet copies, persona JSON, HTML gallery).

Every task calls one function of `persona_pipeline.stages`; data moves through the object store under
`dt=D/`, XCom carries only small summaries. Rerunning a date replaces that date's outputs.

Params: `segmentation_method`, `image_provider`. Settings come from `$PERSONA_CONFIG` and `PERSONA_*`
variables (see `docs/configuration.md`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

# A name-only asset: a custom URI scheme would make Airflow load every provider (boto3 included) at parse time.
PERSONAS_ASSET = Asset(name="persona_pipeline.personas")
IMAGE_POOL = "persona_images"


def _stage_context() -> Any:
    """Build the library's stage context from the running task's Airflow context (called inside tasks)."""
    from airflow.sdk import get_current_context

    from persona_pipeline import stages
    from persona_pipeline.config import load_settings

    context = get_current_context()
    params = context["params"]
    overrides = {
        "segmentation.method": params["segmentation_method"],
        "imaging.provider": params["image_provider"],
    }
    settings = load_settings(overrides=overrides)
    moment = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
    return stages.make_context(settings, moment.date(), context["run_id"])


@dag(
    dag_id="persona_nightly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
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
        "segmentation_method": Param("rfm", type="string", enum=["rfm", "kmeans"], description="How to segment"),
        "image_provider": Param("offline", type="string", enum=["offline", "openai"], description="Who draws"),
    },
)
def persona_nightly() -> None:
    @task
    def extract() -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.extract(_stage_context())

    @task
    def validate(_: Any) -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.validate(_stage_context())

    @task
    def segment(_: Any) -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.segment(_stage_context())

    @task
    def profile(_: Any) -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.profile(_stage_context())

    @task
    def build_personas(_: Any) -> list[str]:
        from persona_pipeline import stages

        return stages.build_personas(_stage_context())

    @task(pool=IMAGE_POOL, map_index_template="{{ task.op_kwargs['persona_id'] }}")
    def generate_images(persona_id: str) -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.generate_persona_images(_stage_context(), persona_id)

    @task(outlets=[PERSONAS_ASSET])
    def publish(images: Any) -> dict[str, Any]:
        from persona_pipeline import stages

        return stages.publish(_stage_context())

    persona_ids = build_personas(profile(segment(validate(extract()))))
    publish(generate_images.expand(persona_id=persona_ids))


persona_nightly()
