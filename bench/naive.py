"""The naive peer: pandas over whole raw tables, as the usual RFM tutorials do it (task ``naive``).

It reads ``SELECT * FROM customers``, ``orders`` and ``events`` into DataFrames, by default through DuckDB's own
fast ``.df()`` conversion (the kindest way to load them; ``reader="read_sql"`` uses the tutorials'
``pd.read_sql`` over SQLAlchemy instead, which builds every row as Python objects first). Then it filters,
groups by customer, pivots channel, category, interest and device counts, merges everything onto the customers,
derives age, tenure, recency and the top values, scores buyers with ``qcut`` quintiles, maps them to the RFM
segment labels with the tutorials' regex ``replace`` and aggregates per segment (medians, means, value counts of
every categorical trait). The result matches the floor's in content; the peak RSS of the child process is the
point as much as the time.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from bench.common import CATEGORICAL, MB, RssSampler, rounded


def _top(counts: Any) -> Any:
    """Column label of each row's largest count (None where every count is zero)."""
    top = counts.idxmax(axis=1)
    return top.where(counts.max(axis=1) > 0)


def naive_segments(customers: Any, orders: Any, events: Any, as_of: date) -> Any:
    """Features, RFM segments and per-segment aggregates from whole tables (pure pandas)."""
    import pandas as pd

    from persona_pipeline.segmentation.rfm import PROSPECTS, SEGMENT_MAP

    cutoff = pd.Timestamp(as_of)
    orders = orders[orders["ordered_at"] < cutoff]
    completed = orders[orders["status"] == "completed"]
    per_customer = completed.groupby("customer_id").agg(
        frequency=("order_id", "count"), monetary=("amount", "sum"), last_order_at=("ordered_at", "max")
    )
    returns = orders[orders["status"] == "returned"].groupby("customer_id").size().rename("returns")
    channels = completed.groupby(["customer_id", "channel"]).size().unstack(fill_value=0)
    spend = completed.pivot_table(index="customer_id", columns="category", values="amount", aggfunc="sum", fill_value=0)

    events = events[events["occurred_at"] < cutoff]
    recent = events[events["occurred_at"] >= cutoff - pd.Timedelta(days=90)]
    events_90d = recent.groupby("customer_id").size().rename("events_90d")
    interests = events.groupby(["customer_id", "category"]).size().unstack(fill_value=0)
    devices = events.groupby(["customer_id", "device"]).size().unstack(fill_value=0)

    df = customers[customers["signup_date"].isna() | (pd.to_datetime(customers["signup_date"]) < cutoff)]
    df = df.merge(per_customer, left_on="customer_id", right_index=True, how="left")
    df = df.merge(returns, left_on="customer_id", right_index=True, how="left")
    df = df.merge(events_90d, left_on="customer_id", right_index=True, how="left")
    df = df.merge(_top(channels).rename("preferred_channel"), left_on="customer_id", right_index=True, how="left")
    df = df.merge(_top(spend).rename("top_category"), left_on="customer_id", right_index=True, how="left")
    df = df.merge(_top(interests).rename("top_interest"), left_on="customer_id", right_index=True, how="left")
    df = df.merge(_top(devices).rename("preferred_device"), left_on="customer_id", right_index=True, how="left")
    df[["frequency", "monetary", "returns", "events_90d"]] = df[
        ["frequency", "monetary", "returns", "events_90d"]
    ].fillna(0)
    birth = pd.to_datetime(df["birth_date"])
    df["age"] = (cutoff - birth).dt.days // 365.25
    df["tenure_days"] = (cutoff - pd.to_datetime(df["signup_date"])).dt.days
    df["recency_days"] = (cutoff - df["last_order_at"]).dt.total_seconds() / 86_400
    df["aov"] = df["monetary"] / df["frequency"].where(df["frequency"] > 0)

    df = df[df["profiling_consent"].fillna(False).astype(bool)]
    buyers = df[df["frequency"] > 0].copy()
    buyers["R"] = pd.qcut(buyers["recency_days"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]).astype(int)
    f = pd.qcut(buyers["frequency"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    m = pd.qcut(buyers["monetary"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
    buyers["FM"] = ((f + m) / 2 + 0.5).astype(int)
    buyers["RFM"] = buyers["R"].astype(str) + buyers["FM"].astype(str)
    segment_map = {f"^{r}{fm}$": label for r, fm, label in SEGMENT_MAP}
    buyers["segment"] = buyers["RFM"].replace(segment_map, regex=True)
    df = df.merge(buyers[["customer_id", "segment"]], on="customer_id", how="left")
    df["segment"] = df["segment"].fillna(PROSPECTS)

    summary = df.groupby("segment").agg(
        size=("customer_id", "count"),
        median_age=("age", "median"),
        median_recency_days=("recency_days", "median"),
        median_frequency=("frequency", "median"),
        median_monetary=("monetary", "median"),
        median_tenure_days=("tenure_days", "median"),
        mean_aov=("aov", "mean"),
        mean_events_90d=("events_90d", "mean"),
        returns=("returns", "sum"),
        orders=("frequency", "sum"),
    )
    summary["share"] = summary["size"] / summary["size"].sum()
    summary["return_rate"] = summary["returns"] / summary["orders"].where(summary["orders"] > 0)
    distributions = {column: df.groupby("segment")[column].value_counts() for column in CATEGORICAL}
    return summary.sort_values("size", ascending=False), distributions


def _read_tables(path: str, reader: str) -> tuple[Any, Any, Any]:
    """The three raw tables, whole: DuckDB's own ``.df()`` or the tutorials' ``pd.read_sql`` over SQLAlchemy."""
    tables = ("customers", "orders", "events")
    if reader == "duckdb":
        import duckdb

        with duckdb.connect(path, read_only=True) as con:
            customers, orders, events = (con.execute(f"SELECT * FROM {name}").df() for name in tables)
        return customers, orders, events
    if reader == "read_sql":
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(f"duckdb:///{path}", connect_args={"read_only": True})
        try:
            customers, orders, events = (pd.read_sql(f"SELECT * FROM {name}", engine) for name in tables)
        finally:
            engine.dispose()
        return customers, orders, events
    raise ValueError(f"unknown reader {reader!r}: use 'duckdb' or 'read_sql'")


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Child task: load the three tables whole, then compute; times and peak RSS of each half."""
    as_of = date.fromisoformat(params["as_of"])
    with RssSampler() as sampler:
        started, cpu_started = time.perf_counter(), time.process_time()
        customers, orders, events = _read_tables(params["warehouse"], params.get("reader", "duckdb"))
        read_s = time.perf_counter() - started
        read_peak = sampler.window_max()
        sampler.reset()
        summary, _distributions = naive_segments(customers, orders, events, as_of)
        total_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        compute_peak = sampler.window_max()
    return {
        "reader": params.get("reader", "duckdb"),
        "naive_s": rounded(total_s),
        "naive_cpu_s": rounded(cpu_s),
        "read_s": rounded(read_s),
        "compute_s": rounded(total_s - read_s),
        "read_peak_rss_mb": rounded(read_peak / MB, 1),
        "compute_peak_rss_mb": rounded(compute_peak / MB, 1),
        "segments": len(summary),
        "segment_sizes": {str(k): int(v) for k, v in summary["size"].items()},
    }
