"""The check every export ends with: each exported file, run by :mod:`emotion.runtime`, against the Keras model.

Every format gets the same uint8 images (the shared preprocessing's output) through
:meth:`EmotionClassifier.predict_batch`, the code users run. The FP32 rows must be the same model
(:data:`EXPORT_LIMITS`), or the export exits 1; the FP16, INT8 and bf16 rows are measurements.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from emotion.runtime.locate import REPORT_NAME
from emotion.runtime.metadata import ModelInfo
from emotion.train.model_io import predict_proba as keras_predict  # the Keras reference every export is held to

from .data import ImageSet, verification_set
from .formats import FORMATS, Format, exported_file, open_classifier
from .openvino_export import cpu_supports_bf16
from .parity import EXPORT_LIMITS, Check, Limits, Verdict, compare, judge, passed
from .source import load_source


@dataclass
class Verification:
    """The gate's checks on one set of images."""

    data: dict
    threshold: float
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def parity_ok(self) -> bool:
        return passed(self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.format}: {'; '.join(c.problems)}" for c in self.checks if c.verdict is Verdict.FAIL]

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.format == name), None)

    def to_dict(self) -> dict:
        return {"data": self.data, "threshold": self.threshold, "parity_ok": self.parity_ok,
                "problems": self.problems, "notes": list(self.notes), "checks": [c.to_dict() for c in self.checks]}


def runtime_predict(fmt: Format, path: str | os.PathLike, images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """P(Positive) of ``images`` from the exported ``path`` run by the runtime as ``fmt``; :class:`ModelLoadError`
    if the file cannot be loaded or is not an export of the model ``info`` describes."""
    with open_classifier(fmt, path, expected=info) as classifier:
        return classifier.predict_batch(images)


def verify(export_dir: str | os.PathLike, model: Any, info: ModelInfo, images: ImageSet, precisions: Sequence[str],
           limits: Mapping[str, Limits] = EXPORT_LIMITS, progress: Callable[[str], None] | None = None) -> Verification:
    """Keras ``model`` against the files of ``export_dir`` on ``images``: its ONNX, its IRs in ``precisions`` (the
    FP32 IR also under the bf16 hint when the CPU has bf16), each run by the runtime.

    Args:
        info: the Keras model's metadata (labels, threshold, input size), which every file must match.
        progress: called with each format's name before it runs.
    """
    reference = keras_predict(model, images.images)
    result = Verification(images.summary(), float(info.threshold))
    if images.labels is None:
        result.notes.append("no labels: ROC AUC, accuracy and balanced accuracy are not computed")
    result.checks.append(judge("keras", "reference", compare(reference, reference, images.labels, info.threshold),
                               limits))
    names = ["onnxruntime"] + [f"openvino-{p}" for p in precisions]
    if "fp32" in precisions and cpu_supports_bf16():
        names.insert(2, "openvino-bf16")
    for fmt in (FORMATS[name] for name in names):
        if progress:
            progress(fmt.name)
        try:
            probabilities = runtime_predict(fmt, exported_file(fmt, export_dir), images.images, info)
        except (RuntimeError, ValueError) as exc:  # ModelLoadError is a ValueError: a finding, not a crash
            result.checks.append(judge(fmt.name, fmt.parity_class, None, limits, error=str(exc)))
            continue
        parity = compare(probabilities, reference, images.labels, info.threshold)
        result.checks.append(judge(fmt.name, fmt.parity_class, parity, limits))
    return result


def verify_directory(export_dir: str | os.PathLike, source: str | os.PathLike,
                     data: str | os.PathLike | None = None) -> Verification:
    """Re-run the export's check on an existing ``export_dir`` against its Keras ``source`` (run or .keras file),
    on ``data`` or else the run's validation split, as ``emotion-export`` does."""
    precisions = json.loads((Path(export_dir) / REPORT_NAME).read_text(encoding="utf-8"))["precisions"]
    src = load_source(source)
    images = verification_set(src.info.preprocess_spec, src.split, data, progress=False)
    return verify(export_dir, src.model, src.info, images, precisions)
