"""The formats compared by ``emotion-bench`` and how each one is run.

A format is one row of the table: the original Keras model, or an exported model run by the runtime
(:class:`emotion.runtime.classifier.EmotionClassifier`) with one backend, variant and inference precision.

Each format runs in a worker process of its own (:func:`serve`), so that formats do not share thread pools,
allocators or TensorFlow's presence (the runtime is meant to run without TensorFlow); the parent sends it
commands one at a time, so only one format is busy at any moment and the rest sleep on their pipe.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .timing import latency_loop, throughput_loop


@dataclass(frozen=True)
class FormatSpec:
    name: str
    kind: str  # "keras" or "runtime"
    backend: str | None  # runtime backend: openvino / onnxruntime
    variant: str | None  # export variant: fp32 / fp16 / int8
    precision: str  # inference precision hint: f32 / bf16
    gate: str  # gate class: reference / fp32 / bf16 / fp16 / int8
    description: str

    @property
    def openvino(self) -> bool:
        return self.backend == "openvino"


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("keras", "keras", None, None, "f32", "reference", "the original .keras model, TensorFlow"),
        FormatSpec("onnxruntime", "runtime", "onnxruntime", "fp32", "f32", "fp32", "ONNX file, ONNX Runtime CPU"),
        FormatSpec("openvino-fp32", "runtime", "openvino", "fp32", "f32", "fp32", "FP32 IR, f32 inference hint"),
        FormatSpec("openvino-bf16", "runtime", "openvino", "fp32", "bf16", "bf16", "FP32 IR, bf16 inference hint"),
        FormatSpec("openvino-fp16", "runtime", "openvino", "fp16", "f32", "fp16",
                   "FP16-compressed IR, f32 inference hint"),
        FormatSpec("openvino-int8", "runtime", "openvino", "int8", "f32", "int8", "INT8 IR (NNCF), f32 hint"),
    )
}


class UnknownFormat(ValueError):
    pass


def parse_formats(names: Sequence[str] | None) -> list[str]:
    """Known format names in the canonical order; commas and spaces both separate; 'all' is every one."""
    if not names:
        return list(FORMATS)
    wanted: list[str] = []
    for item in names:
        for name in str(item).replace(",", " ").split():
            name = name.strip().lower()
            if name == "all":
                wanted.extend(FORMATS)
            elif name not in FORMATS:
                raise UnknownFormat(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}")
            else:
                wanted.append(name)
    if not wanted:
        raise UnknownFormat(f"no format given; known formats: {', '.join(FORMATS)}")
    return [name for name in FORMATS if name in wanted]


def model_file(spec: FormatSpec, export_dir: Path | None, keras_file: Path) -> Path:
    """The file the format loads: the .keras file, or the export's .onnx / .xml for its backend and variant."""
    if spec.kind == "keras":
        return keras_file
    from emotion.runtime.locate import resolve_model

    assert export_dir is not None
    return resolve_model(export_dir, backend=spec.backend or "openvino", variant=spec.variant)


def file_bytes(path: Path) -> int:
    size = path.stat().st_size
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


