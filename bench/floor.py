"""The floor: one DuckDB SQL statement doing the pipeline's data work (task ``floor``).

The statement computes, as of D, the same per-customer features the extract stage does (age, tenure, frequency,
monetary value, returns, recency, per-channel order counts and per-category spend with the preferred channel and
top category, 90-day event count and per-interest/per-device event counts with the top interest and device),
keeps consenting customers, scores buyers into RFM quintiles with ``ntile`` and maps them to the same segment
labels as :mod:`persona_pipeline.segmentation.rfm`, and returns per-segment aggregates: size and share, medians
of age, recency, frequency, monetary value and tenure, mean order value, events and return rate, and the value
counts of every categorical trait (``histogram``), from which trait lifts follow directly.

It uses the sample warehouse's known vocabulary instead of discovering it, writes nothing and does no row-level
validation: it is a lower bound for what any implementation on this engine and machine can take, not a
replacement for the pipeline.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import date
from typing import Any

from bench.common import CATEGORICAL, rounded


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _score_condition(column: str, pattern: str) -> str:
    """``"5"`` → ``r = 5``; ``"[3-4]"`` → ``r BETWEEN 3 AND 4`` (the patterns of the RFM segment map)."""
    match = re.fullmatch(r"\[(\d)-(\d)\]", pattern)
    if match:
        return f"{column} BETWEEN {match.group(1)} AND {match.group(2)}"
    if re.fullmatch(r"\d", pattern):
        return f"{column} = {pattern}"
    raise ValueError(f"unsupported score pattern {pattern!r}")


def _argmax(names: tuple[str, ...], prefix: str) -> str:
    """The name whose count is largest (the first one on ties), NULL when every count is 0."""
    columns = [f"{prefix}_{_slug(n)}" for n in names]
    largest = f"greatest({', '.join(columns)})"
    whens = " ".join(f"WHEN {c} = {largest} THEN {_quote(n)}" for c, n in zip(columns, names, strict=True))
    return f"CASE WHEN {largest} > 0 THEN CASE {whens} END END"


def floor_sql(as_of: date) -> str:
    """The single statement (a pure function of D and the sample vocabulary)."""
    from persona_pipeline.segmentation.rfm import PROSPECTS, SEGMENT_MAP
    from persona_pipeline.warehouse.features import ENGAGEMENT_WINDOW_DAYS
    from persona_pipeline.warehouse.sample import CATEGORIES, CHANNELS, DEVICES

    cutoff = f"TIMESTAMP '{as_of.isoformat()} 00:00:00'"
    done = "status = 'completed'"
    order_columns = ",\n    ".join(
        [f"count(*) FILTER (WHERE {done} AND channel = {_quote(c)}) AS ch_{_slug(c)}" for c in CHANNELS]
        + [
            f"coalesce(sum(amount) FILTER (WHERE {done} AND category = {_quote(c)}), 0) AS cat_{_slug(c)}"
            for c in CATEGORIES
        ]
    )
    event_columns = ",\n    ".join(
        [f"count(*) FILTER (WHERE category = {_quote(c)}) AS int_{_slug(c)}" for c in CATEGORIES]
        + [f"count(*) FILTER (WHERE device = {_quote(d)}) AS dev_{_slug(d)}" for d in DEVICES]
    )
    segment_case = "\n      ".join(
        f"WHEN {_score_condition('r', r)} AND {_score_condition('fm', fm)} THEN {_quote(label)}"
        for r, fm, label in SEGMENT_MAP
    )
    histograms = ",\n  ".join(f"histogram({c}) AS {c}_counts" for c in CATEGORICAL)
    return f"""
WITH order_agg AS (
  SELECT customer_id,
    count(*) FILTER (WHERE {done}) AS frequency,
    coalesce(sum(amount) FILTER (WHERE {done}), 0) AS monetary,
    count(*) FILTER (WHERE status = 'returned') AS returns,
    max(ordered_at) FILTER (WHERE {done}) AS last_order_at,
    {order_columns}
  FROM orders WHERE ordered_at < {cutoff}
  GROUP BY customer_id
), event_agg AS (
  SELECT customer_id,
    count(*) FILTER (WHERE occurred_at >= {cutoff} - INTERVAL {ENGAGEMENT_WINDOW_DAYS} DAY) AS events_90d,
    {event_columns}
  FROM events WHERE occurred_at < {cutoff}
  GROUP BY customer_id
), features AS (
  SELECT c.customer_id, c.profiling_consent,
    date_part('year', age({cutoff}, c.birth_date::TIMESTAMP)) AS age,
    c.gender, c.region, c.income_band, c.occupation,
    date_diff('day', c.signup_date::TIMESTAMP, {cutoff}) AS tenure_days,
    coalesce(o.frequency, 0) AS frequency,
    coalesce(o.monetary, 0) AS monetary,
    coalesce(o.returns, 0) AS returns,
    coalesce(o.monetary, 0) / nullif(o.frequency, 0) AS aov,
    epoch({cutoff} - o.last_order_at) / 86400.0 AS recency_days,
    {_argmax(CHANNELS, "o.ch")} AS preferred_channel,
    {_argmax(CATEGORIES, "o.cat")} AS top_category,
    coalesce(e.events_90d, 0) AS events_90d,
    {_argmax(CATEGORIES, "e.int")} AS top_interest,
    {_argmax(DEVICES, "e.dev")} AS preferred_device
  FROM customers c
  LEFT JOIN order_agg o USING (customer_id)
  LEFT JOIN event_agg e USING (customer_id)
  WHERE c.signup_date IS NULL OR c.signup_date < {cutoff}
), scored AS (
  SELECT *,
    ntile(5) OVER (PARTITION BY frequency > 0 ORDER BY recency_days DESC) AS r,
    floor((ntile(5) OVER (PARTITION BY frequency > 0 ORDER BY frequency)
         + ntile(5) OVER (PARTITION BY frequency > 0 ORDER BY monetary)) / 2 + 0.5) AS fm
  FROM features WHERE profiling_consent
), segmented AS (
  SELECT *, CASE WHEN frequency = 0 THEN {_quote(PROSPECTS)}
      {segment_case}
    END AS segment
  FROM scored
)
SELECT segment,
  count(*) AS size,
  count(*) / sum(count(*)) OVER () AS share,
  median(age) AS median_age,
  median(recency_days) AS median_recency_days,
  median(frequency) AS median_frequency,
  median(monetary) AS median_monetary,
  median(tenure_days) AS median_tenure_days,
  avg(aov) AS mean_aov,
  avg(events_90d) AS mean_events_90d,
  sum(returns) / nullif(sum(frequency), 0) AS return_rate,
  {histograms}
FROM segmented
GROUP BY segment
ORDER BY size DESC
"""


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Child task: run the statement ``repeats`` times on the read-only warehouse; median and best time."""
    import duckdb

    sql = floor_sql(date.fromisoformat(params["as_of"]))
    repeats = max(1, int(params.get("repeats", 3)))
    timings: list[float] = []
    cpu: list[float] = []
    rows: list[tuple[Any, ...]] = []
    with duckdb.connect(params["warehouse"], read_only=True) as con:
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            rows = con.execute(sql).fetchall()
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    return {
        "floor_s": rounded(statistics.median(timings)),
        "floor_best_s": rounded(min(timings)),
        "floor_runs_s": [rounded(t) for t in timings],
        "floor_cpu_s": rounded(statistics.median(cpu)),
        "segments": len(rows),
        "customers_segmented": int(sum(int(row[1]) for row in rows)),
        "segment_sizes": {str(row[0]): int(row[1]) for row in rows},
        "sql": sql,
    }
