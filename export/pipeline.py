"""``export_model``: the whole export as one function call, used by the CLI and by benchmarks.

Order of work, cheapest checks first so a mistake costs seconds, not a TensorFlow import:
arguments and paths -> load the Keras model (one sigmoid output?) -> read images -> ONNX -> IRs -> INT8 ->
verification -> report. Everything is written inside a hidden temporary sibling of ``out_dir`` that is renamed
into place only at the end (:func:`emotion.train.atomic.atomic_directory`); intermediate files that are not
shipped (the float core ONNX, an FP32 IR that was not asked for but is needed to quantize and to check
parity) live in a separate temporary folder that is always removed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from emotion.train.atomic import atomic_directory, write_text

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
) -> tuple[Path, Path | None, tuple[str, ...]]:
    """Everything that can be checked without TensorFlow; returns (model file, run folder, precisions)."""
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
    model_path, run_dir = locate(source)
    out = Path(out_dir).expanduser()
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; choose another folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    protected = [model_path, run_dir] + [Path(p).expanduser() for p in (calibration, data) if p is not None]
    for item in protected:
        if item is not None and item.exists() and _inside(item, out):
            raise ExportError(f"--out {out} contains {item}; replacing it would delete that: choose another folder")
    if calibration is not None and "int8" in chosen:
        image_files(calibration, "calibration")  # a folder without images is an error before any slow work
    if data is not None and not Path(data).expanduser().is_dir():
        raise ExportError(f"--data {data} is not a folder (expected DATA/Negative and DATA/Positive)")
    return model_path, run_dir, chosen


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
    verify_limit: int | None = None,
    progress: bool = True,
) -> ExportReport:
    """Export a run folder or ``.keras`` file to ``out_dir`` and verify it; see :mod:`emotion.export`.

    ``name``/``version`` default to the model's ModelInfo (``emotion``/``1``). ``verify_limit`` caps the number
    of verification images (a deterministic sample). Raises :class:`ExportError` for unusable input (nothing
    is written then); returns the report otherwise, also when FP32 parity failed (``report.ok`` is False and
    the files are written, so the report can be read next to them).
    """
    started = time.perf_counter()
    say = _say(progress)
    if calibration_size < 1:
        raise ExportError(f"calibration_size must be at least 1, got {calibration_size}")
    model_path, run_dir, chosen = check_arguments(
        source, out_dir, precisions, calibration, data, max_auc_drop, opset, name, version, force
    )
    out = Path(out_dir).expanduser()
    timer = StepTimer()
    steps = ["load", "images", "onnx", "openvino"] + [p for p in chosen if p != "fp32"] + ["verify"]
    counter = iter(range(1, len(steps) + 1))

    def step(label: str) -> None:
        say(f"[{next(counter)}/{len(steps)}] {label}")

    from .data import calibration_set, verification_set
    from .source import load_source

    step(f"loading {model_path}")
    with timer.step("load_keras"):
        src = load_source(model_path)
    info = src.info.replace(name=name or src.info.name, version=str(version or src.info.version))
    model_name, model_version = check_name(info.name), check_version(info.version)
    info = info.replace(version=model_version)
    report = ExportReport(
        source=str(model_path.resolve()), source_sha256=info.source_sha256,
        run_dir=str(run_dir.resolve()) if run_dir else None, out_dir=str(out.resolve()), name=model_name, version=model_version, precisions=list(chosen), opset=int(opset),
        model_info=metadata_strings(info, "fp32"), notes=list(src.notes),
    )
    spec = info.preprocess_spec

    step("reading images through the shared preprocessing")
    with timer.step("images"):
        images = verification_set(spec, src.split, data, calibration, verify_limit, progress)
        cal = calibration_set(spec, src.split, calibration, calibration_size, progress) if "int8" in chosen else None

    from .onnx_export import keras_to_onnx, save as save_onnx
    from .openvino_export import constant_types, onnx_to_openvino, op_types, save_ir
    from .verify import verify

    with tempfile.TemporaryDirectory(prefix="emotion-export-") as scratch_dir, \
            atomic_directory(out, force=force) as build:
        scratch = Path(scratch_dir)
        step(f"Keras -> ONNX (tf2onnx, opset {opset})")
        with timer.step("onnx"):
            core, shipped = keras_to_onnx(src.model, info, int(opset), metadata_strings(info, "fp32"))
            save_onnx(core, scratch / "core.onnx")
            save_onnx(shipped, onnx_path(build, model_name))

        step("ONNX -> OpenVINO IR (FP32)")
        irs: dict[str, Path] = {}
        with timer.step("openvino_fp32"):
            ov_model = onnx_to_openvino(scratch / "core.onnx", spec.height, spec.width)
            root = build if "fp32" in chosen else scratch
            irs["fp32"] = save_ir(ov_model, ir_path(root, model_name, model_version, "fp32"),
                                  metadata_strings(info, "fp32"), compress_to_fp16=False)
        if "fp16" in chosen:
            step("FP16-compressed IR")
            with timer.step("openvino_fp16"):
                irs["fp16"] = save_ir(ov_model, ir_path(build, model_name, model_version, "fp16"),
                                      metadata_strings(info, "fp16"), compress_to_fp16=True)
        if "int8" in chosen:
            from .quantize import quantize_int8

            mode = "with accuracy control" if max_auc_drop is not None else ""
            step(f"INT8 by NNCF post-training quantization {mode}".strip())
            with timer.step("openvino_int8"):
                reference_model = ov_model.clone()
                quantized, report.quantization = quantize_int8(
                    reference_model, cal, images if images.labels is not None else None, max_auc_drop
                )
                irs["int8"] = save_ir(quantized, ir_path(build, model_name, model_version, "int8"),
                                      metadata_strings(info, "int8"), compress_to_fp16=False)

        step(f"verifying on {len(images)} images")
        with timer.step("verify"):
            verify_irs = {p: irs[p] for p in irs}
            report.verification = verify(src.model, info, images, onnx_path(build, model_name), verify_irs,
                                         progress=(lambda v: say(f"      checking {v}")) if progress else None)
        if "fp32" not in chosen:
            report.notes.append("the FP32 IR was built to quantize and to check parity but not kept "
                                "(not in --precision)")

        onnx_file = onnx_path(build, model_name)
        report.files["onnx"] = {"path": onnx_file.name, "bytes": onnx_file.stat().st_size, "opset": int(opset)}
        for precision in chosen:
            xml = irs[precision]
            bin_ = xml.with_name(IR_BIN)
            ops = op_types(xml)
            report.files[precision] = {
                "path": xml.relative_to(build).as_posix(),
                "bytes": xml.stat().st_size + bin_.stat().st_size,
                "bin_bytes": bin_.stat().st_size,
                "constants": dict(sorted(constant_types(xml).items())),
                "fake_quantize": ops.get("FakeQuantize", 0),
            }
        timer.seconds["total"] = round(time.perf_counter() - started, 3)
        report.timings = dict(timer.seconds)
        from .report import library_versions

        report.versions = library_versions()
        write_text(build / REPORT_NAME, report.to_json())
    return report
