"""Cold start: a fresh Python process imports, loads a model and classifies one image file.

The child (``python -m emotion.benchmarks.coldstart``) imports only what the measured format needs and prints
one JSON line: seconds to import, to load and to the first result, seconds since the parent started it, and
its peak resident memory in MB (``VmHWM``: a child's ``ru_maxrss`` on Linux starts from its parent's size at fork).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from emotion.export.formats import FORMATS

from .timing import summarize

PARTS = ("import_seconds", "load_seconds", "first_result_seconds")


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotion.benchmarks.coldstart")
    for name in ("--format", "--model", "--image", "--device", "--cache-dir", "--t0"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    fmt, start = FORMATS[args.format], time.perf_counter()
    if fmt.backend == "keras":
        import keras  # noqa: F401 - the import is what is timed

        from emotion.runtime.preprocess import preprocess
        from emotion.train.model_io import load_model, predict_proba

        imported = time.perf_counter()
        model, info = load_model(args.model)
        loaded = time.perf_counter()
        probability = float(predict_proba(model, preprocess(args.image, info.preprocess_spec)[None])[0])
    else:
        from emotion.runtime import EmotionClassifier

        imported = time.perf_counter()
        clf = EmotionClassifier.load(args.model, device=args.device, backend=fmt.backend, precision=fmt.precision,
                                     cache_dir=args.cache_dir or None)
        loaded = time.perf_counter()
        probability = clf.predict(args.image).probability
    done = time.perf_counter()
    with open("/proc/self/status", encoding="ascii") as status:
        peak = next(int(line.split()[1]) * 1024 / 1e6 for line in status if line.startswith("VmHWM:"))  # /proc kB: KiB
    print(json.dumps({"peak_rss_mb": peak, "import_seconds": imported - start, "load_seconds": loaded - imported,
                      "first_result_seconds": done - loaded, "in_process_seconds": done - start,
                      "since_spawn_seconds": time.time() - float(args.t0), "probability": probability}))
    return 0


def measure(format_name: str, model: str | os.PathLike, image: str | os.PathLike, *, device: str = "CPU",
            cache_dir: str | os.PathLike | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """One cold start of ``model`` run as the format ``format_name``, in a fresh process; never raises.

    Returns:
        The child's figures, or ``{"error": why}``.
    """
    command = [sys.executable, "-m", "emotion.benchmarks.coldstart", "--format", format_name, "--model",
               os.fspath(model), "--image", os.fspath(image), "--device", device, "--t0", repr(time.time())]
    command += ["--cache-dir", os.fspath(cache_dir)] if cache_dir else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"the cold-start process failed: {exc}"}
    lines = [line for line in (done.stdout if done.returncode == 0 else done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return {"error": f"exit status {done.returncode}: {lines[-1] if lines else 'no output'}"}
    return json.loads(lines[-1])


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Spawn to result and peak RSS over ``runs`` of :func:`measure`, the medians of the parts, the errors."""
    good = [run for run in runs if not run.get("error")]
    return {"cold_start_s": summarize(run["since_spawn_seconds"] for run in good),
            "cold_start_parts_s": {part: summarize(run[part] for run in good)["median"] for part in PARTS},
            "peak_rss_mb": summarize(run["peak_rss_mb"] for run in good),
            "cold_start_errors": [run["error"] for run in runs if run.get("error")]}


if __name__ == "__main__":
    sys.exit(_child())
