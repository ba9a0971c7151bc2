"""Names, paths and small helpers shared by the export modules (no heavy imports here)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Iterator

from emotion.runtime.locate import REPORT_NAME  # noqa: F401 - the export folder's report, named once
from emotion.runtime.metadata import ModelInfo

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OPSET = 17
MIN_OPSET = 17  # opset 17 is what OpenVINO, ONNX Runtime and tf2onnx 1.17 all handle well
DEFAULT_CALIBRATION_SIZE = 300  # NNCF's default subset size; enough for per-tensor activation ranges
IR_XML = "model.xml"
IR_BIN = "model.bin"
# OVMS wants numeric version folders; names become folder names and URL parts (KServe /v2/models/<name>).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# OpenVINO Model API reads these from rt_info. With ``embedded_processing`` false it adds, in memory at load, its
# own preprocessing in front of our uint8 input: a BGR photo of any size (what ``cv2.imread`` gives) resized to
# the model's size (OpenCV-style bilinear, aspect ratio not kept, as ours), then turned to RGB. No mean and no
# scale: the graph divides by 255 itself. The files are unchanged, so emotion.runtime feeds them as before.
MODEL_API_PREPROCESSING = {
    "embedded_processing": "False", "reverse_input_channels": "True", "resize_type": "standard",
    "interpolation_mode": "LINEAR", "mean_values": "", "scale_values": "",
}


class ExportError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ExportError(
            f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-' and start with a letter or digit "
            "(it becomes a folder name and a URL part)"
        )
    return name


def check_version(version: str | int) -> str:
    text = str(version)
    if not text.isdigit() or int(text) < 1:
        raise ExportError(f"version {text!r} must be a positive integer (OpenVINO Model Server version folder)")
    return str(int(text))


def check_precisions(precisions: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
    if not precisions:
        raise ExportError(f"give at least one precision ({', '.join(PRECISIONS)})")
    return tuple(p for p in PRECISIONS if p in precisions)  # canonical order, no duplicates


def check_opset(opset: int) -> int:
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old; use {MIN_OPSET} or newer")
    return opset


def repository_name(name: str, precision: str) -> str:
    """``emotion`` for FP32 (the default model a server should load), ``emotion-fp16``, ``emotion-int8``."""
    return name if precision == "fp32" else f"{name}-{precision}"


def ir_path(root: Path, name: str, version: str, precision: str) -> Path:
    return Path(root) / repository_name(name, precision) / str(version) / IR_XML


def onnx_path(root: Path, name: str) -> Path:
    return Path(root) / f"{name}.onnx"


class StepTimer:
    """Wall-clock seconds per named step, for the report (export time per step)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def metadata_strings(info: ModelInfo, precision: str) -> dict[str, str]:
    """What goes in ``rt_info["model_info"]`` and the ONNX metadata of one variant: :meth:`ModelInfo.to_strings`
    with ``precision`` set, and Model API's preprocessing keys (:data:`MODEL_API_PREPROCESSING`)."""
    return {**info.replace(precision=precision).to_strings(), **MODEL_API_PREPROCESSING}
