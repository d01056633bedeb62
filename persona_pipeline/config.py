"""One validated ``Settings`` object, read from a YAML file and ``PERSONA_*`` environment variables.

Precedence (later wins): built-in defaults < YAML file (``--config`` or ``PERSONA_CONFIG``) <
environment variables ``PERSONA_<SECTION>__<KEY>`` (values parsed as YAML scalars, e.g.
``PERSONA_IMAGING__MAX_IMAGES_PER_RUN=20``) < explicit overrides (DAG params, CLI flags).
Errors name the offending key and say how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from persona_pipeline.contracts import ImageStyle, stable_hash
from persona_pipeline.exceptions import ConfigError

ENV_PREFIX = "PERSONA_"
SegmentationMethod = Literal["rfm", "kmeans", "rules"]
ImageProviderName = Literal["offline", "openai"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseSettings(_Section):
    """Where customer data is read from and where the output tables are written."""

    url: str = "duckdb:///data/warehouse.duckdb"
    source_schema: str | None = None
    mapping: str | None = None  # YAML source mapping; None = the sample warehouse's layout
    output_schema: str = "persona"
    chunk_rows: int = Field(default=100_000, ge=1_000)
    duckdb_memory_limit: str | None = "512MB"  # DuckDB only: cap its memory (it spills to disk beyond this)

    @field_validator("source_schema", "output_schema")
    @classmethod
    def _plain_identifier(cls, value: str | None) -> str | None:
        # Schema names end up in SQL: refuse anything but a plain identifier now, not after a run has spent money.
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", value):
            raise ValueError(
                f"{value!r} is not a plain SQL identifier (letters, digits, _ and $, starting with a letter or _, "
                "at most 63 characters)"
            )
        return value


class StorageSettings(_Section):
    """Object store for intermediate Parquet, images, persona JSON and the gallery."""

    kind: Literal["local", "s3"] = "local"
    root: str = "data/object_store"  # local store only
    bucket: str | None = None  # s3 only
    prefix: str = "persona-pipeline"
    endpoint_url: str | None = None
    region: str | None = None
    public_base_url: str | None = None  # e.g. a CDN in front of the bucket; else presigned URLs
    presign_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    server_side_encryption: Literal["AES256", "aws:kms"] | None = "AES256"
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> StorageSettings:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("storage.bucket is required when storage.kind is 's3'")
        return self


class ValidationSettings(_Section):
    """Row-level rules and the dataset-level thresholds that stop a run."""

    min_age: int = 18
    max_age: int = 110
    max_monetary: float = 1_000_000.0
    max_frequency: int = 10_000
    max_invalid_share: float = Field(default=0.05, ge=0.0, le=1.0)
    max_volume_drop: float = Field(default=0.5, ge=0.0, le=1.0)
    min_rows: int = Field(default=1, ge=1)
    freshness_days: int | None = Field(default=30, ge=1)  # newest order must be at most this old at D
    allowed_genders: tuple[str, ...] | None = ("female", "male", "non_binary", "unknown")
    allowed_income_bands: tuple[str, ...] | None = ("<25k", "25-50k", "50-75k", "75-100k", "100-150k", "150k+")
    # Extract parts are validated in batches of about this many rows: memory is bounded by a batch, and each GX
    # run has a fixed cost (~0.15 s), so batches much smaller than this spend their time on overhead.
    batch_rows: int = Field(default=250_000, ge=1_000)


class SegmentationSettings(_Section):
    """How customers are grouped, and the privacy floor every group must clear."""

    method: SegmentationMethod = "rfm"
    min_segment_size: int = Field(default=50, ge=2)
    seed: int = 42
    rules_file: str | None = None  # YAML segment rules, used by method "rules" (see docs/segmentation.md)

    @model_validator(mode="after")
    def _rules_file_for_rules(self) -> SegmentationSettings:
        if self.method == "rules" and not self.rules_file:
            raise ValueError(
                "segmentation.rules_file is required when segmentation.method is 'rules' "
                "(point it at a YAML file like persona_pipeline/examples/segments-rules.yaml)"
            )
        return self


class PersonaSettings(_Section):
    """How segments are described and drawn."""

    styles: tuple[ImageStyle, ...] = ("portrait", "lifestyle")
    variants_per_style: int = Field(default=1, ge=1, le=6)
    lift_min_support: int = Field(default=20, ge=1)
    lift_min_share: float = Field(default=0.05, ge=0.0, le=1.0)
    max_prompt_chars: int = Field(default=1_000, ge=100, le=32_000)
    # Narrative text: "template" (rules over traits) or "llm" (an OpenAI-compatible chat model that sees only
    # the persona's aggregate traits; any failure falls back to the template). Key: OPENAI_API_KEY.
    narrative: Literal["template", "llm"] = "template"
    narrative_model: str = "gpt-4.1-mini"
    narrative_base_url: str | None = None
    narrative_max_chars: int = Field(default=1_200, ge=200, le=8_000)
    narrative_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("styles")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("personas.styles needs at least one of portrait, illustration, lifestyle")
        return value


class ImagingSettings(_Section):
    """Which image provider draws the personas, and what a run may spend."""

    provider: ImageProviderName = "offline"
    model: str = "gpt-image-2"
    size: str = "1024x1024"
    quality: Literal["low", "medium", "high", "auto"] = "medium"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    offline_size: int = Field(default=512, ge=64, le=2048)
    max_images_per_run: int = Field(default=200, ge=0)
    max_usd_per_run: float = Field(default=10.0, ge=0.0)
    concurrency: int = Field(default=4, ge=1, le=64)
    # OpenAI-compatible endpoint settings (credentials come from the Airflow connection or OPENAI_API_KEY).
    base_url: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=10)
    azure_endpoint: str | None = None
    azure_api_version: str | None = None
    # USD per image by model, then by "quality:size" (or "*" for any). Estimates: set them from your contract.
    prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "gpt-image-2": {
                "low:1024x1024": 0.011,
                "medium:1024x1024": 0.042,
                "high:1024x1024": 0.167,
                "low:*": 0.016,
                "medium:*": 0.063,
                "high:*": 0.25,
                "auto:*": 0.063,
            },
        }
    )

    def price_per_image(self, model: str | None = None) -> float:
        """Configured USD price of one image at this quality and size (0.0 for the offline renderer)."""
        if self.provider == "offline" and model is None:
            return 0.0
        table = self.prices.get(model or self.model)
        if table is None:
            raise ConfigError(
                f"imaging.prices has no entry for model {model or self.model!r}: add one so the budget can be enforced"
            )
        for key in (f"{self.quality}:{self.size}", f"{self.quality}:*", "*"):
            if key in table:
                return float(table[key])
        raise ConfigError(
            f"imaging.prices.{model or self.model} has no price for quality:size {self.quality}:{self.size} "
            "(add that key, or a '{quality}:*' or '*' fallback)"
        )


class PrivacySettings(_Section):
    """How customer keys appear in the published membership table."""

    # plain: the warehouse key; hashed: HMAC-SHA256 with a secret salt (joinable by whoever holds the salt);
    # omit: no membership table rows at all.
    membership_keys: Literal["plain", "hashed", "omit"] = "plain"
    salt_env: str = "PERSONA_MEMBERSHIP_SALT"
    # latest: the membership table holds only the newest date, so a customer erased at the source is gone from
    # it after the next run; all: keep every date's membership.
    membership_history: Literal["latest", "all"] = "latest"


class Settings(_Section):
    """Everything a run needs to know. Build with :func:`load_settings`."""

    warehouse: WarehouseSettings = WarehouseSettings()
    storage: StorageSettings = StorageSettings()
    validation: ValidationSettings = ValidationSettings()
    segmentation: SegmentationSettings = SegmentationSettings()
    personas: PersonaSettings = PersonaSettings()
    imaging: ImagingSettings = ImagingSettings()
    privacy: PrivacySettings = PrivacySettings()

    def config_hash(self) -> str:
        """Hash of the effective configuration, recorded with every run."""
        return stable_hash(self.model_dump(mode="json"))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Return a copy with dotted-key overrides applied, e.g. ``{"imaging.provider": "openai"}``."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            _set_dotted(data, dotted.split("."), value)
        return _validate(data, source="overrides")


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings from ``path`` (or ``$PERSONA_CONFIG``), then environment, then ``overrides``."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    config_path = path if path is not None else env.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        source = str(config_path)
        data = _read_yaml(Path(config_path))
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        _set_dotted(data, keys, yaml.safe_load(raw) if raw != "" else None)
        source = f"{source} + environment"
    settings = _validate(data, source=source)
    return settings.with_overrides(overrides) if overrides else settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist: pass --config or set PERSONA_CONFIG") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
    return loaded


def _set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {'.'.join(keys)}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def _validate(data: dict[str, Any], *, source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(root)"
            env_name = ENV_PREFIX + "__".join(str(part).upper() for part in error["loc"])
            hint = "remove it (unknown key)" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"  {key}: {hint} (got {error.get('input')!r}; YAML key {key} or env {env_name})")
        raise ConfigError(f"invalid configuration from {source}:\n" + "\n".join(problems)) from None
