"""``export_model``: the whole export as one function call, used by the CLI and by benchmarks.

Order of work, cheapest checks first so a mistake costs seconds, not a TensorFlow import:
arguments and paths -> load the Keras model (one sigmoid output?) -> read images -> ONNX -> IRs -> INT8 ->
verification -> report. Everything is written inside a hidden temporary sibling of ``out_dir`` that is renamed
into place only at the end (:func:`emotion.train.atomic.atomic_directory`); an FP32 IR that was not asked for
(it is needed to quantize and to check parity) is removed before then.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from emotion.train.atomic import atomic_directory, write_text
from emotion.train.versions import library_versions

from .common import (
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_OPSET,
    IR_BIN,
    PRECISIONS,
    REPORT_NAME,
    ExportError,
    StepTimer,
    check_name,
    check_opset,
    check_precisions,
    check_version,
    ir_path,
    metadata_strings,
    onnx_path,
)
from .report import ExportReport


def _say(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            print(f"emotion-export: {message}", file=sys.stderr, flush=True)

    return say


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_arguments(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    precisions: Iterable[str],
    calibration: str | os.PathLike | None,
    data: str | os.PathLike | None,
    max_auc_drop: float | None,
    opset: int,
    name: str | None,
    version: str | int | None,
    force: bool,
) -> tuple[Path, Any, tuple[str, ...]]:
    """Everything that can be checked without TensorFlow: (the .keras file, its run or None, the precisions).

    Raises:
        ExportError: the first problem found, in one line that says what to change.
    """
    from .data import image_files
    from .source import locate

    chosen = check_precisions(list(precisions))
    check_opset(int(opset))
    if name is not None:
        check_name(name)
    if version is not None:
        check_version(version)
    if max_auc_drop is not None:
        if "int8" not in chosen:
            raise ExportError("--max-auc-drop controls INT8 quantization; add int8 to --precision")
        if not 0.0 < float(max_auc_drop) < 1.0:
            raise ExportError(f"--max-auc-drop must be between 0 and 1 (an absolute ROC AUC drop), got {max_auc_drop}")
    model_path, run = locate(source)
    out = Path(out_dir).expanduser()
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; choose another folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    protected = [model_path, run.path if run else None] + [Path(p).expanduser() for p in (calibration, data) if p is not None]
    for item in protected:
        if item is not None and item.exists() and _inside(item, out):
            raise ExportError(f"--out {out} contains {item}; replacing it would delete that: choose another folder")
    if calibration is not None and "int8" in chosen:
        image_files(calibration, "calibration")  # a folder without images is an error before any slow work
    if data is not None and not Path(data).expanduser().is_dir():
        raise ExportError(f"--data {data} is not a folder (expected DATA/Negative and DATA/Positive)")
    return model_path, run, chosen


def export_model(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    precisions: Iterable[str] = PRECISIONS,
    *,
    calibration: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    max_auc_drop: float | None = None,
    opset: int = DEFAULT_OPSET,
    name: str | None = None,
    version: str | int | None = None,
    force: bool = False,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    progress: bool = True,
) -> ExportReport:
    """Export a run folder or ``.keras`` file to ``out_dir`` and verify it; see :mod:`emotion.export`.

    Args:
        name, version: the repository's model name and version folder (default: the model's, ``emotion``/``1``).

    Returns:
        The report, also when FP32 parity failed (``report.ok`` is False then, and the files are written so the
        report can be read next to them).

    Raises:
        ExportError: unusable input, or a conversion that failed; nothing is written then.
    """
    started = time.perf_counter()
    say = _say(progress)
    if calibration_size < 1:
        raise ExportError(f"calibration_size must be at least 1, got {calibration_size}")
    model_path, run, chosen = check_arguments(
        source, out_dir, precisions, calibration, data, max_auc_drop, opset, name, version, force
    )
    out = Path(out_dir).expanduser()
    timer = StepTimer()
    steps = ["load", "images", "onnx", "openvino"] + [p for p in chosen if p != "fp32"] + ["verify"]
    counter = iter(range(1, len(steps) + 1))

    def step(label: str) -> None:
        say(f"[{next(counter)}/{len(steps)}] {label}")

    from .data import calibration_set, verification_set
    from .source import keras_predict, load_source

    step(f"loading {model_path}")
    with timer.step("load_keras"):
        src = load_source(model_path)
    info = src.info.replace(name=name or src.info.name, version=str(version or src.info.version))
    model_name, model_version = check_name(info.name), check_version(info.version)
    info = info.replace(version=model_version)
    report = ExportReport(
        source=str(model_path.resolve()), source_sha256=info.source_sha256,
        run_dir=str(run.path.resolve()) if run else None, out_dir=str(out.resolve()), name=model_name,
        version=model_version, precisions=list(chosen), opset=int(opset), model_info=metadata_strings(info, "fp32"),
        notes=list(src.notes),
    )

    step("reading images through the shared preprocessing")
    with timer.step("images"):
        images = verification_set(info.preprocess_spec, src.split, data, calibration, progress)
        cal = (calibration_set(info.preprocess_spec, src.split, calibration, calibration_size, progress)
               if "int8" in chosen else None)

    from .onnx_export import keras_to_onnx
    from .openvino_export import cpu_supports_bf16, onnx_to_openvino, save_ir
    from . import parity
    from .verify import export_formats, verify

    def save(model: Any, precision: str) -> Path:
        return save_ir(model, ir_path(build, model_name, model_version, precision),
                       metadata_strings(info, precision), compress_to_fp16=precision == "fp16")

    with atomic_directory(out, force=force) as build:
        step(f"Keras -> ONNX (tf2onnx, opset {opset})")
        with timer.step("onnx"):
            onnx_file = keras_to_onnx(src.model, info, int(opset), metadata_strings(info, "fp32"),
                                      onnx_path(build, model_name))
        step("ONNX -> OpenVINO IR (FP32)")
        with timer.step("openvino_fp32"):
            ov_model = onnx_to_openvino(onnx_file)
            save(ov_model, "fp32")  # always: INT8 is quantized from it and parity is checked on it
        if "fp16" in chosen:
            step("FP16-compressed IR")
            with timer.step("openvino_fp16"):
                save(ov_model, "fp16")
        if "int8" in chosen:
            from .quantize import quantize_int8

            step("INT8 by NNCF post-training quantization" + (" with accuracy control" if max_auc_drop else ""))
            with timer.step("openvino_int8"):
                validation = images if images.labels is not None else None
                quantized, report.quantization = quantize_int8(ov_model.clone(), cal, validation, max_auc_drop)
                save(quantized, "int8")

        built = ("fp32",) + tuple(p for p in chosen if p != "fp32")
        step(f"verifying on {len(images)} images through emotion.runtime")
        with timer.step("verify"):
            formats = export_formats(built, cpu_supports_bf16())
            report.verification = verify(build, keras_predict(src.model, images.images), info, images, formats,
                                         parity.EXPORT_LIMITS,
                                         progress=(lambda name: say(f"      checking {name}")) if progress else None)
        if "fp32" not in chosen:
            shutil.rmtree(ir_path(build, model_name, model_version, "fp32").parent.parent)
            report.notes.append("the FP32 IR was built to quantize and to check parity but not kept "
                                "(not in --precision)")
        report.files = _describe_files(build, onnx_file, int(opset), {
            p: ir_path(build, model_name, model_version, p) for p in chosen})
        timer.seconds["total"] = round(time.perf_counter() - started, 3)
        report.timings = dict(timer.seconds)
        report.versions = library_versions()
        write_text(build / REPORT_NAME, report.to_json())
    return report


def _describe_files(build: Path, onnx_file: Path, opset: int, irs: dict[str, Path]) -> dict[str, dict]:
    """Path, size, constant types and fake-quantize count of every shipped file, for the report."""
    from .openvino_export import constant_types, op_types

    files = {"onnx": {"path": onnx_file.name, "bytes": onnx_file.stat().st_size, "opset": opset}}
    for precision, xml in irs.items():
        weights = xml.with_name(IR_BIN)
        files[precision] = {
            "path": xml.relative_to(build).as_posix(),
            "bytes": xml.stat().st_size + weights.stat().st_size,
            "bin_bytes": weights.stat().st_size,
            "constants": dict(sorted(constant_types(xml).items())),
            "fake_quantize": op_types(xml).get("FakeQuantize", 0),
        }
    return files
