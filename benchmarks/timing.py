"""Measuring on a shared, noisy machine: interleaved rounds, medians and spread; and OpenVINO's ``benchmark_app``.

Nothing heavy is imported here (numpy only), so the runtime's measurements stay free of TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np


def rotations(items: Sequence[Any], rounds: int) -> Iterator[tuple[int, list[Any]]]:
    """``(round, items)`` for each round, the first item rotating: whatever the machine's load does over time
    falls on every item alike, not always on the one measured first."""
    for r in range(rounds):
        shift = r % max(1, len(items))
        yield r, list(items[shift:]) + list(items[:shift])


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """``{"median", "min", "max", "q1", "q3", "n", "values"}`` of the finite values (None when there are none)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "n": 0, "values": []}
    array = np.asarray(clean, dtype=np.float64)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(array.min()),
        "max": float(array.max()),
        "q1": float(q1),
        "q3": float(q3),
        "n": len(clean),
        "values": clean,
    }


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 and mean of latencies given in seconds, in milliseconds."""
    array = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(array.mean()), "n": int(array.size)}


def latency_loop(call: Callable[[int], Any], seconds: float, warmup: int = 5, min_iterations: int = 10,
                 max_iterations: int = 100_000) -> list[float]:
    """Seconds per synchronous ``call(i)``: ``warmup`` untimed calls, then calls for ``seconds`` (at least
    ``min_iterations``)."""
    for i in range(warmup):
        call(i)
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    i = 0
    while (clock() < deadline or len(times) < min_iterations) and len(times) < max_iterations:
        start = clock()
        call(i)
        times.append(clock() - start)
        i += 1
    return times


def throughput_loop(submit: Callable[[int], Any], seconds: float, window: int, warmup: int = 0,
                    min_items: int = 1) -> dict[str, float]:
    """Images/s of ``submit(i) -> Future`` with ``window`` items in flight, for ``seconds`` (at least
    ``min_items``); the clock stops when the last future is done."""
    window = max(1, int(window))
    pending: deque = deque()
    for i in range(warmup):
        pending.append(submit(i))
    while pending:
        pending.popleft().result()
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    done = 0
    i = 0
    while clock() < deadline or done + len(pending) < min_items:
        while len(pending) < window:
            pending.append(submit(i))
            i += 1
        pending.popleft().result()
        done += 1
    while pending:
        pending.popleft().result()
        done += 1
    elapsed = clock() - start
    return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed if elapsed > 0 else float("nan")}


# -- benchmark_app -------------------------------------------------------------------------------------------
def benchmark_app_command() -> list[str] | None:
    """How to start OpenVINO's benchmark_app: the script beside this Python, on PATH, or its module."""
    beside = Path(sys.executable).with_name("benchmark_app")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("benchmark_app")
    if found:
        return [found]
    try:
        import importlib.util

        if importlib.util.find_spec("openvino.tools.benchmark.main") is not None:
            return [sys.executable, "-m", "openvino.tools.benchmark.main"]
    except (ImportError, ValueError):
        pass
    return None


@dataclass
class BenchmarkAppResult:
    hint: str
    precision: str
    median_latency_ms: float | None = None
    average_latency_ms: float | None = None
    min_latency_ms: float | None = None
    throughput: float | None = None  # images/s (batch 1: FPS)
    iterations: int | None = None
    requests: int | None = None
    compile_ms: float | None = None
    command: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_PRINTED = {
    "median_latency_ms": re.compile(r"Median:\s+([0-9.]+)\s*ms"),
    "average_latency_ms": re.compile(r"Average:\s+([0-9.]+)\s*ms"),
    "min_latency_ms": re.compile(r"Min:\s+([0-9.]+)\s*ms"),
    "throughput": re.compile(r"Throughput:\s+([0-9.]+)\s*FPS"),
    "iterations": re.compile(r"Count:\s+([0-9]+)\s*iterations"),
}


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_benchmark_app(report: dict | None, printed: str) -> dict[str, Any]:
    """The figures of one run, from its JSON statistics report when there is one, else from its output."""
    values: dict[str, Any] = {}
    results = (report or {}).get("execution_results", {}) if isinstance(report, dict) else {}
    setup = (report or {}).get("configuration_setup", {}) if isinstance(report, dict) else {}
    if results:
        values["median_latency_ms"] = _number(results.get("latency (ms)"))
        values["average_latency_ms"] = _number(results.get("avg latency"))
        values["min_latency_ms"] = _number(results.get("min latency"))
        values["throughput"] = _number(results.get("throughput"))
        iterations = _number(results.get("total number of iterations"))
        values["iterations"] = int(iterations) if iterations is not None else None
        values["compile_ms"] = _number(results.get("compile model time (ms)"))
        requests = _number(setup.get("number of parallel infer requests"))
        values["requests"] = int(requests) if requests is not None else None
    for key, pattern in _PRINTED.items():
        if values.get(key) is None:
            match = pattern.search(printed)
            if match:
                values[key] = int(match.group(1)) if key == "iterations" else float(match.group(1))
    return values


def run_benchmark_app(model_xml: str | os.PathLike, shape: Sequence[int], hint: str, precision: str,
                      seconds: float, device: str = "CPU", extra: Sequence[str] = (),
                      timeout: float | None = None) -> BenchmarkAppResult:
    """One benchmark_app run on ``model_xml`` with ``-hint`` and ``-infer_precision``; never raises."""
    result = BenchmarkAppResult(hint=hint, precision=precision)
    base = benchmark_app_command()
    if base is None:
        result.error = "benchmark_app not found (it comes with the openvino package)"
        return result
    shape_text = "[" + ",".join(str(int(d)) for d in shape) + "]"
    with tempfile.TemporaryDirectory(prefix="emotion-bench-ba-") as folder:
        command = base + [
            "-m", os.fspath(model_xml), "-d", device, "-hint", hint, "-infer_precision", precision,
            "-t", str(max(1, int(round(seconds)))), "-shape", shape_text,
            "-report_type", "no_counters", "-json_stats", "-report_folder", folder, *extra,
        ]
        result.command = [os.path.basename(command[0]) if i == 0 else c for i, c in enumerate(command)
                          if not (c == folder or (i > 0 and command[i - 1] == "-report_folder"))]
        env = dict(os.environ)
        env.setdefault("OPENVINO_TELEMETRY_DISABLE", "1")  # no telemetry calls from a measurement
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env,
                                  timeout=timeout or (seconds * 4 + 120))
        except subprocess.TimeoutExpired:
            result.error = "benchmark_app timed out"
            return result
        except OSError as exc:
            result.error = f"benchmark_app could not start: {exc}"
            return result
        printed = (done.stdout or "") + "\n" + (done.stderr or "")
        report = None
        report_file = Path(folder) / "benchmark_report.json"
        if report_file.is_file():
            try:
                report = json.loads(report_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                report = None
        if done.returncode != 0:
            lines = [ln.strip() for ln in printed.splitlines() if "ERROR" in ln or "rror" in ln]
            result.error = f"benchmark_app exit status {done.returncode}: " + (lines[-1] if lines else "no message")
            return result
    for key, value in parse_benchmark_app(report, printed).items():
        setattr(result, key, value)
    if result.median_latency_ms is None and result.throughput is None:
        result.error = "could not read benchmark_app's figures"
    return result


def ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or reference is None or not reference or not math.isfinite(ours) or not math.isfinite(reference):
        return None
    return float(ours) / float(reference)
