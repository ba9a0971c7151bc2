"""Inference backends with one contract: OpenVINO (the default) and ONNX Runtime (optional, imported lazily).

Both take the exported model's input as it is: ``uint8`` NHWC RGB at the model's size, named ``image``
(scaling to [0, 1] is inside the graph), and read P(Positive) from the ``probability`` output. A backend

* reads and checks the model (metadata, input and output signature): a :class:`ModelLoadError` with a
  one-line reason for anything this runtime cannot use;
* runs one image or a batch synchronously (:meth:`Backend.infer_one`, :meth:`Backend.infer`), the
  low-latency path: one pre-created request, the caller's array shared, not copied;
* runs single images asynchronously (:meth:`Backend.submit` -> ``Future[float]``), thread-safe and never
  blocking the caller, for :meth:`EmotionClassifier.predict_many` and servers.

Only numpy and openvino are imported here; onnxruntime only when that backend is chosen.
"""

from __future__ import annotations

import abc

import os
import queue
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .metadata import INPUT_NAME, OUTPUT_PROBABILITY, RT_INFO_SECTION, MetadataError, ModelInfo

BACKENDS = ("openvino", "onnxruntime")
MODES = ("latency", "throughput")
# Inference precisions (OpenVINO's INFERENCE_PRECISION_HINT); None means f32: parity with Keras is correctness.
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
CACHE_ENV = "EMOTION_CACHE_DIR"


class ModelLoadError(ValueError):
    """The model cannot be used (missing, corrupt, no metadata, wrong input, ...); the message says why."""


class InferenceError(RuntimeError):
    """An inference failed inside the backend."""


