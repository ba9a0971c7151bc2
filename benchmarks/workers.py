"""Each benchmarked format runs in a process of its own, loaded once, asked one thing at a time.

Formats must not share thread pools, allocators or TensorFlow's presence (the runtime is meant to run without
TensorFlow), so each gets a one-process :class:`~concurrent.futures.ProcessPoolExecutor` (spawned, not forked)
whose initializer loads it; every call runs one method of the loaded runner and returns its value or raises
its error in the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotion.export.formats import FORMATS, Format, open_classifier
from emotion.runtime import ModelInfo
from emotion.runtime.console import one_line

from .timing import latency_loop, throughput_loop

KERAS_BATCH = 32


class KerasRunner:
    """The original model. Predictions come from ``predict_proba``, the reference every format is held to;
    timings from ``model(x, training=False)`` in a ``tf.function`` traced once, the fastest ordinary way to run
    a Keras model (an eager call or ``model.predict`` on one image is dominated by Python and dispatch
    overhead, which :meth:`other_calls` measures for the report)."""

    def __init__(self, model_path: Path) -> None:
        import tensorflow as tf

        from emotion.runtime.preprocess import scale
        from emotion.train.model_io import load_model, predict_proba

        started = time.perf_counter()
        self.model, self.info = load_model(model_path)
        self.load_seconds = time.perf_counter() - started
        self._predict, self._scale = predict_proba, scale
        signature = [tf.TensorSpec([None, self.info.input_height, self.info.input_width, 3], tf.float32)]
        self._graph = tf.function(lambda x: self.model(x, training=False), input_signature=signature)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._graph(self._scale(batch))).reshape(-1)

    def describe(self) -> dict[str, Any]:
        from emotion.train.versions import TRAINING, library_versions

        return {"backend": "keras", **library_versions(TRAINING), "load_seconds": self.load_seconds,
                "timed_call": "tf.function(model(x, training=False)), input (None, H, W, 3) float32 = uint8 / 255"}

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._predict(self.model, images)

    def other_calls(self, images: np.ndarray, calls: int = 5) -> dict[str, float]:
        """Median ms of one image through an eager ``model(x)`` and through ``model.predict``."""
        one = self._scale(images[:1])
        ways = {"eager_call_ms": lambda: self.model(one, training=False),
                "model_predict_ms": lambda: self.model.predict(one, verbose=0)}
        return {name: float(np.median(latency_loop(lambda i: call(), 0.0, 1, calls)) * 1000.0)
                for name, call in ways.items()}

    def latency(self, images: np.ndarray, seconds: float, warmup: int) -> list[float]:
        return latency_loop(lambda i: self._run(images[i % len(images)][None]), seconds, max(1, warmup))

    def throughput(self, images: np.ndarray, seconds: float) -> dict[str, float]:
        batch = np.resize(images, (KERAS_BATCH, *images.shape[1:]))  # the images repeated to a full batch
        times = latency_loop(lambda i: self._run(batch), seconds, warmup=1, min_iterations=1)
        done, elapsed = KERAS_BATCH * len(times), sum(times)
        return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed, "batch": KERAS_BATCH}

    def e2e(self, images: np.ndarray, files: Sequence[str]) -> dict[str, Any]:
        from emotion.train.data import Sample, load_images

        started = time.perf_counter()
        x, _, rejected = load_images([Sample(Path(f), 0) for f in files], self.info.preprocess_spec)
        p = [self._run(x[i : i + KERAS_BATCH]) for i in range(0, len(x), KERAS_BATCH)]
        return _e2e(started, len(rejected), np.concatenate(p) if p else np.zeros(0))


class RuntimeRunner:
    """An exported file through :mod:`emotion.runtime`: a latency-mode classifier and a throughput-mode one."""

    def __init__(self, fmt: Format, model_path: Path, expected: ModelInfo, device: str) -> None:
        started = time.perf_counter()
        self.latency_clf = open_classifier(fmt, model_path, expected, "latency", device)
        self.load_seconds = time.perf_counter() - started
        self.throughput_clf = open_classifier(fmt, model_path, expected, "throughput", device)

    def describe(self) -> dict[str, Any]:
        throughput = self.throughput_clf.describe()
        return {**self.latency_clf.describe(), "load_seconds": self.load_seconds, "throughput_mode": {
            k: throughput[k] for k in ("streams", "requests", "performance_hint", "inference_precision")
            if k in throughput}}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Batch-1 predictions on the low-latency path, what ``predict`` gives a user."""
        return self.latency_clf.predict_batch(images)

    def latency(self, images: np.ndarray, seconds: float, warmup: int) -> list[float]:
        arrays = [np.ascontiguousarray(image) for image in images]
        return latency_loop(lambda i: self.latency_clf.predict(arrays[i % len(arrays)]), seconds, warmup)

    def throughput(self, images: np.ndarray, seconds: float) -> dict[str, float]:
        arrays, clf = [np.ascontiguousarray(image) for image in images], self.throughput_clf
        result = throughput_loop(lambda i: clf.submit(arrays[i % len(arrays)]), seconds, window=2 * clf.workers,
                                 warmup=2 * clf.workers)
        return {**result, "requests": clf.workers}

    def e2e(self, images: np.ndarray, files: Sequence[str]) -> dict[str, Any]:
        started = time.perf_counter()
        results = list(self.throughput_clf.predict_many(files))
        probabilities = np.array([r.probability if r.ok else np.nan for r in results], np.float64)
        return _e2e(started, sum(not r.ok for r in results), probabilities)


def _e2e(started: float, errors: int, probabilities: np.ndarray) -> dict[str, Any]:
    """An end-to-end run's figures: the images answered (NaN probabilities are failed files) per second."""
    elapsed, images = time.perf_counter() - started, int(np.isfinite(probabilities).sum())
    return {"images": images, "errors": errors, "seconds": elapsed, "images_per_second": images / elapsed,
            "probabilities": probabilities}


class FormatWorker:
    """One format loaded in its own process; :meth:`call` runs one of its runner's methods there."""

    def __init__(self, fmt: Format, model_path: Path, images_path: Path, expected: ModelInfo, device: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_load,
                                         initargs=(fmt.name, model_path, images_path, expected, device))
        self.description: dict[str, Any] = self.call("describe")

    def call(self, method: str, **kwargs: Any) -> Any:
        """The method's value.

        Raises:
            RuntimeError: the format failed to load, the method failed, or the process died; one line why.
        """
        try:
            return self._pool.submit(_call, method, kwargs).result()
        except Exception as exc:  # the worker's own exception, pickled back, or BrokenProcessPool
            raise RuntimeError(one_line(exc)) from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_runner: Any = None
_images: np.ndarray | None = None
_load_error: str | None = None


def _load(name: str, model_path: Path, images_path: Path, expected: ModelInfo, device: str) -> None:
    """Worker initializer: load the format and the images; a failure is kept and raised by every call."""
    global _runner, _images, _load_error
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # TensorFlow's native start-up chatter stays off the terminal
    try:
        fmt = FORMATS[name]
        keras = fmt.backend == "keras"
        _runner = KerasRunner(model_path) if keras else RuntimeRunner(fmt, model_path, expected, device)
        _images = np.load(images_path)
    except Exception as exc:  # reported as the format's status by the parent
        _load_error = f"cannot load: {one_line(exc)}"


def _call(method: str, kwargs: dict[str, Any]) -> Any:
    if _load_error:
        raise RuntimeError(_load_error)
    return _runner.describe() if method == "describe" else getattr(_runner, method)(_images, **kwargs)
