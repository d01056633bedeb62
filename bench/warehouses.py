"""Synthetic DuckDB warehouses for the benchmark, cached between runs.

A warehouse is identified by its size, seed, as-of date and a fingerprint of the generator's source, so a
change to ``persona_pipeline/warehouse/sample.py`` regenerates it and reruns of the benchmark reuse it. Files are
written under a temporary name and renamed when complete: an interrupted run never leaves a half-written
warehouse in the cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Warehouse:
    """A cached sample warehouse and its table sizes."""

    path: Path
    customers: int
    orders: int
    events: int
    seed: int
    as_of: date
    size_bytes: int
    generated_s: float  # time it took to generate (when it was first made)
    cached: bool  # True when this run reused an existing file

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["as_of"] = self.as_of.isoformat()
        return data


def generator_fingerprint() -> str:
    """Short hash of the sample generator's source: cached warehouses follow the code that made them."""
    from persona_pipeline.warehouse import sample

    return hashlib.sha256(Path(sample.__file__).read_bytes()).hexdigest()[:10]


def warehouse_path(cache_dir: Path, customers: int, *, seed: int, as_of: date) -> Path:
    """Where the warehouse of these parameters lives in the cache."""
    name = f"sample-{customers}-seed{seed}-{as_of.isoformat()}-{generator_fingerprint()}.duckdb"
    return cache_dir / "warehouses" / name


def ensure_warehouse(
    cache_dir: Path,
    customers: int,
    *,
    seed: int,
    as_of: date,
    progress: Callable[[str], None] | None = None,
) -> Warehouse:
    """Return the cached warehouse for these parameters, generating it first if it is missing."""
    from persona_pipeline.warehouse.sample import write_duckdb

    path = warehouse_path(cache_dir, customers, seed=seed, as_of=as_of)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return Warehouse(
            path=path,
            customers=customers,
            orders=int(meta["orders"]),
            events=int(meta["events"]),
            seed=seed,
            as_of=as_of,
            size_bytes=path.stat().st_size,
            generated_s=float(meta["generated_s"]),
            cached=True,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    written = write_duckdb(partial, customers, seed=seed, as_of=as_of, progress=progress)
    generated_s = round(time.perf_counter() - started, 2)
    partial.rename(path)
    meta = {**written, "seed": seed, "as_of": as_of.isoformat(), "generated_s": generated_s}
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return Warehouse(
        path=path,
        customers=customers,
        orders=int(written["orders"]),
        events=int(written["events"]),
        seed=seed,
        as_of=as_of,
        size_bytes=path.stat().st_size,
        generated_s=generated_s,
        cached=False,
    )


def warehouse_from_json(data: dict[str, object]) -> Warehouse:
    """Inverse of :meth:`Warehouse.to_json`."""
    return Warehouse(
        path=Path(str(data["path"])),
        customers=int(str(data["customers"])),
        orders=int(str(data["orders"])),
        events=int(str(data["events"])),
        seed=int(str(data["seed"])),
        as_of=date.fromisoformat(str(data["as_of"])),
        size_bytes=int(str(data["size_bytes"])),
        generated_s=float(str(data["generated_s"])),
        cached=bool(data["cached"]),
    )


def run(params: dict[str, object]) -> dict[str, object]:
    """Child task: make (or find) the warehouse in a process of its own, so the parent stays small."""
    warehouse = ensure_warehouse(
        Path(str(params["cache_dir"])),
        int(str(params["customers"])),
        seed=int(str(params["seed"])),
        as_of=date.fromisoformat(str(params["as_of"])),
        progress=print,
    )
    return warehouse.to_json()
