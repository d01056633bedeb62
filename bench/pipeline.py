"""The pipeline's compute end to end, stage by stage, in one child process (task ``pipeline``).

The stages are called in the order of :func:`persona_pipeline.stages.run_all` (extract → validate → segment →
profile → build_personas → one generate_persona_images per persona → publish) on a private copy of the cached
warehouse, with a fresh local object store and the offline portrait renderer, so every run does the full work
(no image cache hits). Each stage gets its wall time, its CPU time (all threads of the process; steadier than
wall time on a shared machine) and the largest RSS a background sampler saw during it.

An optional warm-up run over a small warehouse comes first in the same process: it pays the one-off costs
(imports of pandas, SQLAlchemy, Great Expectations, scikit-learn, first-use caches) and is reported on its
own, so the measured run shows the per-customer work that scales. Every Airflow task is a fresh process and
does pay those costs once per task; the warm-up figures show how much that is.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import MB, RssSampler, current_rss_bytes, rounded

#: stage names in run order (``generate_persona_images`` covers every persona of the run)
STAGES: tuple[str, ...] = (
    "extract",
    "validate",
    "segment",
    "profile",
    "build_personas",
    "generate_persona_images",
    "publish",
)


def _settings(warehouse: Path, store_root: Path) -> Any:
    from persona_pipeline.config import load_settings

    return load_settings(
        environ={},
        overrides={
            "warehouse.url": f"duckdb:///{warehouse}",
            "storage.kind": "local",
            "storage.root": str(store_root),
            "imaging.provider": "offline",
        },
    )


def _call_stage(name: str, ctx: Any, state: dict[str, Any]) -> tuple[int, str]:
    """Run one stage; returns (rows processed, unit of those rows)."""
    from persona_pipeline import stages

    if name == "extract":
        out = stages.extract(ctx)
        state["extracted"] = int(out["rows"])
        return state["extracted"], "customers"
    if name == "validate":
        out = stages.validate(ctx)
        state["accounting"] = out["accounting"]
        return int(out["accounting"]["extracted"]), "customers"
    if name == "segment":
        out = stages.segment(ctx)
        state["segments"] = len(out["sizes"])
        return int(state["accounting"]["valid"]), "customers"
    if name == "profile":
        stages.profile(ctx)
        return int(state["accounting"]["valid"]), "customers"
    if name == "build_personas":
        state["persona_ids"] = stages.build_personas(ctx)
        return len(state["persona_ids"]), "personas"
    if name == "generate_persona_images":
        results = [stages.generate_persona_images(ctx, pid) for pid in state["persona_ids"]]
        state["images"] = sum(int(r["images"]) for r in results)
        return state["images"], "images"
    if name == "publish":
        out = stages.publish(ctx)
        state["published"] = out["counts"]
        return int(state["extracted"]), "customers"
    raise ValueError(f"unknown stage {name!r}")


def run_pipeline(
    warehouse: Path,
    workdir: Path,
    as_of: date,
    *,
    sampler: RssSampler,
    profile_dir: Path | None = None,
    profile_label: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every stage once over a copy of ``warehouse`` and return per-stage seconds, rows and peak RSS."""
    from persona_pipeline import stages

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    run_db = workdir / "warehouse.duckdb"
    shutil.copyfile(warehouse, run_db)  # publish writes output tables into the warehouse: keep the cache clean
    ctx = stages.make_context(_settings(run_db, workdir / "store"), as_of, "bench", progress=lambda _message: None)

    state: dict[str, Any] = {}
    figures: dict[str, dict[str, Any]] = {}
    sessions: list[Any] = []
    baseline_rss = current_rss_bytes()
    for name in STAGES:
        profiler = _start_profiler() if profile_dir is not None else None
        sampler.reset()
        started, cpu_started = time.perf_counter(), time.process_time()
        rows, unit = _call_stage(name, ctx, state)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        peak = sampler.window_max()
        if profiler is not None and profile_dir is not None:
            profiler.stop()
            _write_profile(profiler.last_session, profile_dir / f"{profile_label}{name}")
            sessions.append(profiler.last_session)
        figures[name] = {
            "seconds": rounded(seconds),
            "cpu_s": rounded(cpu_seconds),
            "rows": rows,
            "unit": unit,
            "rows_per_s": rounded(rows / seconds if seconds > 0 else None, 1),
            "peak_rss_mb": rounded(peak / MB, 1),
        }
        if progress is not None:
            progress(f"{name}: {seconds:.2f}s, {rows:,} {unit}, peak RSS {peak / MB:,.0f} MB")
    if sessions and profile_dir is not None:
        from pyinstrument.session import Session

        combined = sessions[0]
        for session in sessions[1:]:
            combined = Session.combine(combined, session)
        _write_profile(combined, profile_dir / f"{profile_label}all-stages")
    return {
        "pipeline_s": rounded(sum(float(f["seconds"]) for f in figures.values())),
        "pipeline_cpu_s": rounded(sum(float(f["cpu_s"]) for f in figures.values())),
        "stages": figures,
        "baseline_rss_mb": rounded(baseline_rss / MB, 1),
        "stages_peak_rss_mb": max(float(f["peak_rss_mb"]) for f in figures.values()),
        "accounting": state.get("accounting"),
        "segments": state.get("segments"),
        "personas": len(state.get("persona_ids", [])),
        "images": state.get("images"),
        "published_rows": state.get("published"),
    }


def _start_profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002, async_mode="disabled")
    profiler.start()
    return profiler


def _write_profile(session: Any, stem: Path) -> None:
    from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer

    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".html").write_text(HTMLRenderer().render(session), encoding="utf-8")
    text = ConsoleRenderer(unicode=True, color=False, short_mode=False).render(session)
    stem.with_suffix(".txt").write_text(text, encoding="utf-8")
    session.save(str(stem.with_suffix(".pyisession")))  # re-render: pyinstrument --load FILE --show-all


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Child task: optional warm-up, then the measured run (and its profile when ``profile_dir`` is set)."""
    workdir = Path(params["workdir"])
    as_of = date.fromisoformat(params["as_of"])
    profile_dir = Path(params["profile_dir"]) if params.get("profile_dir") else None
    result: dict[str, Any] = {"customers": int(params["customers"]), "warmup": None}
    with RssSampler() as sampler:
        if params.get("warmup_warehouse"):
            started = time.perf_counter()
            warm = run_pipeline(
                Path(params["warmup_warehouse"]),
                workdir / "warmup",
                as_of,
                sampler=sampler,
                profile_dir=profile_dir,
                profile_label="warmup-",
            )
            result["warmup"] = {
                "customers": int(params["warmup_customers"]),
                "seconds": rounded(time.perf_counter() - started),
                "stages": {name: figures["seconds"] for name, figures in warm["stages"].items()},
            }
            shutil.rmtree(workdir / "warmup", ignore_errors=True)
        measured = run_pipeline(
            Path(params["warehouse"]),
            workdir / "run",
            as_of,
            sampler=sampler,
            profile_dir=profile_dir,
            profile_label=f"pipeline-{params['customers']}-",
        )
    if not params.get("keep"):
        shutil.rmtree(workdir / "run", ignore_errors=True)
    result.update(measured)
    result["profiled"] = profile_dir is not None
    return result
