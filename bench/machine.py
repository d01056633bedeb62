"""The machine and software a benchmark ran on (figures are only comparable on the same machine)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = (
    "duckdb",
    "duckdb-engine",
    "pandas",
    "pyarrow",
    "numpy",
    "sqlalchemy",
    "great-expectations",
    "scikit-learn",
    "openai",
    "apache-airflow",
    "pyinstrument",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU count and model, memory, load at the start, OS, Python and library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = _read("/proc/loadavg").split()[:3]
    return {
        "nproc": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": [float(x) for x in load] if load else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
