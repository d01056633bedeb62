"""What a task of the persona DAG needs at run time: settings (file + env + Params + Connections) and a store.

Precedence, later wins: built-in defaults < settings file (``$PERSONA_CONFIG``) < ``PERSONA_*`` variables <
the run's Params < Connections (warehouse URL, object store and image API credentials). A Param left at
``None`` means "as configured".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_pipeline.config import Settings
    from persona_pipeline.stages import StageContext
    from persona_pipeline.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """The DAG run's Params, typed. ``None`` = keep the configured value."""

    segmentation_method: str | None = None
    image_provider: str | None = None
    image_styles: tuple[str, ...] | None = None
    variants_per_style: int | None = None
    max_images: int | None = None
    max_usd: float | None = None
    dry_run: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> RunOptions:
        """Read the Params of a run (missing keys count as ``None``)."""
        params = params or {}

        def opt(name: str) -> Any:
            value = params.get(name)
            return None if value in (None, "", []) else value

        styles = opt("image_styles")
        return cls(
            segmentation_method=opt("segmentation_method"),
            image_provider=opt("image_provider"),
            image_styles=tuple(str(s) for s in styles) if styles is not None else None,
            variants_per_style=int(opt("variants_per_style")) if opt("variants_per_style") is not None else None,
            max_images=int(opt("max_images")) if opt("max_images") is not None else None,
            max_usd=float(opt("max_usd")) if opt("max_usd") is not None else None,
            dry_run=bool(params.get("dry_run", False)),
        )

    def overrides(self) -> dict[str, Any]:
        """Dotted settings overrides for :func:`persona_pipeline.config.load_settings`."""
        pairs: dict[str, Any] = {
            "segmentation.method": self.segmentation_method,
            "imaging.provider": "offline" if self.dry_run else self.image_provider,
            "personas.styles": list(self.image_styles) if self.image_styles is not None else None,
            "personas.variants_per_style": self.variants_per_style,
            "imaging.max_images_per_run": self.max_images,
            "imaging.max_usd_per_run": self.max_usd,
        }
        return {key: value for key, value in pairs.items() if value is not None}


def settings_for_run(options: RunOptions) -> Settings:
    """Settings of this run: file and environment, the Params, then the ``persona_warehouse`` connection."""
    from persona_airflow.connections import warehouse_url_from_connection
    from persona_pipeline.config import load_settings

    settings = load_settings(overrides=options.overrides())
    url = warehouse_url_from_connection()
    if url is not None:
        settings = settings.with_overrides({"warehouse.url": url})
    return settings


def object_store(settings: Settings) -> ObjectStore:
    """The object store of ``settings``; an S3 store gets its client from ``aws_default`` when that is defined."""
    from persona_airflow.connections import s3_client
    from persona_pipeline.storage import S3ObjectStore, open_store

    storage = settings.storage
    if storage.kind != "s3":
        return open_store(storage)
    client = s3_client(storage)
    if client is None:
        return open_store(storage)  # boto3's own credential chain (env, profile, instance role)
    assert storage.bucket is not None  # guaranteed by StorageSettings validation
    return S3ObjectStore(
        storage.bucket,
        storage.prefix,
        client=client,
        public_base_url=storage.public_base_url,
        presign_seconds=storage.presign_seconds,
        server_side_encryption=storage.server_side_encryption,
        kms_key_id=storage.kms_key_id,
    )


def run_store(settings: Settings, day: date, *, dry_run: bool) -> ObjectStore:
    """The store a run writes to: the real one, or for a dry run a sandbox in front of it."""
    store = object_store(settings)
    if not dry_run:
        return store
    from persona_airflow.dry_run import DRY_RUN_SUFFIX, SandboxStore

    sandbox_settings = settings.with_overrides({"storage.prefix": settings.storage.prefix + DRY_RUN_SUFFIX})
    sandbox = object_store(sandbox_settings)
    return SandboxStore(sandbox, store, own_prefix=f"dt={day.isoformat()}/")


def run_date(context: Mapping[str, Any]) -> date:
    """Logical date D of a run: the end of its data interval (= the logical date for cron schedules)."""
    moment = context.get("data_interval_end") or context.get("logical_date")
    if moment is None and context.get("dag_run") is not None:
        moment = context["dag_run"].run_after
    if moment is None:
        moment = date_from_run_id(str(context.get("run_id", "")))
    if moment is None:
        raise ValueError(f"cannot tell the logical date of run {context.get('run_id')!r}")
    return moment.date() if isinstance(moment, datetime) else moment


def date_from_run_id(run_id: str) -> date | None:
    """D from a generated run id such as ``scheduled__2026-12-01T00:00:00+00:00`` (None for custom ids)."""
    _, sep, stamp = run_id.partition("__")
    if not sep:
        return None
    try:
        return date.fromisoformat(stamp[:10])
    except ValueError:
        return None


def stage_context(context: Mapping[str, Any] | None = None) -> StageContext:
    """The library's stage context for the running task (call it inside a task)."""
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    from persona_pipeline import stages

    options = RunOptions.from_params(context.get("params"))
    settings = settings_for_run(options)
    day = run_date(context)
    store = run_store(settings, day, dry_run=options.dry_run)
    if options.dry_run:
        log.warning("dry run: offline images, outputs in %r, no BI table is written", store)
    return stages.make_context(settings, day, str(context["run_id"]), store=store)


def image_credentials(settings: Settings) -> dict[str, str | None]:
    """Keyword arguments for :func:`persona_pipeline.stages.generate_persona_images` (empty when offline)."""
    if settings.imaging.provider != "openai":
        return {}
    from persona_airflow.connections import openai_credentials

    credentials = openai_credentials()
    if credentials is None:
        return {}  # OPENAI_API_KEY / imaging.base_url, as for the CLI
    return {"api_key": credentials.api_key, "base_url": credentials.base_url}
