"""Helpers shared by the benchmark's parent and child processes: memory sampling and child processes.

Every measurement that reports memory runs in a fresh child process (``python -m bench.child TASK PARAMS OUT``),
so its peak RSS is its own and not the sum of everything measured before it. The child writes its result as
JSON to ``OUT``; its stdout and stderr go to a log file that is shown when it fails.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which one and where its log is."""


def _status_bytes(field: bytes) -> int | None:
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size of this process now (``VmRSS`` from ``/proc/self/status``; Linux)."""
    value = _status_bytes(b"VmRSS:")
    return value if value is not None else ru_maxrss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process image so far (``VmHWM``, the kernel's high-water mark).

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used for this: Linux carries the *parent's* high-water mark
    into a child across fork and exec, so a child started by a big parent reports the parent's peak.
    ``VmHWM`` belongs to the new process image only.
    """
    value = _status_bytes(b"VmHWM:")
    return value if value is not None else ru_maxrss_bytes()


def ru_maxrss_bytes() -> int:
    """``ru_maxrss`` of this process (KiB on Linux); see :func:`peak_rss_bytes` for its caveat."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class RssSampler:
    """Samples this process's RSS in a background thread and keeps the maximum of the current window.

    ``reset()`` starts a new window (e.g. at the start of a stage) and ``window_max()`` returns the largest RSS
    seen since. Short spikes between two samples can be missed; ``ru_maxrss`` (:func:`peak_rss_bytes`) is the
    exact whole-process peak.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._window_max = current_rss_bytes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._observe()

    def _observe(self) -> int:
        rss = current_rss_bytes()
        with self._lock:
            self._window_max = max(self._window_max, rss)
        return rss

    def reset(self) -> None:
        """Start a new window at the current RSS."""
        rss = current_rss_bytes()
        with self._lock:
            self._window_max = rss

    def window_max(self) -> int:
        """Largest RSS (bytes) seen since the last :meth:`reset`, including right now."""
        self._observe()
        with self._lock:
            return self._window_max


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: the repository importable, no telemetry, no stray pipeline settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["GX_ANALYTICS_ENABLED"] = "False"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def run_child(task: str, params: dict[str, Any], *, scratch: Path, label: str, timeout_s: float | None = None) -> Any:
    """Run ``bench.child`` for ``task`` in a fresh interpreter and return the JSON it wrote.

    The child's output goes to ``scratch/<label>.log``; on failure the error names the task and the log's tail.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"{label}.result.json"
    log_path = scratch / f"{label}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.child", task, json.dumps(params), str(out)]
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                command, cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{label}: timed out after {timeout_s:.0f}s (log: {log_path})") from exc
    if proc.returncode != 0 or not out.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise BenchError(
            f"{label}: child exited with status {proc.returncode} after {time.perf_counter() - started:.1f}s "
            f"(log: {log_path})\n" + "\n".join(tail)
        )
    return json.loads(out.read_text(encoding="utf-8"))


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``round`` that lets ``None`` through (missing measurements stay missing in the JSON)."""
    return None if value is None else round(float(value), digits)


#: Categorical traits both reference implementations profile per segment (as the pipeline does).
CATEGORICAL = (
    "gender",
    "region",
    "income_band",
    "occupation",
    "preferred_channel",
    "preferred_device",
    "top_category",
    "top_interest",
)
