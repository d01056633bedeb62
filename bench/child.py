"""Entry point of a benchmark child process: ``python -m bench.child TASK PARAMS_JSON OUT_PATH``.

The task module is imported only here, so a child loads just what its measurement needs. The result gets the
child's whole-process peak RSS (``VmHWM``) added as ``process_peak_rss_mb`` (and ``ru_maxrss`` as
``ru_maxrss_mb``) and is written to ``OUT_PATH``.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

from bench.common import MB, peak_rss_bytes, ru_maxrss_bytes

#: task name -> module whose ``run(params)`` performs it
TASKS = {
    "pipeline": "bench.pipeline",
    "stage": "bench.task",
    "floor": "bench.floor",
    "naive": "bench.naive",
    "fanout": "bench.fanout",
    "warehouse": "bench.warehouses",
}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in TASKS:
        print(f"usage: python -m bench.child {{{','.join(TASKS)}}} PARAMS_JSON OUT_PATH", file=sys.stderr)
        return 2
    task, params, out = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(TASKS[task])
    result = module.run(json.loads(params))
    result["process_peak_rss_mb"] = round(peak_rss_bytes() / MB, 1)
    result["ru_maxrss_mb"] = round(ru_maxrss_bytes() / MB, 1)
    Path(out).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
