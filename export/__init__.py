"""emotion-export: a trained Keras model -> ONNX + OpenVINO IR (FP32, FP16, INT8), verified every time.

The README's "Export" section documents the output folder (an OpenVINO Model Server repository, written
atomically), the model contract every file shares and OpenVINO Model API on raw photos.

Python API (importing :mod:`emotion.export` is cheap: TensorFlow, OpenVINO and NNCF load on first use)::

    from emotion.export import export_model
    report = export_model("runs/oasis-seed", "models/", precisions=("fp32", "int8"))
    report.ok, report.verification.checks, report.files
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module defining it, imported only when asked for, so `emotion-export --help` stays fast.
_LAZY = {"ExportError": "common", "ExportReport": "report", "Verification": "verify", "export_model": "pipeline",
         "keras_predict": "verify", "verify": "verify", "verify_directory": "verify"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
