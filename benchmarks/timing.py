"""Measuring on a shared, noisy machine: interleaved rounds, medians and spread; and OpenVINO's ``benchmark_app``.

Nothing heavy is imported here (numpy only), so the runtime's measurements stay free of TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np


def interleave(steps: dict[str, Callable[[], Any]], rounds: int,
               progress: Callable[[str], None] = lambda text: None) -> list[dict[str, Any]]:
    """Every step once per round, the first step rotating each round (whatever the machine's load does over
    time falls on every step alike); per round, ``{"order": [...], step: value}``."""
    done, names = [], list(steps)
    for r in range(rounds):
        progress(f"round {r + 1}/{rounds}")
        shift = r % max(1, len(names))
        order = names[shift:] + names[:shift]
        done.append({"order": order, **{name: steps[name]() for name in order}})
    return done


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """``{"median", "min", "max", "q1", "q3", "n", "values"}`` of the finite values (None when there are none)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "n": 0, "values": []}
    q1, median, q3 = np.percentile(clean, [25, 50, 75])
    return {"median": float(median), "min": min(clean), "max": max(clean), "q1": float(q1), "q3": float(q3),
            "n": len(clean), "values": clean}


def series(rounds: list[dict[str, Any]], figures: dict[str, tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of each figure over the rounds: ``name -> (step, key)``, the key of a round's step, or
    with key None the step's own value (a ratio)."""
    return {name: summarize((r.get(step) or {}).get(key) if key else r.get(step) for r in rounds)
            for name, (step, key) in figures.items()}


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99, max and mean of latencies given in seconds, in milliseconds (None when there are none)."""
    if not len(seconds):
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None, "n": 0}
    array = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(array.max()),
            "mean": float(array.mean()), "n": int(array.size)}


def latency_loop(call: Callable[[int], Any], seconds: float, warmup: int = 5, min_iterations: int = 10,
                 max_iterations: int = 100_000) -> list[float]:
    """Seconds per synchronous ``call(i)``: ``warmup`` untimed calls, then calls for ``seconds`` (at least
    ``min_iterations``, at most ``max_iterations``)."""
    for i in range(warmup):
        call(i)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while (time.perf_counter() < deadline or len(times) < min_iterations) and len(times) < max_iterations:
        start = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - start)
    return times


def throughput_loop(submit: Callable[[int], Any], seconds: float, window: int, warmup: int = 0) -> dict[str, float]:
    """Images/s of ``submit(i) -> Future`` with ``window`` items in flight for ``seconds``; the clock stops
    when the last future is done."""
    for future in [submit(i) for i in range(warmup)]:
        future.result()
    pending: deque = deque()
    start = time.perf_counter()
    done = 0
    while time.perf_counter() < start + seconds or done + len(pending) == 0:
        while len(pending) < max(1, window):
            pending.append(submit(done + len(pending)))
        pending.popleft().result()
        done += 1
    for future in pending:
        future.result()
    elapsed = time.perf_counter() - start
    done += len(pending)
    return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed if elapsed > 0 else math.nan}


def ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or not reference or not math.isfinite(ours) or not math.isfinite(reference):
        return None
    return float(ours) / float(reference)


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (all its threads), or of its waited-for child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def with_cpu(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()``'s figures with the CPU this process spent per image (robust to other processes taking cores,
    which wall-clock rates are not)."""
    before = cpu_seconds()
    figures = work()
    images = max(1, figures["images"] + figures.get("errors", 0))
    return {**figures, "cpu_ms_per_image": (cpu_seconds() - before) * 1000.0 / images}


# -- benchmark_app -------------------------------------------------------------------------------------------
def benchmark_app_command() -> list[str]:
    """How to start OpenVINO's benchmark_app: the script beside this Python or on PATH, else its module."""
    found = shutil.which("benchmark_app", path=os.path.dirname(sys.executable)) or shutil.which("benchmark_app")
    return [found] if found else [sys.executable, "-m", "openvino.tools.benchmark.main"]


# figure -> its key in benchmark_app's JSON statistics report (-json_stats), which holds 2 decimals
_FIGURES = {"median_latency_ms": "latency (ms)", "average_latency_ms": "avg latency", "min_latency_ms": "min latency",
            "max_latency_ms": "max latency", "throughput": "throughput",  # throughput: images/s at batch 1
            "iterations": "total number of iterations", "compile_ms": "compile model time (ms)",
            "requests": "number of parallel infer requests"}
# latency figure -> its line in the printed output, in us (2 decimals) when the average is under 1 ms
_PRINTED = {"median_latency_ms": "Median", "average_latency_ms": "Average", "min_latency_ms": "Min",
            "max_latency_ms": "Max"}


def parse_benchmark_app(report: dict | None, printed: str = "") -> dict[str, Any]:
    """The figures of one run (None where it gave none): the latencies from its printed output, which keeps
    sub-millisecond ones to 0.01 us where the JSON statistics report rounds them to 0.01 ms; the rest, and any
    latency not printed, from that report."""
    report = report if isinstance(report, dict) else {}
    found = {**report.get("configuration_setup", {}), **report.get("execution_results", {})}
    values = {}
    for name, key in _FIGURES.items():
        line = re.search(rf"\b{_PRINTED[name]}:\s+([0-9.]+) (ms|us)\b", printed) if name in _PRINTED else None
        try:
            value = float(line[1]) / (1000.0 if line[2] == "us" else 1.0) if line else float(found.get(key))
        except (TypeError, ValueError):
            value = math.nan
        values[name] = None if not math.isfinite(value) else int(value) if name in ("iterations", "requests") else value
    return values


def run_benchmark_app(model_xml: str | os.PathLike, shape: Sequence[int], hint: str, precision: str,
                      seconds: float, device: str = "CPU") -> dict[str, Any]:
    """One benchmark_app run on ``model_xml`` with ``-hint`` and ``-infer_precision``: its figures, the command
    (without the temporary report folder), the CPU seconds it took and ``error`` (None when it ran); never raises."""
    result: dict[str, Any] = {"hint": hint, "precision": precision, **parse_benchmark_app(None),
                              "command": [], "error": None}
    base = benchmark_app_command()
    options = ["-m", os.fspath(model_xml), "-d", device, "-hint", hint, "-infer_precision", precision,
               "-t", str(max(1, round(seconds))), "-shape", "[" + ",".join(str(int(d)) for d in shape) + "]",
               "-report_type", "no_counters", "-json_stats"]
    result["command"] = [os.path.basename(base[0]), *base[1:], *options]
    with tempfile.TemporaryDirectory(prefix="emotion-bench-ba-") as folder:
        cpu = cpu_seconds(children=True)
        try:  # no telemetry calls from a measurement
            done = subprocess.run(base + options + ["-report_folder", folder], capture_output=True, text=True,
                                  env={"OPENVINO_TELEMETRY_DISABLE": "1", **os.environ}, timeout=seconds * 4 + 120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {**result, "error": f"benchmark_app could not run: {exc}"}
        result["cpu_seconds"] = cpu_seconds(children=True) - cpu
        printed = done.stdout + "\n" + done.stderr
        try:
            report = json.loads((Path(folder) / "benchmark_report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
    if done.returncode != 0:
        lines = [line.strip() for line in printed.splitlines() if "rror" in line]
        return {**result, "error": f"benchmark_app exit status {done.returncode}: "
                + (lines[-1] if lines else "no message")}
    result.update(parse_benchmark_app(report, printed))
    if result["median_latency_ms"] is None and result["throughput"] is None:
        result["error"] = "could not read benchmark_app's figures"
    return result
