"""Benchmarks of the persona pipeline: throughput, memory, image fan-out and DAG parse cost.

Run ``python -m bench --help`` (or ``make bench BENCH_ARGS="..."``). The results and how to read them are in
``docs/performance.md``. Nothing here is imported by the pipeline itself.
"""

from __future__ import annotations
