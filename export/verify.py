"""The check every export ends with: each exported file, run by :mod:`emotion.runtime`, against the Keras model.

Every format is fed the same uint8 images (the shared preprocessing's output) through
:meth:`EmotionClassifier.predict_batch`, the code users run; Keras gets them through
:func:`emotion.train.model_io.predict_proba`. The FP32 rows must be the same model (:data:`EXPORT_LIMITS`), or
the export fails with exit status 1; the FP16, INT8 and bf16 rows are measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from emotion.runtime.metadata import ModelInfo

from .data import ImageSet
from .formats import FORMATS, Format, exported_file, open_classifier
from .parity import EXPORT_LIMITS, Check, Limits, Verdict, compare, judge, passed, table


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

    def table(self) -> str:
        return table(self.checks)


def runtime_predict(fmt: Format, path: str | os.PathLike, images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """P(Positive) of ``images`` from the exported ``path``, loaded by the runtime as ``fmt`` runs it.

    Raises:
        ModelLoadError: the file cannot be loaded, or it is not an export of the model ``info`` describes.
    """
    with open_classifier(fmt, path, expected=info) as classifier:
        return classifier.predict_batch(images)


def verify(export_dir: str | os.PathLike, reference: np.ndarray, info: ModelInfo, images: ImageSet,
           formats: Sequence[Format], limits: Mapping[str, Limits] = EXPORT_LIMITS,
           progress: Callable[[str], None] | None = None) -> Verification:
    """Compare every format's predictions on ``images`` with Keras' ``reference`` ones.

    Args:
        export_dir: the export folder whose files the formats run.
        reference: Keras' P(Positive) for ``images``.
        info: the Keras model's metadata (labels, threshold, input size), which every file must match.
        formats: the exported formats to check (Keras is the reference row, always first).
        limits: the gate's limits per parity class.
    """
    result = Verification({k: v for k, v in images.summary().items() if k != "rejected"}, float(info.threshold))
    if images.rejected:
        result.data["rejected"] = len(images.rejected)
    if images.labels is None:
        result.notes.append("no labels: ROC AUC, accuracy and balanced accuracy are not computed")
    result.checks.append(judge("keras", "reference", compare(reference, reference, images.labels, info.threshold),
                               limits))
    for fmt in formats:
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


def export_formats(precisions: Sequence[str], bf16: bool) -> list[Format]:
    """The formats that run an export of IRs in ``precisions`` and its ONNX file; the FP32 IR also under the bf16
    hint when the CPU has bf16."""
    names = ["onnxruntime"] + [f"openvino-{p}" for p in precisions]
    if bf16 and "fp32" in precisions:
        names.insert(2, "openvino-bf16")
    return [FORMATS[name] for name in names]


def verify_directory(export_dir: str | os.PathLike, source: str | os.PathLike,
                     data: str | os.PathLike | None = None) -> Verification:
    """Re-run the export's check on an existing ``export_dir`` against its Keras ``source`` (run or .keras file).

    Uses the run's validation split, or ``data``, as ``emotion-export`` does.
    """
    import json

    from .common import REPORT_NAME
    from .data import verification_set
    from .openvino_export import cpu_supports_bf16
    from .source import keras_predict, load_source

    report = json.loads((Path(export_dir) / REPORT_NAME).read_text(encoding="utf-8"))
    src = load_source(source)
    images = verification_set(src.info.preprocess_spec, src.split, data, progress=False)
    return verify(export_dir, keras_predict(src.model, images.images), src.info, images,
                  export_formats(report["precisions"], cpu_supports_bf16()))
