"""Inference engines behind one small contract, chosen once from the model file (ONNX Runtime imported only then).

:meth:`Backend.infer` is thread-safe: each thread owns its OpenVINO ``InferRequest`` (ONNX Runtime's ``run`` is
thread-safe), and both release the GIL, so threads that decode and infer side by side keep every core busy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .console import one_line
from .metadata import INPUT_NAME, OUTPUT_PROBABILITY, RT_INFO_SECTION, ModelInfo, ModelLoadError

BACKENDS = ("openvino", "onnxruntime")
MODES = ("latency", "throughput")
# OpenVINO's INFERENCE_PRECISION_HINT; f32 by default, because parity with Keras is correctness.
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}


def cache_dir(choice: str | os.PathLike | bool | None) -> Path | None:
    """OpenVINO's compiled-model cache folder: ``True`` the default, ``None``/``False`` none, else that folder.

    The default is ``$EMOTION_CACHE_DIR`` (empty: none), else ``$XDG_CACHE_HOME/emotion-edge/openvino``. A folder
    that cannot be written gives no cache: it only shortens cold starts and must not stop inference.
    """
    if choice is True:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        choice = os.environ.get("EMOTION_CACHE_DIR", os.path.join(base, "emotion-edge", "openvino"))
    if not choice:
        return None
    with contextlib.suppress(OSError):
        os.makedirs(choice, exist_ok=True)
    return Path(choice) if os.path.isdir(choice) and os.access(choice, os.W_OK) else None


def open_backend(path: Path, backend: str | None = None, **options: Any) -> Backend:
    """The backend for a model file: ``backend`` if given, else from its suffix (``.onnx``: ONNX Runtime)."""
    name = backend or ("onnxruntime" if path.suffix.lower() == ".onnx" else "openvino")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    try:  # refuse what is plainly not an IR or ONNX file before a framework tries every parser on it
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".xml":
        if b"<net" not in head:
            raise ModelLoadError(f"{path}: not an OpenVINO IR (.xml) file")
        if not path.with_suffix(".bin").is_file():
            raise ModelLoadError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    elif head[:1] != b"\x08":  # ONNX's protobuf starts with field 1, ir_version
        raise ModelLoadError(f"{path}: not an ONNX model file")
    return (OpenVINOBackend if name == "openvino" else OnnxRuntimeBackend)(path, **options)


@functools.cache
def shared_core() -> Any:
    """One ``openvino.Core`` per process: plugins load once, and a Core is thread-safe."""
    import openvino as ov

    return ov.Core()


class Backend:
    """What the classifier needs of an engine; a subclass loads in ``_load`` and infers in ``_run``."""

    name = "?"
    info: ModelInfo
    parallelism = 1  # inferences worth running at once (OpenVINO's optimal number of requests)

    def __init__(self, path: Path, device: str = "CPU", precision: str | None = None, mode: str = "latency",
                 cache_dir: Path | None = None, num_requests: int = 0, config: Mapping[str, Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use 'latency' or 'throughput'")
        self.precision = PRECISIONS.get(str(precision or "f32").lower())
        if self.precision is None:
            raise ValueError(f"unknown precision {precision!r}; use one of f32, bf16, f16")
        self.path, self.device, self.mode, self.cache_dir, self.closed = path, device, mode, cache_dir, False
        self._load(num_requests, dict(config or {}))

    def infer(self, image: np.ndarray) -> float:
        """P(Positive) for one uint8 (H, W, 3) image at the model's size."""
        if self.closed:
            raise RuntimeError("the classifier is closed")
        try:
            return self._run(image[None])
        except Exception as exc:  # each engine raises its own types; callers get one
            raise RuntimeError(f"inference failed: {one_line(exc)}") from None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": os.fsdecode(self.path), "device": self.device,
                "precision": self.precision, "mode": self.mode, "requests": self.parallelism}

    def close(self) -> None:
        self.closed = True

    def _adopt(self, metadata: Mapping[str, str], name: str, dtype: str, shape: tuple, outputs: set[str],
               inputs: int) -> None:
        """Read :attr:`info` from the metadata and check the exported-model contract: one uint8 NHWC input named
        ``image`` at the metadata's size (the scaling to [0, 1] is inside the graph), a ``probability`` output."""
        try:
            self.info = info = ModelInfo.from_strings(metadata)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{self.path}: {exc}") from None
        shown = f"{self.path}: input {name!r} is {dtype} [{', '.join('?' if d is None else str(d) for d in shape)}]"
        shown += f", one of {inputs} inputs" if inputs != 1 else ""
        if inputs != 1 or name != INPUT_NAME or dtype != "uint8" or len(shape) != 4 or shape[3] != 3:
            raise ModelLoadError(f"{shown}; expected uint8 NHWC [N, "
                                 f"{info.input_height}, {info.input_width}, 3] named {INPUT_NAME!r} (export the "
                                 "model with emotion-export)")
        if tuple(shape[1:3]) != (info.input_height, info.input_width):
            raise ModelLoadError(f"{shown}, but its metadata says {info.input_height}x{info.input_width}; the model "
                                 "and its metadata do not match")
        if OUTPUT_PROBABILITY not in outputs:
            raise ModelLoadError(f"{self.path}: the model has no {OUTPUT_PROBABILITY!r} output")


