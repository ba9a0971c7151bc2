"""The formats a trained model runs in, named once for export verification and for benchmarks.

A format is the original Keras model, or one exported file run by :mod:`emotion.runtime` (the code users run)
with one backend and inference precision. Its parity class says which limits of the gate apply to it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from emotion.runtime import EmotionClassifier, ModelInfo, ModelLoadError, resolve_model


@dataclass(frozen=True)
class Format:
    """One way to run the model."""

    name: str  # what users type (``--formats``) and reports show
    backend: str  # "keras", "onnxruntime" or "openvino"
    variant: str  # the exported file's weights: "fp32", "fp16" or "int8"
    precision: str  # OpenVINO's inference precision hint, "f32" or "bf16"
    description: str  # one line for reports

    @property
    def parity_class(self) -> str:
        """Which parity limits apply: "reference" (Keras itself), "fp32", "bf16", "fp16" or "int8"."""
        if self.backend == "keras":
            return "reference"
        return "bf16" if self.precision == "bf16" else self.variant

    @property
    def openvino(self) -> bool:
        return self.backend == "openvino"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("keras", "keras", "fp32", "f32", "the original .keras model, TensorFlow"),
        Format("onnxruntime", "onnxruntime", "fp32", "f32", "ONNX file, ONNX Runtime CPU"),
        Format("openvino-fp32", "openvino", "fp32", "f32", "FP32 IR, f32 inference hint"),
        Format("openvino-bf16", "openvino", "fp32", "bf16", "FP32 IR, bf16 inference hint"),
        Format("openvino-fp16", "openvino", "fp16", "f32", "FP16-compressed IR, f32 inference hint"),
        Format("openvino-int8", "openvino", "int8", "f32", "INT8 IR (NNCF), f32 inference hint"),
    )
}


def parse_formats(names: Sequence[str] | None) -> list[Format]:
    """Formats by name, in the canonical order; commas and spaces both separate, "all" is every one.

    Raises:
        ValueError: an unknown name, with the list of known ones.
    """
    wanted = {n.strip().lower() for item in (names or ["all"]) for n in str(item).replace(",", " ").split()}
    known = ", ".join(FORMATS)
    unknown = sorted(wanted - set(FORMATS) - {"all"})
    if unknown or not wanted:
        raise ValueError(f"unknown format {unknown[0]!r}; known formats: {known}" if unknown
                         else f"no format given; known formats: {known}")
    return [f for name, f in FORMATS.items() if name in wanted or "all" in wanted]


def exported_file(fmt: Format, export_dir: str | os.PathLike) -> Path:
    """The file of ``export_dir`` that ``fmt`` runs (the ``.onnx`` for ONNX Runtime, else the variant's ``.xml``),
    or :class:`ModelLoadError`."""
    return resolve_model(export_dir, backend=fmt.backend, variant=fmt.variant)


def open_classifier(fmt: Format, path: str | os.PathLike, expected: ModelInfo | None = None, mode: str = "latency",
                    device: str = "CPU") -> EmotionClassifier:
    """The exported ``path`` loaded by the runtime as ``fmt`` runs it, without the compiled-model cache.

    Raises:
        ModelLoadError: the file cannot be loaded, or it does not answer like ``expected`` (input size, labels,
            decision threshold): then it is not an export of that model.
    """
    classifier = EmotionClassifier.load(path, device=device, backend=fmt.backend, precision=fmt.precision, mode=mode,
                                        cache_dir=None)
    problem = expected and mismatch(expected, classifier.info)
    if problem:
        classifier.close()
        raise ModelLoadError(f"{path}: {problem}: not an export of this model")
    return classifier


def mismatch(expected: ModelInfo, actual: ModelInfo) -> str | None:
    """Why a model described by ``actual`` cannot be the model described by ``expected``, or None."""
    if (actual.input_height, actual.input_width) != (expected.input_height, expected.input_width):
        return (f"its input is {actual.input_height}x{actual.input_width}, the original model takes "
                f"{expected.input_height}x{expected.input_width}")
    if tuple(actual.labels) != tuple(expected.labels):
        return f"its labels {list(actual.labels)} differ from {list(expected.labels)}"
    if not math.isclose(actual.threshold, expected.threshold, abs_tol=1e-9):
        return f"its decision threshold {actual.threshold:g} differs from {expected.threshold:g}"
    return None
