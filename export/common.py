"""Names, paths and checks shared by the export modules (no heavy imports here)."""

from __future__ import annotations

import re
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OPSET = 17
MIN_OPSET = 17  # opset 17 is what OpenVINO, ONNX Runtime and tf2onnx 1.17 all handle well
DEFAULT_CALIBRATION_SIZE = 300  # NNCF's default subset size; enough for per-tensor activation ranges
# OVMS wants numeric version folders; names become folder names and URL parts (KServe /v2/models/<name>).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ExportError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-' and start with a "
                          "letter or digit (it becomes a folder name and a URL part)")
    return name


def check_version(version: str | int) -> str:
    text = str(version)
    if not text.isdigit() or int(text) < 1:
        raise ExportError(f"version {text!r} must be a positive integer (OpenVINO Model Server version folder)")
    return str(int(text))


def ir_path(root: Path, name: str, version: str, precision: str) -> Path:
    """``<name>`` holds FP32 (the model a server should load by default), ``<name>-fp16`` and ``<name>-int8``."""
    repository = name if precision == "fp32" else f"{name}-{precision}"
    return Path(root) / repository / str(version) / "model.xml"