# -- runners: one per worker process ---------------------------------------------------------------------------
class KerasRunner:
    """The original model, loaded with ``emotion.train.model_io.load_model``.

    Predictions (the reference every format is compared with) come from ``predict_proba``, training's Keras
    reference. Timings use the fastest ordinary way to run a Keras model: ``model(x, training=False)`` inside a
    ``tf.function`` traced once for (None, H, W, 3) -- an eager call or ``model.predict`` on one image costs
    hundreds of milliseconds of Python and dispatch overhead with Keras 3, which :meth:`describe` reports too.
    """

    def __init__(self, spec: FormatSpec, model_path: Path) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from emotion.runtime.preprocess import scale
        from emotion.train.model_io import load_model, predict_proba

        self.spec = spec
        started = time.perf_counter()
        self.model, self.info = load_model(model_path)
        self.load_seconds = time.perf_counter() - started
        self._predict = predict_proba
        self._scale = scale
        model = self.model
        signature = [tf.TensorSpec([None, self.info.input_height, self.info.input_width, 3], tf.float32)]
        self._graph = tf.function(lambda x: model(x, training=False), input_signature=signature)
        self._overheads: dict[str, float] = {}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._graph(self._scale(batch))).reshape(-1)

    def describe(self) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {
            "backend": "keras", "keras": keras.__version__, "tensorflow": tf.__version__,
            "input_size": [self.info.input_height, self.info.input_width], "labels": list(self.info.labels),
            "threshold": self.info.threshold, "load_seconds": self.load_seconds,
            "timed_call": "tf.function(model(x, training=False)), input (None, H, W, 3) float32 = uint8 / 255",
        }

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.model, images), dtype=np.float64)

    def other_calls(self, images: np.ndarray, calls: int = 5) -> dict[str, float]:
        """Median ms of one image through an eager ``model(x)`` and through ``model.predict`` (for the notes)."""
        one = self._scale(images[:1])
        result = {}
        for name, call in (("eager_call_ms", lambda: self.model(one, training=False)),
                           ("model_predict_ms", lambda: self.model.predict(one, verbose=0))):
            times = latency_loop(lambda i: call(), 0.0, warmup=1, min_iterations=calls)
            result[name] = float(np.median(times) * 1000.0)
        return result

    def latency(self, images: np.ndarray, seconds: float, warmup: int) -> list[float]:
        n = len(images)
        return latency_loop(lambda i: self._run(images[i % n : i % n + 1]), seconds, max(1, warmup))

    def throughput(self, images: np.ndarray, seconds: float, batch: int = 32) -> dict[str, float]:
        n = len(images)
        batch = max(1, min(batch, n))
        self._run(images[:batch])  # warm-up
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        start = 0
        while time.perf_counter() < deadline or done == 0:
            chunk = images[start : start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, images[: batch - len(chunk)]])
            self._run(chunk)
            done += len(chunk)
            start = (start + batch) % n
        elapsed = time.perf_counter() - started
        return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed, "batch": batch}

    def e2e(self, files: Sequence[str], batch: int = 32) -> dict[str, Any]:
        from emotion.train.data import Sample, load_images

        started = time.perf_counter()
        x, _, rejected = load_images([Sample(Path(f), 0) for f in files], self.info.preprocess_spec)
        probabilities = np.concatenate([self._run(x[i : i + batch]) for i in range(0, len(x), batch)]) if len(x) \
            else np.zeros(0)
        elapsed = time.perf_counter() - started
        return {"images": len(x), "errors": len(rejected), "seconds": elapsed,
                "images_per_second": len(x) / elapsed, "probabilities": np.asarray(probabilities, np.float64)}

    def close(self) -> None:
        pass


