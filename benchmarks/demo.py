"""``emotion-demo``: the whole pipeline on the embedded default, each step through its real command line.

Synthetic data -> training -> evaluation (and, as those parts exist, export -> folder inference -> benchmark).
Nothing needs downloading; everything lands under ``--out`` (default ``demo/``), which is replaced.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


COMMANDS = {
    "emotion.train.data_cli": "emotion-data",
    "emotion.train.cli": "emotion-train",
    "emotion.train.evaluate_cli": "emotion-evaluate",
    "emotion.export.cli": "emotion-export",
    "emotion.runtime.cli": "emotion-infer",
    "emotion.benchmarks.cli": "emotion-bench",
}


def _step(title: str, module: str, *args: str, allowed: tuple[int, ...] = (0,)) -> int:
    command = [sys.executable, "-m", module, *args]
    shown = COMMANDS.get(module, module)
    print(f"\n== {title}: {shown} {' '.join(shlex.quote(a) for a in args)}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(command)
    if result.returncode not in allowed:
        raise SystemExit(f"emotion-demo: step '{title}' failed with exit status {result.returncode}")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotion-demo", description=__doc__)
    parser.add_argument("--out", default="demo", help="working folder (default %(default)s), replaced")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default %(default)s)")
    parser.add_argument("--image-size", default="200x250", help="model input HxW (default %(default)s)")
    parser.add_argument("--n", type=int, default=320, help="synthetic images (default %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    data, run = out / "data", out / "run"
    _step("synthetic dataset", "emotion.train.data_cli", "synth", "--out", str(data), "--n", str(args.n))
    _step("dataset report", "emotion.train.data_cli", "inspect", str(data))
    _step("training (seed recipe)", "emotion.train.cli", str(data), "--out", str(run), "--epochs", str(args.epochs),
          "--image-size", args.image_size)
    _step("evaluation", "emotion.train.evaluate_cli", str(run), str(run), "--out", str(out / "evaluation"))
    exports = out / "exports" / "demo"
    _step("export: ONNX + OpenVINO IR FP32/FP16/INT8, verified against Keras", "emotion.export.cli", str(run),
          "--out", str(exports))
    _step("folder inference with the runtime", "emotion.runtime.cli", "--model", str(exports), str(data),
          "--output", str(out / "predictions.csv"), "--quiet")
    gate = _step("benchmark: every format, parity gate", "emotion.benchmarks.cli", str(run), "--data", str(data),
          "--export", str(exports), "--out", str(out / "bench"), "--repeats", "2", "--seconds", "1",
          "--ba-seconds", "2", allowed=(0, 1))
    if gate:
        # The gate's verdict stands in the report; on the demo's small synthetic model and 64 validation
        # images, INT8's AUC can move past the 0.01 limit, which the demo shows rather than hides.
        print("   note: the parity gate flagged a variant (see the report above); the demo goes on")
    print(f"\ndone: everything is in {out}/ (run: {run}/, plots: {run}/plots/, models: {exports}/, "
          f"predictions: {out}/predictions.csv, benchmark: {out}/bench/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