def normalize_precision(precision: str | None) -> str:
    if precision is None:
        return "f32"
    try:
        return PRECISIONS[str(precision).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; use one of f32, bf16, f16") from None


def normalize_mode(mode: str) -> str:
    value = str(mode).lower()
    if value not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use 'latency' or 'throughput'")
    return value


def default_cache_dir() -> Path | None:
    """``$EMOTION_CACHE_DIR``, else ``$XDG_CACHE_HOME/emotion-edge/openvino`` (``~/.cache`` by default)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit is not None:
        return Path(explicit) if explicit else None  # EMOTION_CACHE_DIR="" disables the cache
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emotion-edge" / "openvino"


def resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    """``True``: the default location; ``None``/``False``: no cache; else that folder. None when unusable."""
    if cache_dir is None or cache_dir is False:
        return None
    path = default_cache_dir() if cache_dir is True else Path(cache_dir)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home must not stop inference; the cache only shortens cold starts
    return path if os.access(path, os.W_OK) else None


def short_error(exc: BaseException) -> str:
    """OpenVINO's multi-line 'Exception from src/...' messages, reduced to their informative line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(("Exception from ", "Check '")) and not line.startswith("[ ")
    ]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.rstrip(".")


# -- signature checks (shared by both backends) ------------------------------------------------------------
def parse_metadata(path: Path, values: Mapping[str, str] | None) -> ModelInfo:
    try:
        return ModelInfo.from_strings(values or {})
    except MetadataError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def check_signature(
    path: Path,
    info: ModelInfo,
    inputs: list[tuple[set[str], str, tuple[int | None, ...] | None]],
    outputs: dict[str, tuple[int | None, ...] | None],
) -> int | None:
    """Check the model's input/outputs against the contract; return the static batch size (None: dynamic).

    ``inputs``: (names, dtype such as "uint8", shape with None for dynamic dimensions or None if the rank is
    unknown); ``outputs``: output name -> shape.
    """
    expected = f"uint8 NHWC [N, {info.input_height}, {info.input_width}, 3] named {INPUT_NAME!r}"
    if len(inputs) != 1:
        names = ", ".join(sorted(n for names, _, _ in inputs for n in names)) or "none"
        raise ModelLoadError(
            f"{path}: the model has {len(inputs)} inputs ({names}); an emotion-edge model has one, {expected}"
        )
    names, dtype, shape = inputs[0]
    shown = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" if shape is not None else "[...]"
    described = f"input {'/'.join(sorted(names)) or '(unnamed)'!r} is {dtype} {shown}"
    if INPUT_NAME not in names:
        raise ModelLoadError(f"{path}: {described}; expected {expected} (export the model with emotion-export)")
    if dtype != "uint8" or shape is None or len(shape) != 4 or shape[3] != 3:
        raise ModelLoadError(f"{path}: {described}; expected {expected}")
    if (shape[1], shape[2]) != (info.input_height, info.input_width):
        raise ModelLoadError(
            f"{path}: {described}, but its metadata says {info.input_height}x{info.input_width}; "
            "the model and its metadata do not match"
        )
    if OUTPUT_PROBABILITY not in outputs:
        raise ModelLoadError(
            f"{path}: the model has no {OUTPUT_PROBABILITY!r} output (outputs: {', '.join(sorted(outputs)) or 'none'})"
        )
    out_shape = outputs[OUTPUT_PROBABILITY]
    if out_shape is not None and (len(out_shape) != 2 or out_shape[1] not in (1, None)):
        raise ModelLoadError(f"{path}: output {OUTPUT_PROBABILITY!r} has shape {list(out_shape)}; expected [N, 1]")
    return shape[0]


def _sniff_model_file(path: Path) -> None:
    """Refuse files that are plainly not an IR or ONNX model before a framework tries every parser on them."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
    if not head:
        raise ModelLoadError(f"{path}: the model file is empty")
    if path.suffix.lower() == ".xml":
        if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or b"<net" not in head:
            raise ModelLoadError(f"{path}: not an OpenVINO IR (.xml) file")
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(f"{path}: its weights file {weights.name} is missing")
    elif path.suffix.lower() == ".onnx":
        if head[:1] != b"\x08":  # protobuf field 1 (ir_version), which every ONNX file starts with
            raise ModelLoadError(f"{path}: not an ONNX model file")


class Backend(abc.ABC):
    """What :class:`~emotion.runtime.classifier.EmotionClassifier` needs of an inference engine."""

    name = "?"
    path: Path
    info: ModelInfo
    device: str
    precision: str
    mode: str
    static_batch: int | None = None  # the model's fixed batch size, None when dynamic
    parallelism: int = 1  # inferences worth keeping in flight (asynchronous requests or worker threads)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """P(Positive) for a checked uint8 (N, H, W, 3) batch, as a float32 (N,) array."""
        if batch.shape[0] == 0:
            return np.zeros((0,), np.float32)
        size = self.static_batch
        if size is None or batch.shape[0] == size:
            return self._infer(batch)
        parts = []
        for start in range(0, batch.shape[0], size):
            chunk = batch[start : start + size]
            count = chunk.shape[0]
            if count < size:  # pad the last chunk of a fixed-batch model
                chunk = np.concatenate([chunk, np.zeros((size - count,) + chunk.shape[1:], np.uint8)])
            parts.append(self._infer(chunk)[:count])
        return np.concatenate(parts)

    def infer_one(self, image: np.ndarray) -> float:
        """P(Positive) for one checked uint8 (H, W, 3) image, on the low-latency path."""
        return float(self.infer(image[None])[0])

    @abc.abstractmethod
    def submit(self, image: np.ndarray) -> "Future[float]":
        """Start one inference without blocking; the future gives P(Positive)."""

    def close(self) -> None:
        pass

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """P(Positive) for a batch the model accepts as it is."""

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "path": os.fsdecode(self.path),
            "device": self.device,
            "precision": self.precision,
            "mode": self.mode,
            "requests": self.parallelism,
        }


# -- OpenVINO ----------------------------------------------------------------------------------------------
_core_lock = threading.Lock()
_core = None


def shared_core():
    """One ``openvino.Core`` per process (plugins load once; Core is thread-safe)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def openvino_metadata(model) -> dict[str, str]:
    """The model's ``rt_info["model_info"]`` strings; for an ONNX file read by OpenVINO, its metadata_props."""
    for section in (RT_INFO_SECTION, "framework"):
        try:
            if not model.has_rt_info([section]):
                continue
            raw = model.get_rt_info([section]).astype(dict)
        except Exception:  # not a map: ignore the section
            continue
        values: dict[str, str] = {}
        for key, value in raw.items():
            try:
                values[str(key)] = value.astype(str)
            except Exception:
                values[str(key)] = str(value)
        if section == RT_INFO_SECTION or "emotion_edge_format" in values:
            return values
    return {}


def _ov_shape(partial_shape) -> tuple[int | None, ...] | None:
    if partial_shape.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


_OV_TYPES = {"u8": "uint8", "f32": "float32", "f16": "float16", "i8": "int8", "i32": "int32", "i64": "int64"}


class OpenVINOBackend(Backend):
    """OpenVINO: a pre-created request for the synchronous path, an ``AsyncInferQueue`` for the rest."""

    name = "openvino"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "CPU",
        precision: str | None = None,
        mode: str = "latency",
        cache_dir: str | os.PathLike | bool | None = True,
        num_requests: int = 0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        import openvino as ov

        self._ov = ov
        self.path = Path(path)
        self.device = device
        self.precision = normalize_precision(precision)
        self.mode = normalize_mode(mode)
        _sniff_model_file(self.path)
        core = shared_core()
        try:
            model = core.read_model(os.fspath(self.path))
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot read the model: {short_error(exc)}") from None
        self.info = parse_metadata(self.path, openvino_metadata(model))
        self.static_batch = check_signature(
            self.path,
            self.info,
            [
                (
                    set(port.get_names()),
                    _OV_TYPES.get(port.get_element_type().get_type_name(), port.get_element_type().get_type_name()),
                    _ov_shape(port.get_partial_shape()),
                )
                for port in model.inputs
            ],
            {name: _ov_shape(port.get_partial_shape()) for port in model.outputs for name in port.get_names()},
        )
        self.cache_dir = resolve_cache_dir(cache_dir)
        config = {**self._config(core, precision is not None), **dict(config or {})}
        try:
            self._compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot compile the model for {device}: {short_error(exc)}") from None
        self._output_index = next(
            i for i, port in enumerate(self._compiled.outputs) if OUTPUT_PROBABILITY in port.get_names()
        )
        # The low-latency path: one request made now, guarded by a lock (InferRequest is not thread-safe).
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        if num_requests <= 0:
            try:
                num_requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            except Exception:
                num_requests = 1
            if self.mode == "throughput":
                # One filled request waiting per stream: a stream never idles while Python (callback, feeder
                # thread, decode threads sharing the GIL) starts its next inference. Measured: +10-15% img/s.
                num_requests *= 2
        self.parallelism = max(1, num_requests)
        self._async: _AsyncQueueFeeder | None = None
        self._async_lock = threading.Lock()
        self._closed = False

    def _config(self, core, explicit_precision: bool) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.mode.upper()}
        supported: set[str] | None = None
        try:
            supported = set(core.get_property(self.device.split(":")[0].split(".")[0], "SUPPORTED_PROPERTIES"))
        except Exception:
            supported = None  # AUTO:..., HETERO:...: pass the hints on and let OpenVINO decide
        if supported is None or "INFERENCE_PRECISION_HINT" in supported:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        elif explicit_precision:
            raise ModelLoadError(f"device {self.device} does not accept an inference precision")
        if supported is not None and "PERFORMANCE_HINT" not in supported:
            del config["PERFORMANCE_HINT"]
        if self.cache_dir is not None:
            config["CACHE_DIR"] = os.fspath(self.cache_dir)
        return config

    def _run(self, batch: np.ndarray, first_only: bool):
        """Synchronous inference on the pre-created request; the caller's array is shared, not copied."""
        batch = shareable(batch)  # referenced here until the inference is over: the tensor does not own it
        tensor = self._ov.Tensor(batch, shared_memory=True)
        with self._lock:
            self._check_open()
            request = self._request
            request.set_input_tensor(tensor)
            try:
                request.infer()
            except Exception as exc:
                raise InferenceError(f"inference failed: {short_error(exc)}") from None
            data = request.get_output_tensor(self._output_index).data
            return float(data[0, 0]) if first_only else data[:, 0].copy()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, first_only=False)

    def infer_one(self, image: np.ndarray) -> float:
        if self.static_batch not in (None, 1):
            return super().infer_one(image)
        return self._run(image[None], first_only=True)

    def submit(self, image: np.ndarray) -> "Future[float]":
        if self.static_batch not in (None, 1):
            # A fixed-batch model: pad to its batch on the synchronous path, in a worker thread.
            return _fallback_executor(self).submit(self.infer_one, image)
        with self._async_lock:
            self._check_open()
            if self._async is None:
                self._async = _AsyncQueueFeeder(self._ov, self._compiled, self.parallelism, self._output_index)
            return self._async.submit(shareable(image)[None])

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the classifier is closed")

    def close(self) -> None:
        with self._async_lock:
            if self._closed:
                return
            self._closed = True
            feeder, self._async = self._async, None
        if feeder is not None:
            feeder.close()
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._request = None

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data["cache_dir"] = os.fspath(self.cache_dir) if self.cache_dir is not None else None
        for key, prop in (
            ("streams", "NUM_STREAMS"),
            ("inference_precision", "INFERENCE_PRECISION_HINT"),
            ("performance_hint", "PERFORMANCE_HINT"),
        ):
            try:
                value = self._compiled.get_property(prop)
            except Exception:
                continue
            if hasattr(value, "get_type_name"):
                value = value.get_type_name()  # openvino.Type -> "f32" / "bf16"
            data[key] = value if isinstance(value, (int, float, bool)) else str(value)
        return data


