"""One pipeline stage in a fresh interpreter, as an Airflow task runs it (task ``stage``).

The DAG runs every stage as its own task process, so what a worker needs is the peak memory of one stage's
process (its imports included), not that of one process running every stage in turn. The stages share nothing
but the object store and the warehouse, exactly as in the DAG.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import rounded
from bench.pipeline import _settings


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Run ``params["stage"]`` over the store ``params["store"]`` and warehouse ``params["warehouse"]``."""
    from persona_pipeline import stages

    settings = _settings(Path(params["warehouse"]), Path(params["store"]))
    ctx = stages.make_context(settings, date.fromisoformat(params["as_of"]), "bench-tasks", progress=lambda _: None)
    name = params["stage"]
    started, cpu_started = time.perf_counter(), time.process_time()
    if name == "generate_persona_images":
        # One process for every persona here; the DAG maps one task per persona, each smaller than this.
        prefix = ctx.key("personas") + "/"
        for key in ctx.store.list_keys(prefix):
            stages.generate_persona_images(ctx, key.removeprefix(prefix).removesuffix(".json"))
    elif name in {"extract", "validate", "segment", "profile", "build_personas", "publish"}:
        getattr(stages, name)(ctx)
    else:
        raise ValueError(f"unknown stage {name!r}")
    return {
        "stage": name,
        "seconds": rounded(time.perf_counter() - started),
        "cpu_s": rounded(time.process_time() - cpu_started),
    }
