"""Each benchmarked format runs in a process of its own, loaded once, asked one thing at a time.

Formats must not share thread pools, allocators or TensorFlow's presence (the runtime is meant to run without
TensorFlow), so each gets a spawned one-process pool whose initializer loads it.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emotion.export.formats import Format, open_classifier
from emotion.runtime import EmotionClassifier, ModelInfo, discover, preprocess
from emotion.runtime.console import one_line

from .timing import latency_loop, percentiles_ms, ratio, run_benchmark_app, throughput_loop, with_cpu

KERAS_BATCH = 32


def make_folder(files: Sequence[Path], count: int, folder: Path) -> Path:
    """``folder`` holding ``count`` symbolic links to ``files`` taken in turn, named in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = Path(files[i % len(files)])
        os.symlink(os.path.abspath(source), folder / f"{i:06d}{source.suffix.lower() or '.img'}")
    return folder


class _Runner:
    """What every runner measures the same way; each defines ``folder(folder) -> (probabilities, errors)``."""

    def e2e(self, images: np.ndarray, folder: Path) -> dict[str, Any]:
        """An end-to-end run over a folder: the files answered per second (NaN probabilities are failed files)."""
        started = time.perf_counter()
        probabilities, errors = self.folder(folder)
        elapsed, answered = time.perf_counter() - started, int(np.isfinite(probabilities).sum())
        return {"images": answered, "errors": errors, "seconds": elapsed, "images_per_second": answered / elapsed,
                "probabilities": probabilities}


class KerasRunner(_Runner):
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
        self.predict = lambda images: predict_proba(self.model, images)
        self._scale = scale
        signature = [tf.TensorSpec([None, self.info.input_height, self.info.input_width, 3], tf.float32)]
        self._graph = tf.function(lambda x: self.model(x, training=False), input_signature=signature)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._graph(self._scale(batch))).reshape(-1)

    def describe(self) -> dict[str, Any]:
        from emotion.train.versions import TRAINING, library_versions

        return {"backend": "keras", **library_versions(TRAINING), "load_seconds": self.load_seconds,
                "timed_call": "tf.function(model(x, training=False)), input (None, H, W, 3) float32 = uint8 / 255"}

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

    def folder(self, folder: Path) -> tuple[np.ndarray, int]:
        from emotion.train.data import Sample, load_images

        files = [Sample(c.path, 0) for c in discover([folder])]
        x, _, rejected = load_images(files, self.info.preprocess_spec)
        p = [self._run(x[i : i + KERAS_BATCH]) for i in range(0, len(x), KERAS_BATCH)]
        return (np.concatenate(p) if p else np.zeros(0)), len(rejected)


class RuntimeRunner(_Runner):
    """An exported file through :mod:`emotion.runtime`: a latency-mode classifier and a throughput-mode one."""

    def __init__(self, fmt: Format, model_path: Path, expected: ModelInfo | None, device: str,
                 workers: int | None = None) -> None:
        started = time.perf_counter()
        self.latency_clf = open_classifier(fmt, model_path, expected, "latency", device)
        self.info = self.latency_clf.info
        self.load_seconds = time.perf_counter() - started
        self.throughput_clf = EmotionClassifier.load(model_path, device, fmt.backend, fmt.precision, "throughput",
                                                     cache_dir=None, workers=workers)

    def describe(self) -> dict[str, Any]:
        return {**self.latency_clf.describe(), "load_seconds": self.load_seconds,
                "throughput_mode": self.throughput_clf.describe()}

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

    def decode(self, images: np.ndarray, folder: Path, threads: int) -> dict[str, float]:
        """Decode-and-resize-only images/s of the folder's files on ``threads`` threads (results dropped)."""
        files, started = [c.path for c in discover([folder])], time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode-only") as pool:
            done = sum(1 for _ in pool.map(self.latency_clf.preprocess, files))
        elapsed = time.perf_counter() - started
        return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed}

    def folder(self, folder: Path) -> tuple[np.ndarray, int]:
        """``predict_many(discover([folder]))``, as ``emotion-infer FOLDER`` runs it."""
        results = list(self.throughput_clf.predict_many(discover([folder])))
        probabilities = np.array([r.probability if r.ok else np.nan for r in results], np.float64)
        return probabilities, sum(not r.ok for r in results)


