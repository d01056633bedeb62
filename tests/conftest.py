"""Shared fixtures: an isolated Airflow home, a small seeded sample warehouse and settings pointing at tmp dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATE = date(2026, 12, 1)
SMALL_CUSTOMERS = 3_000
_AIRFLOW_HOME = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # Airflow reads its configuration at import time: point it at a throwaway home before anything imports it.
    home = Path(tempfile.mkdtemp(prefix="persona-airflow-"))
    config.stash[_AIRFLOW_HOME] = home
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    for name in [n for n in os.environ if n.startswith("PERSONA_") and n != "PERSONA_REQUIRE_SERVICES"]:
        del os.environ[name]


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_AIRFLOW_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite Airflow metadata database in the session's AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return home


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with the synthetic retailer (3,000 customers), shared read-only by the session."""
    from persona_pipeline.warehouse.sample import write_duckdb

    path = tmp_path_factory.mktemp("warehouse") / "sample.duckdb"
    write_duckdb(path, SMALL_CUSTOMERS, seed=11, as_of=SAMPLE_DATE)
    return path


@pytest.fixture
def warehouse_copy(sample_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the sample warehouse that a test may write output tables into."""
    target = tmp_path / "warehouse.duckdb"
    target.write_bytes(sample_warehouse.read_bytes())
    return target


@pytest.fixture
def settings_factory(tmp_path: Path) -> Iterator[object]:
    """Build settings for a warehouse path with a local store under tmp_path."""
    from persona_pipeline.config import load_settings

    def make(warehouse: Path, **overrides: object) -> object:
        base = {
            "warehouse.url": f"duckdb:///{warehouse}",
            "storage.root": str(tmp_path / "store"),
            "segmentation.min_segment_size": 30,
            "validation.freshness_days": 30,
        }
        return load_settings(environ={}, overrides={**base, **overrides})

    yield make
