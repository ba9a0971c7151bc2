"""``EmotionClassifier``: load an exported model and classify images with it.

One concurrency mechanism serves every path: worker threads that decode with the shared preprocessing and infer
on their own request (both release the GIL). ``predict`` runs in the caller's thread, ``submit`` gives one image
to the workers, and ``predict_many`` keeps them busy with a bounded window of chunks, in input order.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .backends import Backend, cache_dir as resolve_cache_dir, open_backend
from .console import attempt
from .files import Candidate
from .locate import resolve_model
from .metadata import shortest
from .preprocess import ImageSource, preprocess

# A worker decodes a chunk of images, then infers them: decoding and inference evict each other's data from the CPU
# caches, and taking turns per chunk rather than per image keeps both warm. A chunk holds about this many bytes of
# decoded input and at least 16 images, so small models get longer chunks (benchmarks/results/chunk.md).
CHUNK_BYTES = 1 << 20


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
        """JSON-ready: the path as text (undecodable bytes as lone surrogates), P(Positive) as the shortest decimal
        that reads back to the model's float32."""
        path = None if self.path is None else os.fsdecode(self.path)
        probability = None if self.probability is None else shortest(self.probability)
        return {"path": path, "label": self.label, "probability": probability, "error": self.error}


class EmotionClassifier:
    """An exported emotion model, ready to classify images. Thread-safe; close it, or use ``with``.

    ``workers`` decode and infer for :meth:`submit` and :meth:`predict_many` (default: one more than the CPU count,
    so the cores stay busy while a worker waits on a file or the GIL; at least the backend's optimal number of
    parallel inferences).

    Example:
        >>> with EmotionClassifier.load("exports/run1") as clf:          # doctest: +SKIP
        ...     clf.predict("photo.jpg")
        Prediction(label='Positive', probability=0.93, path='photo.jpg', error=None)
    """

    def __init__(self, backend: Backend, workers: int | None = None) -> None:
        self.backend, self.info, self.spec = backend, backend.info, backend.info.preprocess_spec
        self.input_shape = (self.spec.height, self.spec.width, 3)  # what goes to the model without preprocessing
        self.chunk = max(16, CHUNK_BYTES // (3 * self.spec.height * self.spec.width))  # images per worker task
        self.workers = workers or max((os.cpu_count() or 1) + 1, backend.parallelism)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="emotion")

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "CPU", backend: str | None = None,
             precision: str | None = None, mode: str = "latency", cache_dir: str | os.PathLike | bool | None = True,
             *, variant: str | None = None, num_requests: int = 0, config: Mapping[str, Any] | None = None,
             workers: int | None = None) -> "EmotionClassifier":
        """Load a model from a ``.xml``/``.onnx`` file or a version, repository or export folder.

        Args:
            path: see :func:`emotion.runtime.locate.resolve_model`; ``variant`` picks among an export's models.
            device: an OpenVINO device ("CPU", "GPU", "AUTO", ...).
            backend: "openvino" or "onnxruntime"; None picks by the model file (``.onnx``: ONNX Runtime).
            precision: None or "f32" (parity with Keras), "bf16" (faster on CPUs with AMX), "f16".
            mode: "latency" (one image at a time) or "throughput" (folders, servers: more streams).
            cache_dir: OpenVINO's compiled-model cache: True the default folder, None off, or a folder.
            num_requests: inferences worth running at once (0: OpenVINO's optimal number).
            config: extra OpenVINO compile properties, applied over the ones above.
            workers: see the class.

        Raises:
            ModelLoadError: a one-line reason why the model cannot be used.
        """
        model = resolve_model(path, backend=backend, variant=variant)
        return cls(open_backend(model, backend, device=device, precision=precision, mode=mode, config=config,
                                cache_dir=resolve_cache_dir(cache_dir), num_requests=num_requests), workers)

    def describe(self) -> dict[str, Any]:
        """The model and how it runs, JSON-ready (reports, ``emotion-infer --json``, the server)."""
        info = self.info
        return {"name": info.name, "version": info.version, "architecture": info.architecture,
                "model_precision": info.precision, "labels": list(info.labels), "threshold": info.threshold,
                "input_size": [info.input_height, info.input_width], "resize_filter": info.resize_filter,
                "workers": self.workers, **self.backend.describe()}

    def preprocess(self, image: ImageSource) -> np.ndarray:
        """The model's uint8 (H, W, 3) input for ``image``; :class:`ImageDecodeError` if it is not usable."""
        return preprocess(image, self.spec)

    def predict(self, image: ImageSource) -> Prediction:
        """Classify one image (any :func:`~emotion.runtime.preprocess.preprocess` source) in the calling thread.

        Raises:
            ImageDecodeError: a one-line reason why ``image`` is not usable.
            RuntimeError: the classifier is closed, or the inference failed.
        """
        return self._prediction(image, self.backend.infer(self.preprocess(image)))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(Positive), float32 (N,), for a uint8 (N, H, W, 3) RGB batch already at the model's size."""
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"predict_batch takes a uint8 array of shape (N, {', '.join(map(str, self.input_shape))})"
                             f"; got {batch.dtype} {batch.shape} (use predict_many for files)")
        return np.array([self.backend.infer(image) for image in batch], np.float32)

    def submit(self, image: ImageSource) -> "Future[Prediction]":
        """Classify one image on the worker threads; never blocks. The future raises what :meth:`predict` would.

        In asyncio: ``await asyncio.wrap_future(clf.submit(image))``.
        """
        return self._submit(self.predict, image)

    def predict_many(self, images: Iterable[ImageSource | Candidate],
                     window: int | None = None) -> Iterator[Prediction]:
        """Classify every item of ``images`` (sources or :class:`Candidate`), one :class:`Prediction` each, in order.

        An item that cannot be classified yields a Prediction with ``error`` set and the stream goes on. Workers
        take the items in chunks of :attr:`chunk`; at most ``window`` items (default: two chunks per worker) are
        read ahead of what has been yielded, so memory stays bounded. If ``images`` itself raises, the predictions
        of the items before it are yielded first, then the error is raised.
        """
        window = window or 2 * self.chunk * self.workers
        items, size, pending = iter(images), min(self.chunk, window), deque()
        error, more = None, True
        try:
            while pending or more:
                while more and (len(pending) + 1) * size <= window:
                    chunk = []
                    try:
                        chunk.extend(itertools.islice(items, size))
                    except Exception as exc:  # the items before it are answered first
                        error = exc
                    more = error is None and len(chunk) == size
                    if chunk:
                        pending.append(self._submit(self._classify, chunk))
                if pending:
                    yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
        if error is not None:
            raise error

    def _submit(self, function: Callable[[Any], Any], argument: Any) -> Future:
        try:
            return self._pool.submit(function, argument)
        except RuntimeError:  # the pool is shut down
            raise RuntimeError("the classifier is closed") from None

    def _classify(self, chunk: list[Any]) -> list[Prediction]:
        """Decode every item of ``chunk``, then infer every decoded one; each failure stays with its item."""
        sources = [item.path if isinstance(item, Candidate) else item for item in chunk]
        decoded = [(None, item.error) if isinstance(item, Candidate) and item.error
                   else attempt(self.preprocess, source) for item, source in zip(chunk, sources)]
        answers = [(None, error) if error else attempt(self.backend.infer, image) for image, error in decoded]
        return [self._prediction(source, *answer) for source, answer in zip(sources, answers)]

    def _prediction(self, source: Any, probability: float | None, error: str | None = None) -> Prediction:
        path = source if isinstance(source, (str, os.PathLike)) else None
        return Prediction(None if error else self.info.label_for(probability), probability, path, error)

    def close(self) -> None:
        """Cancel work not started, wait for work started, release the model. Idempotent."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.backend.close()

    def __enter__(self) -> "EmotionClassifier":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