class RuntimeRunner:
    """An exported model through the runtime: a latency-mode classifier and a throughput-mode one."""

    def __init__(self, spec: FormatSpec, model_path: Path, device: str = "CPU") -> None:
        from emotion.runtime.classifier import EmotionClassifier

        self.spec = spec
        kwargs = dict(device=device, backend=spec.backend, precision=spec.precision, cache_dir=None)
        started = time.perf_counter()
        self.latency_clf = EmotionClassifier.load(model_path, mode="latency", **kwargs)
        self.load_seconds = time.perf_counter() - started
        self.throughput_clf = EmotionClassifier.load(model_path, mode="throughput", **kwargs)
        self.info = self.latency_clf.info

    def describe(self) -> dict[str, Any]:
        lat, thr = self.latency_clf.describe(), self.throughput_clf.describe()
        return {
            **lat,
            "load_seconds": self.load_seconds,
            "throughput_mode": {k: thr.get(k) for k in ("streams", "requests", "performance_hint",
                                                        "inference_precision") if k in thr},
        }

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Batch-1 predictions on the low-latency path, one image at a time: what ``predict`` gives a user."""
        clf = self.latency_clf
        return np.array([clf.predict(np.ascontiguousarray(images[i])).probability for i in range(len(images))],
                        dtype=np.float64)

    def latency(self, images: np.ndarray, seconds: float, warmup: int) -> list[float]:
        n = len(images)
        arrays = [np.ascontiguousarray(images[i]) for i in range(n)]
        predict = self.latency_clf.predict
        return latency_loop(lambda i: predict(arrays[i % n]), seconds, warmup)

    def throughput(self, images: np.ndarray, seconds: float) -> dict[str, float]:
        n = len(images)
        arrays = [np.ascontiguousarray(images[i]) for i in range(n)]
        clf = self.throughput_clf
        parallelism = clf.workers
        result = throughput_loop(lambda i: clf.submit(arrays[i % n]), seconds, window=2 * parallelism,
                                 warmup=2 * parallelism)
        result["requests"] = parallelism
        return result

    def e2e(self, files: Sequence[str]) -> dict[str, Any]:
        started = time.perf_counter()
        results = list(self.throughput_clf.predict_many(files))
        elapsed = time.perf_counter() - started
        ok = [r for r in results if r.ok]
        return {
            "images": len(ok), "errors": len(results) - len(ok), "seconds": elapsed,
            "images_per_second": len(ok) / elapsed if elapsed > 0 else math.nan,
            "probabilities": np.array([r.probability if r.ok else np.nan for r in results], np.float64),
            "first_error": next((r.error for r in results if not r.ok), None),
        }

    def close(self) -> None:
        self.latency_clf.close()
        self.throughput_clf.close()


def make_runner(spec: FormatSpec, model_path: Path, device: str = "CPU"):
    if spec.kind == "keras":
        return KerasRunner(spec, model_path)
    return RuntimeRunner(spec, model_path, device)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def serve(conn, spec_name: str, model_path: str, images_path: str, device: str = "CPU") -> None:
    """Worker process main: load the format, then answer ``(method, kwargs)`` requests until ``None``.

    Replies are ``("ok", value)`` or ``("error", one-line reason, traceback)``; the first reply says whether
    loading worked (``("ok", describe())``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        runner = make_runner(FORMATS[spec_name], Path(model_path), device)
        images = np.load(images_path)
        conn.send(("ok", runner.describe()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the row's status
        conn.send(("error", _one_line(exc), traceback.format_exc()))
        conn.close()
        return
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            method, kwargs = message
            try:
                if method in ("predict", "latency", "throughput", "other_calls"):
                    value = getattr(runner, method)(images, **kwargs)
                else:
                    value = getattr(runner, method)(**kwargs)
                conn.send(("ok", value))
            except BaseException as exc:  # noqa: BLE001
                conn.send(("error", _one_line(exc), traceback.format_exc()))
    finally:
        try:
            runner.close()
        except Exception:
            pass
        conn.close()


class Worker:
    """The parent's handle on one format's worker process.

    The worker is a plain ``python -m emotion.benchmarks.formats`` child (not a multiprocessing one: spawning
    would re-run the caller's ``__main__``), talking over a socket pair wrapped in a multiprocessing
    ``Connection``; its stderr goes to ``log_path`` (TensorFlow's native chatter stays off the terminal).
    """

    def __init__(self, spec: FormatSpec, model_path: Path, images_path: Path, device: str = "CPU",
                 log_path: Path | None = None) -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        self.spec = spec
        parent, child = socket.socketpair()
        command = [sys.executable, "-m", "emotion.benchmarks.formats", "--fd", str(child.fileno()),
                   "--format", spec.name, "--model", os.fspath(model_path), "--images", os.fspath(images_path),
                   "--device", device]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            pass_fds=(child.fileno(),), env=env)
        finally:
            child.close()
            if log_path:
                log.close()
        self.conn = Connection(parent.detach())
        self.description: dict[str, Any] | None = None
        self.error: str | None = None

    def wait_ready(self, timeout: float = 600.0) -> bool:
        reply = self._reply(timeout)
        if reply[0] == "ok":
            self.description = reply[1]
            return True
        self.error = reply[1]
        return False

    def _reply(self, timeout: float | None):
        try:
            if not self.conn.poll(timeout):
                return ("error", f"no answer within {timeout:.0f} s", "")
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.process.poll()
            return ("error", f"the worker process died (exit status {code})", "")

    def call(self, method: str, timeout: float = 900.0, **kwargs: Any) -> Any:
        """The method's value; raises RuntimeError with the worker's one-line reason on failure."""
        try:
            self.conn.send((method, kwargs))
        except (BrokenPipeError, OSError):
            raise RuntimeError("the worker process is gone") from None
        reply = self._reply(timeout)
        if reply[0] != "ok":
            raise RuntimeError(reply[1])
        return reply[1]

    def close(self) -> None:
        import subprocess

        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.conn.close()


def _main(argv: list[str] | None = None) -> int:
    import argparse
    from multiprocessing.connection import Connection

    parser = argparse.ArgumentParser(prog="emotion.benchmarks.formats", description="emotion-bench worker process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--device", default="CPU")
    args = parser.parse_args(argv)
    serve(Connection(args.fd), args.format, args.model, args.images, args.device)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main())
