"""Cold start: a fresh Python process imports, loads a model and classifies one image file.

The child (``python -m emotion.benchmarks.coldstart ...``) imports only what the measured path needs and
prints one JSON line: seconds to import, to load, to the first result, and since the parent started it
(``--t0``, the parent's ``time.time()`` just before spawning) and its peak resident memory up to the result (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotion.benchmarks.coldstart")
    parser.add_argument("--kind", choices=("keras", "runtime"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--cache-dir", default=None, help="OpenVINO model cache folder (default: none)")
    parser.add_argument("--t0", type=float, default=None)
    args = parser.parse_args(argv)
    t0 = args.t0 if args.t0 is not None else time.time()
    start = time.perf_counter()
    if args.kind == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras  # noqa: F401 - the import is what is timed

        from emotion.runtime.preprocess import preprocess
        from emotion.train.model_io import load_model, predict_proba

        imported = time.perf_counter()
        model, info = load_model(args.model)
        loaded = time.perf_counter()
        probability = float(predict_proba(model, preprocess(args.image, info.preprocess_spec)[None])[0])
    else:
        from emotion.runtime.classifier import EmotionClassifier

        imported = time.perf_counter()
        clf = EmotionClassifier.load(args.model, device=args.device, backend=args.backend, precision=args.precision,
                                     mode="latency", cache_dir=args.cache_dir or None)
        loaded = time.perf_counter()
        probability = float(clf.predict(args.image).probability)
    done = time.perf_counter()
    peak = _peak_rss_mb()
    print(json.dumps({
        "peak_rss_mb": peak,
        "import_seconds": imported - start,
        "load_seconds": loaded - imported,
        "first_result_seconds": done - loaded,
        "in_process_seconds": done - start,
        "since_spawn_seconds": time.time() - t0,
        "probability": probability,
    }), flush=True)
    return 0


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory since exec (VmHWM), in MB.

    Not ``ru_maxrss`` as the parent sees it through ``wait4``: on Linux a child's ``ru_maxrss`` starts from its
    parent's resident size at fork, so a small child of a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return None


def measure(kind: str, model: str | os.PathLike, image: str | os.PathLike, *, backend: str = "openvino",
            precision: str | None = None, device: str = "CPU", cache_dir: str | os.PathLike | None = None,
            timeout: float = 600.0) -> dict[str, Any]:
    """Run one cold start in a fresh process; never raises (``error`` is set instead)."""
    command = [sys.executable, "-m", "emotion.benchmarks.coldstart", "--kind", kind, "--model", os.fspath(model),
               "--image", os.fspath(image), "--backend", backend, "--device", device]
    if precision:
        command += ["--precision", precision]
    if cache_dir:
        command += ["--cache-dir", os.fspath(cache_dir)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.time()
        started = time.perf_counter()
        try:
            process = subprocess.Popen(command + ["--t0", repr(t0)], stdout=out, stderr=err, env=env)
        except OSError as exc:
            return {"error": f"could not start python: {exc}"}
        import threading

        timer = threading.Timer(timeout, process.kill)  # a hung child is killed, not waited for forever
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except ChildProcessError:
            return {"error": "the cold-start process vanished"}
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    # wait4's ru_maxrss is a fallback only (it includes the parent's size at fork); the child reports VmHWM.
    result: dict[str, Any] = {"process_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0}
    if process.returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        result["error"] = f"exit status {process.returncode}: {lines[-1] if lines else 'no message'}"
        return result
    try:
        reported = json.loads(stdout.strip().splitlines()[-1])
        if reported.get("peak_rss_mb") is None:
            reported.pop("peak_rss_mb", None)
        result.update(reported)
    except (ValueError, IndexError):
        result["error"] = "the cold-start process printed no result"
    return result


if __name__ == "__main__":
    sys.exit(_child())
