"""Targets and the markdown summary of a benchmark run."""

from __future__ import annotations

from typing import Any

ONE_M = 1_000_000
TEN_M = 10_000_000


def _target(
    name: str, measured: float | None, limit: float, *, at_least: bool = False, unit: str = ""
) -> dict[str, Any]:
    met = None if measured is None else (measured >= limit if at_least else measured <= limit)
    return {
        "target": name,
        "measured": None if measured is None else round(float(measured), 3),
        "limit": limit,
        "comparison": ">=" if at_least else "<=",
        "unit": unit,
        "met": met,
    }


def evaluate_targets(
    results: list[dict[str, Any]], fanout: dict[str, Any] | None, dag_import: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """The issue's targets, each met (True), missed (False) or not measured in this run (None)."""
    by_size = {int(r["customers"]): r for r in results}
    one = by_size.get(ONE_M)
    ten = by_size.get(TEN_M)

    def ratio(row: dict[str, Any] | None, key: str) -> float | None:
        return None if row is None else row["ratios"].get(key)

    targets = [
        _target("1M: pipeline time ≤ 2.5× floor", ratio(one, "pipeline_over_floor"), 2.5, unit="×"),
        _target(
            "1M: pipeline ≥ 10× faster than naive pandas",
            ratio(one, "naive_over_pipeline"),
            10.0,
            at_least=True,
            unit="×",
        ),
        _target("1M: pipeline peak RSS ≤ 1 GB", None if one is None else one["peak_rss_mb"], 1024.0, unit="MB"),
        _target(
            "10M: time per customer ≤ 1.1× that of 1M",
            None if one is None or ten is None else ten["us_per_customer"] / one["us_per_customer"],
            1.1,
            unit="×",
        ),
        _target("10M: pipeline peak RSS ≤ 3 GB", None if ten is None else ten["peak_rss_mb"], 3072.0, unit="MB"),
        _target(
            "1M: largest task process peak RSS ≤ 1 GB (each stage in its own process, as in the DAG)",
            None if one is None else one.get("task_peak_rss_mb"),
            1024.0,
            unit="MB",
        ),
        _target(
            "10M: largest task process peak RSS ≤ 3 GB (each stage in its own process, as in the DAG)",
            None if ten is None else ten.get("task_peak_rss_mb"),
            3072.0,
            unit="MB",
        ),
        _target(
            "image fan-out ≤ 1.15× ideal",
            None if fanout is None else fanout.get("fanout_over_ideal"),
            1.15,
            unit="×",
        ),
        _target("image rerun makes 0 calls", None if fanout is None else fanout.get("rerun_calls"), 0, unit="calls"),
    ]
    for item in dag_import or []:
        if item.get("reference") or "error" in item:
            continue
        targets.append(
            _target(f"{item['file']}: import ≤ 0.3 s beyond airflow.sdk", item.get("dag_beyond_sdk_s"), 0.3, unit="s")
        )
    return targets


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows)
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The run as markdown tables: sizes, stages, warm-up, fan-out, DAG import, targets."""
    machine = report["machine"]
    lines = [
        f"Machine: {machine['nproc']} CPU(s) {machine['cpu_model']}, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, load at start {machine['load_average_at_start']}",
        "",
    ]
    results = report["results"]
    if results:
        lines += _table(
            [
                "customers",
                "orders",
                "events",
                "pipeline s",
                "floor s",
                "naive s",
                "pipeline ÷ floor",
                "naive ÷ pipeline",
                "pipeline ÷ floor (CPU)",
                "naive ÷ pipeline (CPU)",
                "µs / customer",
                "peak RSS MB",
                "naive peak RSS MB",
            ],
            [
                [
                    r["customers"],
                    r["orders"],
                    r["events"],
                    r["pipeline_s"],
                    r["floor_s"],
                    r["naive_s"],
                    r["ratios"]["pipeline_over_floor"],
                    r["ratios"]["naive_over_pipeline"],
                    r["ratios"].get("pipeline_over_floor_cpu"),
                    r["ratios"].get("naive_over_pipeline_cpu"),
                    _int(r["us_per_customer"]),
                    _int(r["peak_rss_mb"]),
                    _int(r["naive_peak_rss_mb"]),
                ]
                for r in results
            ],
        )
        lines.append("")
        header = ["stage"]
        for r in results:
            size = f"{r['customers']:,}"
            header += [f"{size}: s", f"{size}: rows/s", f"{size}: peak RSS MB"]
            if r.get("task_processes"):
                header += [f"{size}: own process s", f"{size}: own process peak RSS MB"]
        stage_names = list(results[0]["stages"])
        rows = []
        for name in stage_names:
            row: list[Any] = [name]
            for r in results:
                figures = r["stages"].get(name, {})
                row += [figures.get("seconds"), _int(figures.get("rows_per_s")), _int(figures.get("peak_rss_mb"))]
                if r.get("task_processes"):
                    task = r["task_processes"].get(name, {})
                    row += [task.get("seconds"), _int(task.get("peak_rss_mb"))]
            rows.append(row)
        lines += _table(header, rows)
        lines.append("")
        warm = [r for r in results if r.get("warmup")]
        for r in warm:
            stages = r["warmup"]["stages"]
            slowest = sorted(stages.items(), key=lambda item: -float(item[1] or 0))[:3]
            lines.append(
                f"First-run overhead before the {r['customers']:,} run (warm-up over {r['warmup']['customers']:,} "
                f"customers, imports included): {r['warmup']['seconds']:.1f}s; slowest stages "
                + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in slowest)
            )
        if warm:
            lines.append("")
    fanout = report.get("fanout")
    if fanout:
        lines += _table(
            [
                "images",
                "concurrency",
                "latency s",
                "429 share",
                "wall s",
                "ideal s",
                "÷ ideal",
                "retried",
                "rerun calls",
                "rerun s",
            ],
            [
                [
                    fanout["images"],
                    fanout["concurrency"],
                    fanout["latency_s"],
                    fanout["rate_429"],
                    fanout["fanout_s"],
                    fanout["fanout_ideal_s"],
                    fanout["fanout_over_ideal"],
                    fanout["retried_requests"],
                    fanout["rerun_calls"],
                    fanout["rerun_s"],
                ]
            ],
        )
        lines.append("")
    dag_import = report.get("dag_import")
    if dag_import:
        lines += _table(
            ["DAG file", "import airflow.sdk s", "file beyond sdk s", "modules added", "heavy packages added"],
            [
                [
                    d["file"] + (" (reference)" if d.get("reference") else ""),
                    d.get("sdk_import_s"),
                    d.get("dag_beyond_sdk_s"),
                    d.get("modules_added"),
                    ", ".join(d.get("heavy_packages_added") or []) or "none",
                ]
                for d in dag_import
            ],
        )
        lines.append("")
    verdict = {True: "met", False: "**not met**", None: "not measured"}
    lines += _table(
        ["target", "measured", "met?"],
        [
            [
                t["target"],
                None if t["measured"] is None else f"{_fmt(t['measured'])} {t['unit']}".strip(),
                verdict[t["met"]],
            ]
            for t in report["targets"]
        ],
    )
    return "\n".join(lines) + "\n"
