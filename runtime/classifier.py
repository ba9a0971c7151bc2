"""``EmotionClassifier``: load an exported model and classify images with it.

>>> clf = EmotionClassifier.load("exports/run1")          # doctest: +SKIP
>>> clf.predict("photo.jpg")                                # doctest: +SKIP
Prediction(label='Positive', probability=0.93, path='photo.jpg', error=None)

* :meth:`EmotionClassifier.predict` -- one image (path, bytes, file object, PIL image or uint8 array), on the
  low-latency path: a pre-created request fed the caller's array without a copy.
* :meth:`EmotionClassifier.predict_batch` -- a uint8 NHWC batch -> P(Positive) per image.
* :meth:`EmotionClassifier.predict_many` -- any iterable, streamed back in order with bounded memory:
  decoding in a thread pool, inference kept busy asynchronously; a bad item becomes a :class:`Prediction`
  with ``error`` set, never an exception that stops the stream.
* :meth:`EmotionClassifier.submit` -- one preprocessed array -> ``concurrent.futures.Future[float]``,
  thread-safe and non-blocking, for servers (``asyncio.wrap_future`` it).

Every image goes through :func:`emotion.runtime.preprocess.preprocess`, the one preprocessing.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .backends import BACKENDS, Backend, ModelLoadError, create_backend
from .files import Candidate
from .locate import resolve_model
from .metadata import ModelInfo
from .preprocess import ImageDecodeError, ImageSource, PreprocessSpec, preprocess

__all__ = ["EmotionClassifier", "Prediction", "ModelLoadError", "ImageDecodeError"]


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: its label and P(Positive), or the reason it could not be classified."""

    label: str | None
    probability: float | None  # P(labels[1]), the positive class
    path: str | os.PathLike | None = None  # the input's path, when it was given as one
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the path as text (``os.fsdecode``: undecodable bytes become lone surrogates)."""
        return {
            "path": os.fsdecode(self.path) if self.path is not None else None,
            "label": self.label,
            "probability": self.probability,
            "error": self.error,
        }


def _path_of(source: Any) -> str | os.PathLike | None:
    return source if isinstance(source, (str, os.PathLike)) else None


class _Job:
    """One item of :meth:`EmotionClassifier.predict_many` on its way through decode and inference."""

    __slots__ = ("result", "decode", "infer")

    def __init__(self) -> None:
        self.result: Future = Future()
        self.decode: Future | None = None
        self.infer: Future | None = None

    def settle(self, prediction: Prediction) -> None:
        try:
            self.result.set_result(prediction)
        except Exception:  # already settled or cancelled
            pass

    def cancel(self) -> None:
        for future in (self.decode, self.infer):
            if future is not None:
                future.cancel()


class EmotionClassifier:
    """An exported emotion model, ready to classify images. Thread-safe; close it (or use ``with``)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.info: ModelInfo = backend.info
        self.spec: PreprocessSpec = backend.info.preprocess_spec
        self._shape = (self.spec.height, self.spec.width, 3)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str = "CPU",
        backend: str = "openvino",
        precision: str | None = None,
        mode: str = "latency",
        cache_dir: str | os.PathLike | bool | None = True,
        *,
        variant: str | None = None,
        num_requests: int = 0,
        config: Mapping[str, Any] | None = None,
    ) -> "EmotionClassifier":
        """Load a model: an .xml/.onnx file, a version, repository or export folder, or ``./exports/``.

        ``device``: an OpenVINO device ("CPU", "GPU", "AUTO", ...). ``precision``: None or "f32" (exact
        parity with Keras), "bf16" (faster on CPUs with AMX/AVX512-BF16), "f16". ``mode``: "latency" (one
        image at a time as fast as possible) or "throughput" (bulk classification, servers under load: more
        streams and requests). ``cache_dir``: OpenVINO's compiled-model cache folder (``True``: the default,
        ``$EMOTION_CACHE_DIR`` or ``~/.cache/emotion-edge/openvino``; ``None``: off). ``variant``: "fp32"
        (default), "fp16" or "int8" to choose among an export folder's models. ``num_requests``: concurrent
        asynchronous inferences (0: OpenVINO's optimal number for the mode). ``config``: extra OpenVINO
        compile properties (for example ``{"NUM_STREAMS": 4}``), applied over the ones above.

        Raises :class:`ModelLoadError` (one-line reason) for a model this runtime cannot use.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        model_path = resolve_model(path, backend=backend, variant=variant)
        return cls(
            create_backend(
                backend,
                model_path,
                device=device,
                precision=precision,
                mode=mode,
                cache_dir=cache_dir,
                num_requests=num_requests,
                config=config,
            )
        )

    # -- properties ------------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def path(self):
        """The model file in use."""
        return self._backend.path

    @property
    def labels(self) -> tuple[str, str]:
        return self.info.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, 3): the uint8 array :meth:`submit` and the fast path of :meth:`predict` take."""
        return self._shape

    def describe(self) -> dict[str, Any]:
        """The model and how it runs, JSON-ready (for reports and a server's health endpoint)."""
        info = self.info
        return {
            "name": info.name,
            "version": info.version,
            "architecture": info.architecture,
            "model_precision": info.precision,
            "labels": list(info.labels),
            "threshold": info.threshold,
            "input_size": [info.input_height, info.input_width],
            "resize_filter": info.resize_filter,
            **self._backend.describe(),
        }

    def __repr__(self) -> str:
        b = self._backend
        return f"EmotionClassifier({os.fsdecode(b.path)!r}, backend={b.name!r}, device={b.device!r}, precision={b.precision!r}, mode={b.mode!r})"

    # -- single images -----------------------------------------------------------------------------------
    def preprocess(self, image: ImageSource) -> np.ndarray:
        """The model's uint8 (H, W, 3) input for ``image``; :class:`ImageDecodeError` if it is not usable."""
        return preprocess(image, self.spec)

    def predict(self, image: ImageSource) -> Prediction:
        """Classify one image. Raises :class:`ImageDecodeError` (one-line reason) for an unusable input.

        A C-contiguous uint8 array of exactly :attr:`input_shape` goes straight to the model, shared, not
        copied: that is the lowest-latency call.
        """
        array = image if self._is_ready_array(image) else preprocess(image, self.spec)
        probability = self._backend.infer_one(array)
        return Prediction(self.info.label_for(probability), probability, _path_of(image))

    def predict_probability(self, image: ImageSource) -> float:
        """P(Positive) for one image (what :meth:`predict` returns, without the label)."""
        array = image if self._is_ready_array(image) else preprocess(image, self.spec)
        return self._backend.infer_one(array)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(Positive) for each image of a uint8 (N, H, W, 3) RGB batch, as a float32 (N,) array."""
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != self._shape:
            raise ValueError(
                f"predict_batch takes a uint8 array of shape (N, {', '.join(map(str, self._shape))}); "
                f"got {batch.dtype} {batch.shape} (use predict_many for files, or preprocess each image)"
            )
        if not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch)
        return self._backend.infer(batch)

    def submit(self, array: np.ndarray) -> "Future[float]":
        """Start inference of one preprocessed image; a ``Future`` of its P(Positive). Never blocks.

        ``array``: uint8 (H, W, 3) RGB at the model's size (see :meth:`preprocess`), or (1, H, W, 3). It is
        read in place: do not modify it until the future is done. Thread-safe; in asyncio use
        ``await asyncio.wrap_future(clf.submit(array))``. Raises ``ValueError`` for a wrong array.
        """
        array = np.asarray(array)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.dtype != np.uint8 or array.shape != self._shape:
            raise ValueError(
                f"submit takes a uint8 array of shape {self._shape}; got {array.dtype} {array.shape} "
                "(decode and resize it with clf.preprocess first)"
            )
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return self._backend.submit(array)

    # -- streams -------------------------------------------------------------------------------------------
    def predict_many(
        self,
        images: Iterable[ImageSource | Candidate],
        *,
        workers: int | None = None,
        window: int | None = None,
    ) -> Iterator[Prediction]:
        """Classify every item of ``images``, yielding one :class:`Prediction` per item, in input order.

        Items: paths, bytes, file objects, PIL images, uint8 arrays, or :class:`~emotion.runtime.files.Candidate`
        (from :func:`~emotion.runtime.files.discover`; one with ``error`` set is passed through as an error).
        At most ``window`` items are read from ``images`` ahead of what has been yielded (bounded memory for
        any iterable, a generator of millions included). ``workers`` threads decode and resize (Pillow
        releases the GIL), while the backend keeps its asynchronous requests busy. An item that cannot be
        classified yields a Prediction with ``error`` set and the stream goes on.
        """
        workers = max(1, workers or (os.cpu_count() or 1))
        window = max(1, window or max(8, 2 * (workers + self._backend.parallelism)))
        return self._stream(iter(images), workers, window)

    def _stream(self, items: Iterator[Any], workers: int, window: int) -> Iterator[Prediction]:
        pending: deque[_Job] = deque()
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotion-decode")
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(self._start(item, executor))
                if not pending:
                    return
                yield pending.popleft().result.result()
        finally:
            for job in pending:
                job.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, item: Any, executor: ThreadPoolExecutor) -> _Job:
        job = _Job()
        if isinstance(item, Candidate):
            path: Any = item.path
            if item.error is not None:
                job.settle(Prediction(None, None, path, item.error))
                return job
            source: Any = item.path
        else:
            source, path = item, _path_of(item)
        if self._is_ready_array(source):
            self._infer_job(job, path, source)
            return job
        try:
            job.decode = executor.submit(preprocess, source, self.spec)
        except RuntimeError as exc:  # executor shut down
            job.settle(Prediction(None, None, path, f"not started: {exc}"))
            return job
        job.decode.add_done_callback(lambda done: self._after_decode(job, path, done))
        return job

    def _after_decode(self, job: _Job, path: Any, done: Future) -> None:
        if not _settled_by_failure(job, path, done):
            self._infer_job(job, path, done.result())

    def _infer_job(self, job: _Job, path: Any, array: np.ndarray) -> None:
        try:
            job.infer = self._backend.submit(array)
        except Exception as exc:
            job.settle(Prediction(None, None, path, f"inference not started: {exc}"))
            return
        job.infer.add_done_callback(lambda done: self._after_infer(job, path, done))

    def _after_infer(self, job: _Job, path: Any, done: Future) -> None:
        if _settled_by_failure(job, path, done):
            return
        probability = done.result()
        job.settle(Prediction(self.info.label_for(probability), probability, path))

    def _is_ready_array(self, image: Any) -> bool:
        return (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.shape == self._shape
            and image.flags.c_contiguous
        )

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting work, cancel what has not started, wait for what has. Idempotent."""
        self._backend.close()

    def __enter__(self) -> "EmotionClassifier":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


_CANCELLED = "cancelled: the classifier was closed"


def _settled_by_failure(job: _Job, path: Any, done: Future) -> bool:
    """Settle ``job`` with an error Prediction when a step was cancelled (classifier closed) or failed."""
    if done.cancelled():
        job.settle(Prediction(None, None, path, _CANCELLED))
        return True
    exc = done.exception()
    if exc is not None:
        job.settle(Prediction(None, None, path, _reason(exc)))
        return True
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageDecodeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

