"""The parity check every export ends with: each exported variant against the Keras model it came from.

All backends get the same uint8 images (the shared preprocessing's output); Keras gets them through
:func:`emotion.runtime.preprocess.scale`, the exported models scale inside. For each variant: the largest
|P(variant) - P(Keras)|, the share of images given the same label (with the model's decision threshold), and,
when labels are known, ROC AUC, accuracy and balanced accuracy.

FP32 must be *the same model*: ONNX Runtime and the FP32 IR computed in f32 must stay within
:data:`PARITY_TOLERANCE` of Keras and agree on every label, or the export fails (exit status 1). The other
rows are measurements, not gates: FP32 IR computed in bf16 (what this CPU does by default when it has
AVX512-BF16/AMX), the FP16-compressed IR and the INT8 IR, each computed with an f32 hint so that the row shows
what the weights' precision alone changes.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from emotion.runtime.metadata import INPUT_NAME, OUTPUT_PROBABILITY, ModelInfo

from .data import ImageSet
from .openvino_export import cpu_supports_bf16
from .source import keras_predict

PARITY_TOLERANCE = 1e-4
BATCH_SIZE = 16


@dataclass
class Row:
    """One line of the parity table."""

    variant: str  # keras, onnx, ir-fp32, ir-fp32-bf16, ir-fp16, ir-int8
    weights: str  # fp32, fp16, int8
    runtime: str  # keras, onnxruntime, openvino
    compute: str  # f32 or bf16 (OpenVINO's INFERENCE_PRECISION_HINT)
    images: int
    max_abs_diff: float | None = None
    label_agreement: float | None = None  # percent of images with the Keras label
    roc_auc: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    seconds: float | None = None
    gate: bool = False  # True: FP32 parity is required of this row
    passed: bool | None = None
    error: str | None = None


@dataclass
class Verification:
    data: dict
    threshold: float
    tolerance: float = PARITY_TOLERANCE
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def parity_ok(self) -> bool:
        return not self.problems

    def row(self, variant: str) -> Row | None:
        return next((r for r in self.rows if r.variant == variant), None)

    def to_dict(self) -> dict:
        return {
            "data": self.data,
            "threshold": self.threshold,
            "tolerance": self.tolerance,
            "parity_ok": self.parity_ok,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "rows": [asdict(r) for r in self.rows],
        }


def onnx_predict(path: str | os.PathLike, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """P(Positive) from an exported ONNX file with ONNX Runtime (CPU), fed uint8 NHWC batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    out = [session.run([OUTPUT_PROBABILITY], {INPUT_NAME: images[i : i + batch_size]})[0].reshape(-1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def openvino_predict(
    model: Any, images: np.ndarray, hint: str | None = "f32", batch_size: int = BATCH_SIZE, core: Any = None
) -> np.ndarray:
    """P(Positive) from an IR (path or ``openvino.Model``) on CPU; ``hint`` is INFERENCE_PRECISION_HINT
    (``"f32"``, ``"bf16"``, or None for the plugin's default, which is bf16 on CPUs with AMX)."""
    import openvino as ov

    core = core or ov.Core()
    if isinstance(model, (str, os.PathLike)):
        model = core.read_model(os.fspath(model))
    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    out = []
    for i in range(0, len(images), batch_size):
        result = request.infer({INPUT_NAME: np.ascontiguousarray(images[i : i + batch_size])})
        out.append(np.asarray(result[compiled.output(OUTPUT_PROBABILITY)]).reshape(-1).copy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def compare(probabilities: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, threshold: float) -> dict:
    """max |dP|, label agreement (%), and ROC AUC / accuracy / balanced accuracy when labels are known."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    predicted = (p >= threshold).astype(np.int64)
    out: dict = {
        "max_abs_diff": float(np.max(np.abs(p - ref))) if len(p) else 0.0,
        "label_agreement": float(100.0 * np.mean(predicted == (ref >= threshold))) if len(p) else 100.0,
    }
    if labels is not None and len(labels):
        out["accuracy"] = float(accuracy_score(labels, predicted))
        out["balanced_accuracy"] = float(balanced_accuracy_score(labels, predicted))
        if len(set(np.asarray(labels).tolist())) == 2:
            out["roc_auc"] = float(roc_auc_score(labels, p))
    return out


def verify(
    keras_model: Any,
    info: ModelInfo,
    images: ImageSet,
    onnx_path: str | os.PathLike | None = None,
    irs: Mapping[str, str | os.PathLike] | None = None,
    bf16: bool | None = None,
    reference: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> Verification:
    """Compare every given variant with Keras on ``images``.

    ``irs`` maps a weight precision (fp32, fp16, int8) to a ``model.xml``. ``bf16``: add the FP32-IR-in-bf16
    row (default: when the CPU supports bf16). ``reference``: Keras probabilities already computed.
    """
    import openvino as ov

    core = ov.Core()
    irs = dict(irs or {})
    if bf16 is None:
        bf16 = cpu_supports_bf16(core)
    result = Verification(images.summary(), float(info.threshold))
    result.data.pop("rejected", None)
    if images.rejected:
        result.data["rejected"] = len(images.rejected)
    if images.labels is None:
        result.notes.append("no labels: ROC AUC, accuracy and balanced accuracy are not computed")
    x = images.images

    start = time.perf_counter()
    if reference is None:
        reference = keras_predict(keras_model, x)
    keras_row = Row("keras", "fp32", "keras", "f32", len(x), seconds=round(time.perf_counter() - start, 3))
    for key, value in compare(reference, reference, images.labels, info.threshold).items():
        setattr(keras_row, key, value)
    result.rows.append(keras_row)

    plan: list[tuple[Row, Callable[[], np.ndarray]]] = []
    if onnx_path is not None:
        plan.append((Row("onnx", "fp32", "onnxruntime", "f32", len(x), gate=True),
                     lambda: onnx_predict(onnx_path, x)))
    if "fp32" in irs:
        path = irs["fp32"]
        plan.append((Row("ir-fp32", "fp32", "openvino", "f32", len(x), gate=True),
                     lambda: openvino_predict(path, x, "f32", core=core)))
        if bf16:
            plan.append((Row("ir-fp32-bf16", "fp32", "openvino", "bf16", len(x)),
                         lambda: openvino_predict(path, x, "bf16", core=core)))
        else:
            result.notes.append("this CPU has no bf16 support: no bf16 row")
    for precision in ("fp16", "int8"):
        if precision in irs:
            path_p = irs[precision]
            plan.append((Row(f"ir-{precision}", precision, "openvino", "f32", len(x)),
                         lambda p=path_p: openvino_predict(p, x, "f32", core=core)))

    for row, run in plan:
        if progress:
            progress(row.variant)
        start = time.perf_counter()
        try:
            probabilities = run()
        except Exception as exc:  # a backend that cannot run the file is a finding, not a crash
            row.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        else:
            for key, value in compare(probabilities, reference, images.labels, info.threshold).items():
                setattr(row, key, value)
        row.seconds = round(time.perf_counter() - start, 3)
        if row.gate:
            row.passed = (
                row.error is None
                and row.max_abs_diff is not None
                and row.max_abs_diff <= PARITY_TOLERANCE
                and row.label_agreement == 100.0
            )
            if not row.passed:
                why = row.error or (f"max |dP| {row.max_abs_diff:.3g} (limit {PARITY_TOLERANCE:g}), "
                                    f"label agreement {row.label_agreement:.2f}%")
                result.problems.append(f"{row.variant} does not match Keras: {why}")
        result.rows.append(row)
    if onnx_path is None and "fp32" not in irs:
        result.notes.append("no FP32 variant given: FP32 parity not checked")
    return result


def verify_directory(
    out_dir: str | os.PathLike, source: str | os.PathLike, data: str | os.PathLike | None = None
) -> Verification:
    """Re-run the parity check on an existing export ``out_dir`` against its Keras ``source`` (run or .keras).

    For benchmarks and CI: uses the run's validation split, or ``data``, like ``emotion-export`` does.
    """
    import json

    from .common import REPORT_NAME, ir_path, onnx_path as onnx_file
    from .data import verification_set
    from .source import load_source

    out_dir = Path(out_dir)
    report = json.loads((out_dir / REPORT_NAME).read_text(encoding="utf-8"))
    name, version = report["name"], report["version"]
    src = load_source(source)
    images = verification_set(src.info.preprocess_spec, src.split, data, progress=False)
    irs = {p: ir_path(out_dir, name, version, p) for p in report["precisions"]}
    return verify(src.model, src.info, images, onnx_file(out_dir, name), irs)
