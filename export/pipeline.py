"""``export_model``: the whole export as one function call, used by the CLI and by benchmarks.

Cheapest checks first, so a mistake costs seconds, not a TensorFlow import: arguments and paths -> the Keras
model (one sigmoid output?) -> images -> ONNX -> IRs -> INT8 -> verification -> report. Everything is written
in a hidden sibling of ``out_dir`` renamed into place at the end (:func:`emotion.train.atomic.atomic_directory`);
an FP32 IR that was not asked for (INT8 is quantized from it, parity is checked on it) is removed before then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from emotion.runtime.console import interrupts_deferred
from emotion.runtime.locate import REPORT_NAME
from emotion.train.atomic import atomic_directory, check_output_folder, write_text
from emotion.train.versions import library_versions

from . import parity
from .common import (DEFAULT_CALIBRATION_SIZE, DEFAULT_OPSET, MIN_OPSET, PRECISIONS, ExportError, check_name,
                     check_version, ir_path)
from .data import calibration_set, image_files, verification_set
from .onnx_export import keras_to_onnx
from .openvino_export import constant_types, onnx_to_openvino, op_types, save_ir
from .quantize import quantize_int8
from .report import ExportReport
from .source import load_source, locate
from .verify import verify


class _Steps:
    """Numbered progress lines on stderr, and the wall-clock seconds of each step for the report."""

    def __init__(self, count: int, enabled: bool) -> None:
        self.count, self.enabled, self.done, self.seconds = count, enabled, 0, {}

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"emotion-export: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def __call__(self, key: str, label: str) -> Iterator[None]:
        self.done += 1
        self.say(f"[{self.done}/{self.count}] {label}")
        start = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - start, 3)


def check_arguments(source: str | os.PathLike, out_dir: str | os.PathLike, precisions: Iterable[str],
                    calibration: str | os.PathLike | None, data: str | os.PathLike | None,
                    max_auc_drop: float | None, opset: int, name: str | None, version: str | int | None,
                    force: bool, calibration_size: int) -> tuple[Path, Any, tuple[str, ...]]:
    """Everything that can be checked without TensorFlow: (the .keras file, its run or None, the precisions).

    Raises:
        ExportError: the first problem found, in one line that says what to change.
    """
    precisions = list(precisions)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
    if not precisions:
        raise ExportError(f"give at least one precision ({', '.join(PRECISIONS)})")
    chosen = tuple(p for p in PRECISIONS if p in precisions)  # canonical order, no duplicates
    if int(opset) < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old; use {MIN_OPSET} or newer")
    if calibration_size < 1:
        raise ExportError(f"--calibration-size must be at least 1, got {calibration_size}")
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
    check_output_folder(out, model_path, calibration, data, run and run.recorded_data_root())
    if calibration is not None and "int8" in chosen:
        image_files(calibration)  # a folder without images is an error before any slow work
    if data is not None and not Path(data).expanduser().is_dir():
        raise ExportError(f"--data {data} is not a folder (expected DATA/Negative and DATA/Positive)")
    return model_path, run, chosen


def export_model(source: str | os.PathLike, out_dir: str | os.PathLike, precisions: Iterable[str] = PRECISIONS, *,
                 calibration: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                 max_auc_drop: float | None = None, opset: int = DEFAULT_OPSET, name: str | None = None,
                 version: str | int | None = None, force: bool = False,
                 calibration_size: int = DEFAULT_CALIBRATION_SIZE, progress: bool = True) -> ExportReport:
    """Export a run folder or ``.keras`` file to ``out_dir`` and verify it; see the README's "Export" section.

    ``name`` and ``version`` default to the model's (``emotion``, ``1``). Returns the report, also when FP32 parity
    failed (``report.ok`` is False then, and the files are written so the report can be read next to them).

    Raises:
        ExportError: unusable input, or a conversion that failed; nothing is written then.
    """
    started = time.perf_counter()
    model_path, run, chosen = check_arguments(source, out_dir, precisions, calibration, data, max_auc_drop, opset,
                                              name, version, force, calibration_size)
    out, opset = Path(out_dir).expanduser(), int(opset)
    steps = _Steps(5 + len(chosen) - ("fp32" in chosen), progress)
    with steps("load_keras", f"loading {model_path}"):
        with interrupts_deferred():  # Ctrl-C inside onnx's import could segfault instead of exiting 130
            import onnx, openvino, tensorflow  # noqa: F401, E401
        src = load_source(model_path)
    info = src.info.replace(name=check_name(name or src.info.name),
                            version=check_version(version or src.info.version))
    fp32_strings = info.replace(precision="fp32").to_strings()
    report = ExportReport(source=str(model_path.resolve()), source_sha256=info.source_sha256,
                          run_dir=str(run.path.resolve()) if run else None, out_dir=str(out.resolve()),
                          name=info.name, version=info.version, precisions=list(chosen), opset=opset,
                          model_info=fp32_strings, notes=list(src.notes))
    if src.refit and data is None:  # run.json "refit": the validation split is training data too
        report.notes.append("the model was refit on its validation images: ROC AUC and accuracy on them are in-sample "
                            "(parity is not affected); --data with other labelled images gives held-out figures")
    with steps("images", "reading images through the shared preprocessing"):
        images = verification_set(info.preprocess_spec, src.split, data, calibration, progress)
        cal = (calibration_set(info.preprocess_spec, src.split, calibration, calibration_size, progress)
               if "int8" in chosen else None)

    def save(model: Any, precision: str) -> Path:
        return save_ir(model, ir_path(build, info.name, info.version, precision),
                       info.replace(precision=precision).to_strings(), compress_to_fp16=precision == "fp16")

    with atomic_directory(out, force=force) as build:
        with steps("onnx", f"Keras -> ONNX (tf2onnx, opset {opset})"):
            onnx_file = keras_to_onnx(src.model, info, opset, fp32_strings, build / f"{info.name}.onnx")
        with steps("openvino_fp32", "ONNX -> OpenVINO IR (FP32)"):
            ov_model = onnx_to_openvino(onnx_file)
            save(ov_model, "fp32")  # always: INT8 is quantized from it and parity is checked on it
        if "fp16" in chosen:
            with steps("openvino_fp16", "FP16-compressed IR"):
                save(ov_model, "fp16")
        if "int8" in chosen:
            control = " with accuracy control" if max_auc_drop else ""
            with steps("openvino_int8", f"INT8 by NNCF post-training quantization{control}"):
                quantized, report.quantization = quantize_int8(ov_model.clone(), cal, images, max_auc_drop)
                save(quantized, "int8")
            if max_auc_drop:
                report.notes.append("accuracy control chose which layers stay in float on the verification images: "
                                    "INT8's figures on them are optimistic; emotion-bench --data on other images "
                                    "gives held-out ones")
        built = ("fp32",) + tuple(p for p in chosen if p != "fp32")
        with steps("verify", f"verifying on {len(images)} images through emotion.runtime"):
            report.verification = verify(build, src.model, info, images, built, parity.EXPORT_LIMITS,
                                         progress=lambda fmt: steps.say(f"      checking {fmt}"))
        if "fp32" not in chosen:
            shutil.rmtree(ir_path(build, info.name, info.version, "fp32").parent.parent)
            report.notes.append("the FP32 IR was built to quantize and to check parity but not kept "
                                "(not in --precision)")
        report.files = _describe_files(build, onnx_file, opset,
                                       {p: ir_path(build, info.name, info.version, p) for p in chosen})
        report.timings_seconds = {**steps.seconds, "total": round(time.perf_counter() - started, 3)}
        report.versions = library_versions()
        write_text(build / REPORT_NAME, report.to_json())
    return report


def _describe_files(build: Path, onnx_file: Path, opset: int, irs: dict[str, Path]) -> dict[str, dict]:
    """Path, size, constant types and fake-quantize count of every shipped file, for the report."""
    files = {"onnx": {"path": onnx_file.name, "bytes": onnx_file.stat().st_size, "opset": opset}}
    for precision, xml in irs.items():
        weights = xml.with_suffix(".bin").stat().st_size
        files[precision] = {"path": xml.relative_to(build).as_posix(), "bytes": xml.stat().st_size + weights,
                            "bin_bytes": weights, "constants": dict(sorted(constant_types(xml).items())),
                            "fake_quantize": op_types(xml).get("FakeQuantize", 0)}
    return files