class FormatWorker:
    """One format loaded in its own process; :meth:`call` runs one of its runner's methods there."""

    def __init__(self, fmt: Format, model_path: Path, images: Path | list[Path], expected: ModelInfo | None,
                 device: str, workers: int | None = None) -> None:
        """``images``: a ``.npy`` of preprocessed images, or image files the worker preprocesses for the model."""
        self.format, self.model, self.device = fmt, model_path, device
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_load,
                                         initargs=(fmt, model_path, images, expected, device, workers))
        try:
            self.description: dict[str, Any] = self.call("describe")
        except RuntimeError:  # it did not load: its process ends now (a pool left to exit breaks its pipe)
            self.close()
            raise

    def call(self, method: str, **kwargs: Any) -> Any:
        """The method's value.

        Raises:
            RuntimeError: the format failed to load, the method failed, or the process died; one line why.
        """
        try:
            return self._pool.submit(_call, method, kwargs).result()
        except Exception as exc:  # the worker's own exception, pickled back, or BrokenProcessPool
            raise RuntimeError(one_line(exc)) from None

    def steps(self, seconds: float, warmup: int, folder: Path,
              ba_seconds: float | None = None) -> dict[str, Callable[[], Any]]:
        """The format's timings in the order they run; each of ours right before its ``benchmark_app``
        counterpart (OpenVINO, ``ba_seconds`` given), so the pair shares the machine's mood."""
        steps: dict[str, Callable[[], Any]] = {}
        for hint, ours in (("latency", lambda: percentiles_ms(self.call("latency", seconds=seconds, warmup=warmup))),
                           ("throughput", lambda: self.call("throughput", seconds=seconds))):
            steps[hint] = ours
            if self.format.openvino and ba_seconds:
                shape = [1, *self.description["input_size"], 3]
                steps[f"ba_{hint}"] = lambda hint=hint: run_benchmark_app(
                    self.model, shape, hint, self.format.precision, ba_seconds, self.device)
        steps["e2e"] = lambda: self.call("e2e", folder=folder)
        return steps

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def pair_ratios(done: dict[str, Any]) -> dict[str, float | None]:
    """A round's ratios of ours to benchmark_app's: latency (above 1: slower), throughput (below 1: slower)."""
    def figure(step: str, key: str) -> float | None:
        return (done.get(step) or {}).get(key)

    return {"latency_ratio": ratio(figure("latency", "p50"), figure("ba_latency", "median_latency_ms")),
            "throughput_ratio": ratio(figure("throughput", "images_per_second"), figure("ba_throughput", "throughput"))}


_runner: Any = None
_images: np.ndarray | None = None
_load_error: str | None = None


def _load(fmt: Format, model_path: Path, images: Path | list[Path], expected: ModelInfo | None, device: str,
          workers: int | None) -> None:
    """Worker initializer: load the format and the images; a failure is kept and raised by every call."""
    global _runner, _images, _load_error
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # TensorFlow's native start-up chatter stays off the terminal
    try:
        keras = fmt.backend == "keras"
        _runner = KerasRunner(model_path) if keras else RuntimeRunner(fmt, model_path, expected, device, workers)
        spec = _runner.info.preprocess_spec
        _images = np.load(images) if isinstance(images, Path) else np.stack([preprocess(f, spec) for f in images])
    except Exception as exc:  # reported as the format's status by the parent
        _load_error = f"cannot load: {one_line(exc)}"


def _call(method: str, kwargs: dict[str, Any]) -> Any:
    if _load_error:
        raise RuntimeError(_load_error)
    if method == "describe":
        return _runner.describe()
    work = getattr(_runner, method)
    if method in ("throughput", "decode", "e2e"):  # figures that count images get the CPU spent per image
        return with_cpu(lambda: work(_images, **kwargs))
    return work(_images, **kwargs)
