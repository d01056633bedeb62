"""``python -m bench``: throughput, memory, image fan-out and DAG import cost of the persona pipeline, in one run.

For each size (default 100k and 1M customers; orders ≈ 10× and events ≈ 20× that) it makes or reuses a cached
synthetic DuckDB warehouse, then measures in separate child processes:

* the pipeline end to end (extract → publish, offline renderer, local store), per stage: seconds, rows/s and
  peak RSS, plus the whole-process peak RSS;
* the floor: one DuckDB SQL statement computing the same features and per-segment aggregates;
* the naive peer: pandas over whole raw tables (peak RSS too).

Then the image fan-out against a local OpenAI-compatible server (latency and 429s), and each DAG file's import
time beyond ``import airflow.sdk``. It prints markdown tables and writes everything as JSON. Read
``docs/performance.md`` for what the figures mean and the targets.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, BenchError, rounded, run_child
from bench.machine import machine_info
from bench.report import evaluate_targets, markdown
from bench.warehouses import Warehouse, warehouse_from_json

DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"
SAMPLE_AS_OF = date(2026, 12, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the persona pipeline against a one-statement SQL floor and a naive pandas peer.",
    )
    parser.add_argument(
        "--customers",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        metavar="N",
        help="warehouse sizes in customers (default: 100000 1000000; 10000000 on request)",
    )
    parser.add_argument("--seed", type=int, default=7, help="sample generator seed (default 7)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=SAMPLE_AS_OF, help="logical date D")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the results here (default: bench/results/bench-<UTC time>.json)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_CACHE,
        help="cache of generated warehouses and scratch space (default: bench/.cache)",
    )
    parser.add_argument(
        "--warmup-customers",
        type=int,
        default=2_000,
        help="size of the warm-up run that pays imports before each measured run (0: none)",
    )
    parser.add_argument("--floor-repeats", type=int, default=3, help="runs of the floor statement (median)")
    parser.add_argument("--skip-naive", action="store_true", help="do not run the naive pandas peer")
    parser.add_argument(
        "--naive-max-customers",
        type=int,
        default=2_000_000,
        help="skip the naive peer above this size (it holds every raw row in memory)",
    )
    parser.add_argument(
        "--naive-reader",
        choices=("duckdb", "read_sql"),
        default="duckdb",
        help="how the naive peer loads the raw tables: DuckDB's .df() (default) or pd.read_sql over SQLAlchemy",
    )
    parser.add_argument(
        "--task-processes",
        action="store_true",
        help="also run every stage in its own fresh process, as the DAG's tasks run, and report each one's peak RSS",
    )
    parser.add_argument("--skip-fanout", action="store_true", help="do not measure the image fan-out")
    parser.add_argument("--fanout-personas", type=int, default=40, help="personas (one image each) to draw")
    parser.add_argument("--concurrency", type=int, default=4, help="image requests in flight at once")
    parser.add_argument("--latency", type=float, default=1.5, help="seconds the fake image API takes per image")
    parser.add_argument("--rate-429", type=float, default=0.05, help="share of image requests answered 429")
    parser.add_argument("--retry-after", type=float, default=0.2, help="Retry-After of those 429s, in seconds")
    parser.add_argument("--skip-dag-import", action="store_true", help="do not measure DAG import times")
    parser.add_argument("--dag-runs", type=int, default=5, help="fresh interpreters per DAG file (median)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="write pyinstrument profiles (HTML and text) of every stage at the largest size",
    )
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch directory of this run")
    parser.add_argument(
        "--render", type=Path, default=None, metavar="JSON", help="only print the tables of an earlier run's JSON"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if any(n < 100 for n in args.customers):
        parser.error("--customers: every size must be at least 100")
    if args.concurrency < 1 or args.fanout_personas < 1 or args.latency < 0:
        parser.error("--concurrency and --fanout-personas must be ≥ 1 and --latency ≥ 0")
    return args


class _Progress:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)


def _load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _code_state() -> dict[str, Any]:
    """The commit measured and the pipeline files that differed from it (figures belong to that code)."""

    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(["git", *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip("\n") if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", "persona_pipeline", "dags")
    return {
        "commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "uncommitted": [line[3:] for line in status.splitlines()] if status else [],
    }


def _size_result(
    warehouse: Warehouse,
    pipeline: dict[str, Any],
    floor: dict[str, Any],
    naive: dict[str, Any] | None,
    load: dict[str, float | None],
) -> dict[str, Any]:
    pipeline_s = float(pipeline["pipeline_s"])
    floor_s = float(floor["floor_s"])
    naive_s = None if naive is None else float(naive["naive_s"])
    pipeline_cpu = float(pipeline["pipeline_cpu_s"])
    floor_cpu = float(floor["floor_cpu_s"])
    naive_cpu = None if naive is None else float(naive["naive_cpu_s"])
    tasks = pipeline.get("task_processes")
    return {
        "customers": warehouse.customers,
        "orders": warehouse.orders,
        "events": warehouse.events,
        "pipeline_s": rounded(pipeline_s),
        "floor_s": rounded(floor_s),
        "naive_s": rounded(naive_s),
        "pipeline_cpu_s": rounded(pipeline_cpu),
        "floor_cpu_s": rounded(floor_cpu),
        "naive_cpu_s": rounded(naive_cpu),
        "peak_rss_mb": pipeline["process_peak_rss_mb"],
        "floor_peak_rss_mb": floor["process_peak_rss_mb"],
        "naive_peak_rss_mb": None if naive is None else naive["process_peak_rss_mb"],
        "us_per_customer": rounded(pipeline_s / warehouse.customers * 1e6, 2),
        "ratios": {
            "pipeline_over_floor": rounded(pipeline_s / floor_s if floor_s else None, 2),
            "naive_over_pipeline": rounded(naive_s / pipeline_s if naive_s is not None and pipeline_s else None, 3),
            "pipeline_over_floor_cpu": rounded(pipeline_cpu / floor_cpu if floor_cpu else None, 2),
            "naive_over_pipeline_cpu": rounded(
                naive_cpu / pipeline_cpu if naive_cpu is not None and pipeline_cpu else None, 3
            ),
        },
        "load_average_before": load,
        "stages": pipeline["stages"],
        "warmup": pipeline.get("warmup"),
        # --task-processes: every stage in its own interpreter, as the DAG runs them
        "task_processes": tasks,
        "task_peak_rss_mb": max(float(f["peak_rss_mb"]) for f in tasks.values()) if tasks else None,
        "warehouse": warehouse.to_json(),
        "pipeline": {k: v for k, v in pipeline.items() if k not in {"stages", "warmup", "task_processes"}},
        "floor": {k: v for k, v in floor.items() if k != "sql"},
        "naive": naive,
    }


def _task_processes(warehouse: Warehouse, as_of: date, workdir: Path, scratch: Path) -> dict[str, Any]:
    """Each stage in a fresh interpreter over a shared store: seconds and the process's peak RSS."""
    from bench.pipeline import STAGES

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run_db = workdir / "warehouse.duckdb"
    shutil.copyfile(warehouse.path, run_db)
    figures = {}
    try:
        for stage in STAGES:
            out = run_child(
                "stage",
                {"warehouse": str(run_db), "store": str(workdir / "store"), "as_of": as_of.isoformat(), "stage": stage},
                scratch=scratch,
                label=f"task-{warehouse.customers}-{stage}",
            )
            figures[stage] = {
                "seconds": out["seconds"],
                "cpu_s": out["cpu_s"],
                "peak_rss_mb": out["process_peak_rss_mb"],
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def run(args: argparse.Namespace, progress: _Progress) -> dict[str, Any]:
    """Every measurement of one benchmark run; returns the report (see ``docs/performance.md``)."""
    cache = args.workdir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "scratch").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-", dir=cache / "scratch"))
    sizes = sorted(set(args.customers))
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(args.argv),
        "machine": machine_info(),
        "code": _code_state(),
        "parameters": {
            "customers": sizes,
            "seed": args.seed,
            "as_of": args.as_of.isoformat(),
            "warmup_customers": args.warmup_customers,
            "floor_repeats": args.floor_repeats,
            "naive_reader": args.naive_reader,
        },
    }
    try:

        def make(n: int) -> Warehouse:
            progress(f"warehouse with {n:,} customers: generating or reusing the cached one")
            made = warehouse_from_json(
                run_child(
                    "warehouse",
                    {"cache_dir": str(cache), "customers": n, "seed": args.seed, "as_of": args.as_of.isoformat()},
                    scratch=scratch,
                    label=f"warehouse-{n}",
                )
            )
            state = "cached" if made.cached else f"generated in {made.generated_s:.1f}s"
            progress(
                f"warehouse {n:,}: {made.orders:,} orders, {made.events:,} events, "
                f"{made.size_bytes / 2**20:,.0f} MB ({state})"
            )
            return made

        warm = make(args.warmup_customers) if args.warmup_customers > 0 else None
        warehouses = {n: make(n) for n in sizes}

        results = []
        for n in sizes:
            warehouse = warehouses[n]
            params: dict[str, Any] = {
                "warehouse": str(warehouse.path),
                "customers": n,
                "as_of": args.as_of.isoformat(),
                "workdir": str(scratch / f"pipeline-{n}"),
                "warmup_warehouse": str(warm.path) if warm else None,
                "warmup_customers": args.warmup_customers,
            }
            progress(f"{n:,}: pipeline (fresh process{', warm-up first' if warm else ''})")
            load: dict[str, float | None] = {"pipeline": _load_average()}
            pipeline = run_child("pipeline", params, scratch=scratch, label=f"pipeline-{n}")
            progress(f"{n:,}: pipeline {pipeline['pipeline_s']:.1f}s, peak RSS {pipeline['process_peak_rss_mb']:,} MB")
            if args.task_processes:
                progress(f"{n:,}: every stage in its own process")
                pipeline["task_processes"] = _task_processes(warehouse, args.as_of, scratch / f"tasks-{n}", scratch)
            load["floor"] = _load_average()
            floor = run_child(
                "floor",
                {"warehouse": str(warehouse.path), "as_of": args.as_of.isoformat(), "repeats": args.floor_repeats},
                scratch=scratch,
                label=f"floor-{n}",
            )
            progress(f"{n:,}: floor {floor['floor_s']:.2f}s (median of {args.floor_repeats})")
            naive = None
            if not args.skip_naive and n <= args.naive_max_customers:
                load["naive"] = _load_average()
                naive = run_child(
                    "naive",
                    {"warehouse": str(warehouse.path), "as_of": args.as_of.isoformat(), "reader": args.naive_reader},
                    scratch=scratch,
                    label=f"naive-{n}",
                )
                progress(f"{n:,}: naive pandas {naive['naive_s']:.1f}s, peak RSS {naive['process_peak_rss_mb']:,} MB")
            results.append(_size_result(warehouse, pipeline, floor, naive, load))
        report["results"] = results

        report["profile_dir"] = None
        if args.profile is not None:
            largest = sizes[-1]
            profile_dir = args.profile.resolve()
            progress(f"{largest:,}: profiling every stage with pyinstrument into {profile_dir}")
            run_child(
                "pipeline",
                {
                    "warehouse": str(warehouses[largest].path),
                    "customers": largest,
                    "as_of": args.as_of.isoformat(),
                    "workdir": str(scratch / f"profile-{largest}"),
                    "warmup_warehouse": str(warm.path) if warm else None,
                    "warmup_customers": args.warmup_customers,
                    "profile_dir": str(profile_dir),
                },
                scratch=scratch,
                label=f"profile-{largest}",
            )
            report["profile_dir"] = str(profile_dir)

        fanout = None
        if not args.skip_fanout:
            progress(
                f"image fan-out: {args.fanout_personas} images, concurrency {args.concurrency}, "
                f"latency {args.latency}s, {args.rate_429:.0%} 429s"
            )
            fanout = run_child(
                "fanout",
                {
                    "personas": args.fanout_personas,
                    "concurrency": args.concurrency,
                    "latency_s": args.latency,
                    "rate_429": args.rate_429,
                    "retry_after_s": args.retry_after,
                    "seed": args.seed,
                },
                scratch=scratch,
                label="fanout",
            )
            progress(
                f"fan-out {fanout['fanout_s']:.2f}s vs ideal {fanout['fanout_ideal_s']:.2f}s; "
                f"rerun calls {fanout['rerun_calls']}"
            )
        report["fanout"] = fanout
        report["fanout_s"] = None if fanout is None else fanout["fanout_s"]
        report["fanout_ideal_s"] = None if fanout is None else fanout["fanout_ideal_s"]
        report["rerun_calls"] = None if fanout is None else fanout["rerun_calls"]

        dag_import = None
        if not args.skip_dag_import:
            from bench.dag_import import measure_all

            progress(f"DAG import: {args.dag_runs} fresh interpreter(s) per file")
            dag_import = measure_all(args.dag_runs)
        report["dag_import"] = dag_import
        report["targets"] = evaluate_targets(results, fanout, dag_import)
    finally:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        print(markdown(json.loads(args.render.read_text(encoding="utf-8"))))
        return 0
    progress = _Progress()
    try:
        report = run(args, progress)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    out = args.json or DEFAULT_RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(markdown(report))
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