def shareable(array: np.ndarray) -> np.ndarray:
    """``array`` if OpenVINO can share its memory (writeable, C-contiguous uint8), else such a copy.

    Arrays made from Pillow images are read-only (they wrap ``bytes``), so decoded images are copied once
    here. The caller must keep the returned array alive until the inference is over: an ``openvino.Tensor``
    made with ``shared_memory=True`` points at its memory without owning it.
    """
    if array.flags.c_contiguous and array.flags.writeable and array.dtype == np.uint8:
        return array
    return np.array(array, dtype=np.uint8, order="C", copy=True)


def _fallback_executor(backend: Backend) -> ThreadPoolExecutor:
    executor = getattr(backend, "_executor", None)
    if executor is None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emotion-infer")
        backend._executor = executor  # type: ignore[attr-defined]
    return executor


_STOP = object()
_POLL_SECONDS = 0.02


class _AsyncQueueFeeder:
    """``submit`` for OpenVINO: a non-blocking, thread-safe front to an ``AsyncInferQueue``.

    ``AsyncInferQueue.start_async`` blocks while every request is busy and must not be called from several
    threads at once, so callers put work on a queue and one feeder thread starts it: the queue keeps all its
    requests busy, a server's event loop never blocks, and a callback resolves each future. OpenVINO does not
    call the callback of a failed inference; it raises the error when that request is waited for or reused.
    So the feeder looks for failed requests when it starts one and, while work is in flight, every
    ``_POLL_SECONDS``; it then fails exactly the futures whose callbacks never ran and carries on with a
    fresh queue (a request that failed can stay unusable).
    """

    def __init__(self, ov, compiled, jobs: int, output_index: int) -> None:
        self._ov = ov
        self._compiled = compiled
        self._jobs = jobs
        self._output_index = output_index
        self._work: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._inflight: set[Future] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="emotion-openvino-feeder", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop_feeder, self._work, self._thread)

    def submit(self, batch: np.ndarray) -> "Future[float]":
        """``batch``: a writeable C-contiguous uint8 (1, H, W, 3) array, shared with OpenVINO, not copied."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the classifier is closed")
            self._work.put((batch, future))
        return future

    def _new_queue(self):
        infer_queue = self._ov.AsyncInferQueue(self._compiled, self._jobs)
        infer_queue.set_callback(self._on_done)
        return infer_queue

    def _on_done(self, request, userdata) -> None:
        # Runs on an OpenVINO thread; must never raise (an exception would poison the AsyncInferQueue).
        future = userdata[0]
        try:
            value = float(request.get_output_tensor(self._output_index).data[0, 0])
        except BaseException as exc:  # noqa: BLE001 - reported through the future
            _settle(future, exception=InferenceError(f"cannot read the result: {exc}"))
        else:
            _settle(future, result=value)
        with self._lock:
            self._inflight.discard(future)

    def _start(self, infer_queue, batch: np.ndarray, future: Future) -> None:
        with self._lock:
            self._inflight.add(future)
        # The request reads `batch` in place: the userdata keeps it (and the tensor) alive until the callback.
        tensor = self._ov.Tensor(batch, shared_memory=True)
        infer_queue.start_async(tensor, (future, batch, tensor))

    def _run(self) -> None:
        infer_queue = self._new_queue()
        while True:
            with self._lock:
                busy = bool(self._inflight)
            try:
                # While inferences are in flight, wake up now and then to look for failed ones (their
                # callbacks never run), so that no future waits forever.
                item = self._work.get(timeout=_POLL_SECONDS) if busy else self._work.get()
            except queue.Empty:
                failure = _first_failure(infer_queue)
                if failure is not None:
                    infer_queue = self._recover(infer_queue, failure, keep=None)
                continue
            if item is _STOP:
                break
            batch, future = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while waiting (predict_many closed early, a client went away)
            try:
                self._start(infer_queue, batch, future)
            except Exception as exc:  # an earlier inference failed, reported on its request's reuse
                infer_queue = self._recover(infer_queue, exc, keep=future)
                try:
                    self._start(infer_queue, batch, future)
                except Exception as again:
                    with self._lock:
                        self._inflight.discard(future)
                    _settle(future, exception=InferenceError(f"inference failed: {short_error(again)}"))
        failure = None
        for request in infer_queue:
            try:
                request.wait()
            except Exception as exc:
                failure = exc
        if failure is not None:
            self._recover(infer_queue, failure, keep=None, reopen=False)
        # Anything submitted after the stop request (a race with close()) is cancelled, not left hanging.
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[1].cancel()

    def _recover(self, infer_queue, exc: BaseException, keep: Future | None, reopen: bool = True):
        for request in infer_queue:  # wait for each (wait_all stops at the first failed one)
            try:
                request.wait()
            except Exception:
                pass
        with self._lock:
            failed = [f for f in self._inflight if f is not keep]
            self._inflight.difference_update(failed)
        for future in failed:
            _settle(future, exception=InferenceError(f"inference failed: {short_error(exc)}"))
        return self._new_queue() if reopen else None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Work not started yet is cancelled; started work finishes (its futures resolve).
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[1].cancel()
        self._finalizer()


def _first_failure(infer_queue) -> BaseException | None:
    """The error of a request whose inference failed, if any (``wait_for`` raises it; it never blocks)."""
    for request in infer_queue:
        try:
            request.wait_for(0)
        except Exception as exc:
            return exc
    return None


def _stop_feeder(work: "queue.SimpleQueue[Any]", thread: threading.Thread) -> None:
    work.put(_STOP)
    if thread is not threading.current_thread():
        thread.join()


def _settle(future: Future, result: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except Exception:  # already cancelled or settled
        pass


# -- ONNX Runtime ------------------------------------------------------------------------------------------
_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(float16)": "float16"}


def _ort_shape(shape) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on CPU: the same input contract; worker threads run ``session.run`` (thread-safe)."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "CPU",
        precision: str | None = None,
        mode: str = "latency",
        cache_dir: Any = None,  # noqa: ARG002 - OpenVINO only
        num_requests: int = 0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.device = device
        self.mode = normalize_mode(mode)
        self.precision = normalize_precision(precision)
        if self.precision != "f32":
            raise ModelLoadError(f"the onnxruntime backend runs f32 only, not {self.precision}")
        if device.upper() != "CPU":
            raise ModelLoadError(f"the onnxruntime backend runs on CPU only, not {device}")
        if config:
            raise ModelLoadError("config= holds OpenVINO properties; the onnxruntime backend takes none")
        if self.path.suffix.lower() != ".onnx":
            raise ModelLoadError(f"{self.path}: the onnxruntime backend needs an .onnx model")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(
                "the onnxruntime backend needs the onnxruntime package (pip install onnxruntime)"
            ) from None
        _sniff_model_file(self.path)
        cpus = os.cpu_count() or 1
        options = ort.SessionOptions()
        if self.mode == "throughput":
            options.intra_op_num_threads = 1  # parallelism comes from concurrent runs, one per core
            workers = num_requests if num_requests > 0 else cpus
        else:
            workers = num_requests if num_requests > 0 else 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                os.fspath(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot load the ONNX model: {short_error(exc)}") from None
        self.info = parse_metadata(self.path, self._session.get_modelmeta().custom_metadata_map)
        self.static_batch = check_signature(
            self.path,
            self.info,
            [({i.name}, _ORT_TYPES.get(i.type, i.type), _ort_shape(i.shape)) for i in self._session.get_inputs()],
            {o.name: _ort_shape(o.shape) for o in self._session.get_outputs()},
        )
        self.parallelism = max(1, workers)
        self._executor = ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="emotion-onnxruntime")
        self._closed = False

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError("the classifier is closed")
        try:
            (out,) = self._session.run([OUTPUT_PROBABILITY], {INPUT_NAME: batch})
        except Exception as exc:
            raise InferenceError(f"inference failed: {short_error(exc)}") from None
        return np.asarray(out, dtype=np.float32)[:, 0]

    def submit(self, image: np.ndarray) -> "Future[float]":
        if self._closed:
            raise RuntimeError("the classifier is closed")
        return self._executor.submit(self.infer_one, image)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=True, cancel_futures=True)


def create_backend(name: str, path: str | os.PathLike, **options: Any) -> Backend:
    if name == "openvino":
        return OpenVINOBackend(path, **options)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(path, **options)
    raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
