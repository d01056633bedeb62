"""What each DAG file costs to parse beyond ``import airflow.sdk`` itself.

Every measurement is a fresh interpreter that times ``import airflow.sdk`` and then ``runpy.run_path(dag_file)``
with ``time.perf_counter``; the second figure is what the file adds (its own imports and DAG construction),
which the DAG processor pays on every parse. Each file is measured several times and the medians are reported,
alongside Airflow's own ``example_python_operator.py`` for comparison. The child also reports how many modules
the file added to ``sys.modules`` and the heaviest top-level packages among them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, child_env, rounded

_MARKER = "BENCH_DAG_IMPORT "
_SCRIPT = f"""
import sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
before = set(sys.modules)
import runpy
runpy.run_path(sys.argv[1], run_name="bench_dag_import")
t2 = time.perf_counter()
added = sorted(set(sys.modules) - before)
tops = sorted({{name.split(".")[0] for name in added}})
import json
print({_MARKER!r} + json.dumps({{"sdk_s": t1 - t0, "dag_s": t2 - t1, "modules_added": len(added), "packages": tops}}))
"""


def example_dag() -> Path | None:
    """Airflow's ``example_python_operator.py`` in the installed standard provider, if present."""
    try:
        import airflow.providers.standard as standard
    except ImportError:
        return None
    path = Path(next(iter(standard.__path__))) / "example_dags" / "example_python_operator.py"
    return path if path.exists() else None


def dag_files() -> list[Path]:
    """The repository's DAG files (``dags/*.py``)."""
    return sorted(p for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def measure_file(path: Path, runs: int, airflow_home: Path) -> dict[str, Any]:
    """Median ``import airflow.sdk`` time and median extra time of ``path`` over ``runs`` fresh interpreters."""
    env = child_env(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    samples: list[dict[str, Any]] = []
    for _ in range(max(1, runs)):
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(path)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARKER)]
        if proc.returncode != 0 or not lines:
            return {"file": _display(path), "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        samples.append(json.loads(lines[-1][len(_MARKER) :]))
    heavy = {"pandas", "numpy", "sqlalchemy", "great_expectations", "sklearn", "pyarrow", "boto3", "openai", "duckdb"}
    packages = set(samples[-1]["packages"])
    return {
        "file": _display(path),
        "runs": len(samples),
        "sdk_import_s": rounded(statistics.median(s["sdk_s"] for s in samples)),
        "dag_beyond_sdk_s": rounded(statistics.median(s["dag_s"] for s in samples)),
        "dag_beyond_sdk_runs_s": [rounded(s["dag_s"]) for s in samples],
        "modules_added": samples[-1]["modules_added"],
        "heavy_packages_added": sorted(packages & heavy),
    }


def _display(path: Path) -> str:
    text = str(path)
    marker = f"site-packages{os.sep}"
    if marker in text:
        return text.split(marker, 1)[1]
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return text


def measure_all(runs: int) -> list[dict[str, Any]]:
    """Every repository DAG file, then Airflow's example for comparison (``"reference": True``)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        for path in dag_files():
            results.append({**measure_file(path, runs, Path(home)), "reference": False})
        example = example_dag()
        if example is not None:
            results.append({**measure_file(example, runs, Path(home)), "reference": True})
    return results
