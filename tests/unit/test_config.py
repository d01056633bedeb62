"""Settings: precedence, environment parsing and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_pipeline.config import Settings, load_settings
from persona_pipeline.exceptions import ConfigError


def test_defaults_are_the_embedded_demo() -> None:
    settings = load_settings(environ={})
    assert settings.warehouse.url.startswith("duckdb:///")
    assert settings.storage.kind == "local"
    assert settings.imaging.provider == "offline"
    assert settings.segmentation.min_segment_size == 50


def test_yaml_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("segmentation:\n  method: kmeans\n  min_segment_size: 80\nimaging:\n  max_images_per_run: 5\n")
    env = {"PERSONA_IMAGING__MAX_IMAGES_PER_RUN": "7", "PERSONA_SEGMENTATION__MIN_SEGMENT_SIZE": "90"}
    settings = load_settings(path, environ=env, overrides={"segmentation.min_segment_size": 100})
    assert settings.segmentation.method == "kmeans"  # from YAML
    assert settings.imaging.max_images_per_run == 7  # env beats YAML, parsed as a number
    assert settings.segmentation.min_segment_size == 100  # overrides beat env


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("imaging:\n  provider: openai\n")
    assert load_settings(environ={"PERSONA_CONFIG": str(path)}).imaging.provider == "openai"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("segmentation:\n  mehtod: rfm\n", "segmentation.mehtod: remove it (unknown key)"),
        ("segmentation:\n  min_segment_size: 1\n", "PERSONA_SEGMENTATION__MIN_SEGMENT_SIZE"),
        ("imaging:\n  provider: midjourney\n", "imaging.provider"),
        ("storage:\n  kind: s3\n", "storage.bucket is required"),
    ],
)
def test_invalid_config_names_key_and_fix(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, environ={})
    assert expected in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("imaging: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})


def test_config_hash_changes_with_settings() -> None:
    base = Settings()
    assert base.config_hash() == Settings().config_hash()
    assert base.config_hash() != base.with_overrides({"segmentation.method": "kmeans"}).config_hash()


def test_price_lookup_and_missing_price() -> None:
    settings = Settings().with_overrides({"imaging.provider": "openai", "imaging.quality": "high"})
    assert settings.imaging.price_per_image() == pytest.approx(0.167)
    unknown = settings.with_overrides({"imaging.model": "gpt-image-9"})
    with pytest.raises(ConfigError, match=r"imaging\.prices has no entry for model 'gpt-image-9'"):
        unknown.imaging.price_per_image()