class OpenVINOBackend(Backend):
    """OpenVINO: the model compiled for one image at a time, and one ``InferRequest`` per thread that infers.

    A dynamic batch costs shape inference on every call (a large share of a small model's time), so the input
    is made static at batch 1.
    """

    name = "openvino"

    def _load(self, num_requests: int, config: dict[str, Any]) -> None:
        import openvino as ov

        try:
            model = shared_core().read_model(os.fspath(self.path))
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot read the model: {one_line(exc)}") from None
        # An IR's rt_info["model_info"], or, for an ONNX file read by OpenVINO, its metadata_props ("framework").
        section = RT_INFO_SECTION if model.has_rt_info([RT_INFO_SECTION]) else "framework"
        metadata = model.get_rt_info([section]).astype(dict) if model.has_rt_info([section]) else {}
        port, shape = model.inputs[0], model.inputs[0].get_partial_shape()
        self._adopt({str(k): v.astype(str) for k, v in metadata.items()},
                    INPUT_NAME if INPUT_NAME in port.get_names() else port.get_any_name(),
                    port.get_element_type().to_dtype().name,
                    tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else (),
                    {name for out in model.outputs for name in out.get_names()}, len(model.inputs))
        properties = {"PERFORMANCE_HINT": self.mode.upper(), "INFERENCE_PRECISION_HINT": self.precision,
                      **({"CACHE_DIR": os.fspath(self.cache_dir)} if self.cache_dir else {}), **config}
        try:
            model.reshape([1, self.info.input_height, self.info.input_width, 3])
            self._compiled = shared_core().compile_model(model, self.device, properties)
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot compile the model for {self.device}: {one_line(exc)}") from None
        self._output = next(i for i, out in enumerate(self._compiled.outputs) if OUTPUT_PROBABILITY in out.get_names())
        self.parallelism = num_requests or int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._requests, self._tensor = threading.local(), ov.Tensor

    def _run(self, batch: np.ndarray) -> float:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        # OpenVINO shares writeable C-contiguous memory only (a decoded image is read-only: copied once here),
        # and a shared tensor does not own that memory: ``pixels`` keeps it alive until the inference is over.
        pixels = np.require(batch, np.uint8, ("C", "W"))
        request.set_input_tensor(self._tensor(pixels, shared_memory=True))
        request.infer()
        return float(request.get_output_tensor(self._output).data[0, 0])

    def describe(self) -> dict[str, Any]:
        properties = {}
        for key, name in (("streams", "NUM_STREAMS"), ("inference_precision", "INFERENCE_PRECISION_HINT"),
                          ("performance_hint", "PERFORMANCE_HINT")):
            with contextlib.suppress(RuntimeError):  # a device without that property
                value = self._compiled.get_property(name)
                properties[key] = value.get_type_name() if hasattr(value, "get_type_name") else value
        return {**super().describe(), "cache_dir": os.fspath(self.cache_dir) if self.cache_dir else None, **properties}

    def close(self) -> None:
        super().close()
        self._requests = threading.local()  # every thread's request goes with the old one


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on CPU, the same contract; ``session.run`` is thread-safe."""

    name = "onnxruntime"

    def _load(self, num_requests: int, config: dict[str, Any]) -> None:
        if self.precision != "f32" or self.device.upper() != "CPU" or config:
            raise ModelLoadError(f"the onnxruntime backend runs f32 on CPU only, with no OpenVINO config (asked: "
                                 f"{self.precision} on {self.device}); use the openvino backend")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError("the onnxruntime backend needs onnxruntime (pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.mode == "throughput":  # parallel runs, one core each, rather than one run on every core
            options.intra_op_num_threads = 1
        self.parallelism = num_requests or ((os.cpu_count() or 1) if self.mode == "throughput" else 1)
        try:
            self._session = ort.InferenceSession(os.fspath(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: cannot load the ONNX model: {one_line(exc)}") from None
        port = self._session.get_inputs()[0]
        self._adopt(self._session.get_modelmeta().custom_metadata_map, port.name,
                    {"tensor(uint8)": "uint8", "tensor(float)": "float32"}.get(port.type, port.type),
                    tuple(d if isinstance(d, int) else None for d in port.shape),
                    {o.name for o in self._session.get_outputs()}, len(self._session.get_inputs()))

    def _run(self, batch: np.ndarray) -> float:
        return float(self._session.run([OUTPUT_PROBABILITY], {INPUT_NAME: batch})[0][0, 0])
