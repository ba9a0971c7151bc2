"""``emotion-bench RUN``: every format of one model, measured side by side on the same validation images.

One loop over the formats, one :class:`FormatResult` each, errors caught per format; the README's benchmark
section says what is measured and how.
"""

from __future__ import annotations

import argparse
import enum
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion.export.formats import FORMATS, Format, exported_file, parse_formats
from emotion.export.openvino_export import cpu_supports_bf16
from emotion.export.parity import DEFAULT_LIMITS, Check, Limits, compare, judge, passed
from emotion.runtime import ModelInfo, ModelLoadError, resolve_model
from emotion.runtime.console import UsageError, non_negative_float, positive_float, positive_int
from emotion.train.data import DataError, Sample, load_dataset, load_images
from emotion.train.model_io import read_info
from emotion.train.run_folder import RunFolder, locate

from . import coldstart
from .report import main_table, markdown  # noqa: F401 - markdown: this command's report
from .timing import interleave, ratio, series
from .workers import FormatWorker, make_folder, pair_ratios


class Status(str, enum.Enum):
    OK = "ok"
    SKIPPED = "skipped"  # cannot run on this machine (bf16 without CPU support)
    UNAVAILABLE = "unavailable"  # the export has no file for it
    ERROR = "error"  # it failed to load or to predict; the reason is kept


@dataclass
class FormatResult:
    """One row of the benchmark: what the format is, whether it ran, how faithful and how fast it is."""

    format: str
    description: str
    status: Status = Status.OK
    reason: str | None = None
    model: str | None = None
    size_mb: float | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def fail(self, status: Status, reason: str) -> None:
        self.status, self.reason = status, reason

    def keep(self, key: str, work: Callable[[], Any]) -> Any:
        """``work()``'s value, or None with its failure (an exception or an ``error`` entry) kept in ``errors``."""
        try:
            value = work()
        except RuntimeError as exc:
            value = {"error": str(exc)}
        if isinstance(value, dict) and value.get("error"):
            self.errors.append(f"{key}: {value['error']}")
            return None
        return value

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value, "check": self.check.to_dict() if self.check else None}


@dataclass
class Inputs:
    """What the checks found: the model, its metadata, the images to use and where they come from."""

    keras_file: Path
    run: RunFolder | None
    info: ModelInfo
    data: Path
    samples: list[Sample]
    source: str
    export: Path | None
    formats: list[Format]
    notes: list[str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="training run folder (model.keras, split.csv, run.json), or a .keras file")
    parser.add_argument("--data", metavar="DATA", help="labelled image folder (DATA/Negative, DATA/Positive) the run's "
                        "split.csv refers to (default: the run's data_root); its validation images are used, or all "
                        "its images when split.csv does not match it")
    parser.add_argument("--export", metavar="DIR", help="export folder (emotion-export --out DIR); default: export the "
                        "run into a temporary folder")
    parser.add_argument("--formats", nargs="+", metavar="F", help=f"formats to measure (default: all): {', '.join(FORMATS)}")
    parser.add_argument("--out", metavar="DIR", help="folder for NAME.md, NAME.json, NAME.png (default: RUN/benchmark)")
    parser.add_argument("--name", default="benchmark", help="file name stem of the outputs (default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="rounds of timings; medians and min-max are reported (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=3.0, metavar="S",
                        help="duration of each latency and throughput measurement (default: %(default)s)")
    parser.add_argument("--ba-seconds", type=positive_float, metavar="S", help="benchmark_app -t (default: --seconds)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed inferences before latency timing")
    parser.add_argument("--e2e-images", type=positive_int, default=200, metavar="N",
                        help="files per end-to-end run: the validation files repeated up to N (default: %(default)s)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold-start processes")
    parser.add_argument("--no-ceiling", action="store_true", help="skip benchmark_app")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (default: CPU)")
    gate = parser.add_argument_group("parity gate (exit status 1 when a limit is broken)")
    gate.add_argument("--no-gate", action="store_true", help="report parity, never fail on it")
    fp32 = DEFAULT_LIMITS["fp32"]
    gate.add_argument("--gate-fp32-auc", type=non_negative_float, default=fp32.max_d_auc, metavar="X",
                      help="onnxruntime, openvino-fp32: max |dAUC| (default: %(default)g)")
    gate.add_argument("--gate-fp32-agreement", type=non_negative_float, default=fp32.min_agreement, metavar="PCT",
                      help="onnxruntime, openvino-fp32: min label agreement %% with Keras, ties at the threshold "
                      "excepted (default: %(default)g)")
    gate.add_argument("--gate-fp32-max-dp", type=non_negative_float, default=fp32.max_abs_dp, metavar="X",
                      help="onnxruntime, openvino-fp32: max |P - P_keras| (default: %(default)g)")
    for name in ("bf16", "fp16", "int8"):
        gate.add_argument(f"--gate-{name}-auc", type=non_negative_float, default=DEFAULT_LIMITS[name].max_d_auc,
                          metavar="X",
                          help=f"openvino-{name}: max |dAUC| (default: %(default)g)")


def _limits(args: argparse.Namespace) -> dict[str, Limits]:
    if args.no_gate:
        return {}
    return {"fp32": Limits(args.gate_fp32_max_dp, args.gate_fp32_agreement, args.gate_fp32_auc),
            **{name: Limits(max_d_auc=getattr(args, f"gate_{name}_auc")) for name in ("bf16", "fp16", "int8")}}


def prepare(args: argparse.Namespace) -> Inputs:
    """Everything that can be refused before slow work.

    Raises:
        UsageError, DataError, ModelFileError: one line saying what is wrong and what to pass instead.
    """
    if not Path(args.run).expanduser().exists():
        raise UsageError(f"run {args.run} does not exist; give a training run folder (or a .keras file)")
    try:
        formats = parse_formats(args.formats)
    except ValueError as exc:  # an unknown format name
        raise UsageError(str(exc)) from None
    keras_file, run = locate(args.run)
    info = read_info(keras_file)
    try:
        data = Path(args.data).expanduser() if args.data else run.data_root() if run else None
    except DataError as exc:
        raise UsageError(f"no --data given and {exc}") from None
    samples, source, notes = _images(data, run, info)
    export = None if args.export is None else Path(args.export).expanduser()
    if export is not None:
        if not export.is_dir():
            raise UsageError(f"export {export} does not exist or is not a folder; make one with "
                             "`emotion-export RUN --out DIR`")
        try:
            resolve_model(export)
        except ModelLoadError as exc:
            raise UsageError(f"{exc}; make an export with `emotion-export RUN --out DIR`") from None
    return Inputs(keras_file, run, info, data, samples, source, export, formats, notes)


def _images(data: Path | None, run: RunFolder | None, info: ModelInfo) -> tuple[list[Sample], str, list[str]]:
    """The run's validation images found in ``data``, or else every labelled image of ``data``."""
    if data is None:
        raise UsageError("the .keras file has no run folder to take the data from; pass --data DATA (expected "
                         f"DATA/{info.labels[0]}/ and DATA/{info.labels[1]}/)")
    labelled = load_dataset(data, info.labels).samples  # refuses a folder without the label folders (DataError)
    validation = run.split(data).validation if run else []
    present = [s for s in validation if s.path.is_file()]
    notes = [f"{len(validation) - len(present)} of the run's validation images are not in {data}"
             + ("" if present else ": all of DATA's images are used")] if len(present) < len(validation) else []
    if present and run.refit:  # the model also trained on them
        notes.append("the run's model was refit on its validation images: ROC AUC and accuracy on them are "
                     "in-sample (parity is not affected); --data with other labelled images gives held-out figures")
    if present:
        return present, f"{len(present)} validation-split images of {data} (split.csv of the run)", notes
    return labelled, f"all {len(labelled)} labelled images of {data}", notes


def run(args: argparse.Namespace, progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Measure every format; the result document (what ``--json`` prints and the report is written from).

    Raises:
        UsageError, DataError, ModelFileError: bad input, found before any measurement.
    """
    inputs = prepare(args)
    measured = [FORMATS["keras"]] + [f for f in inputs.formats if f.backend != "keras"]  # Keras: the reference
    results = {f.name: FormatResult(f.name, f.description) for f in measured}
    with tempfile.TemporaryDirectory(prefix="emotion-bench-") as scratch:
        export = inputs.export or _export(inputs, Path(scratch) / "export", progress)
        x, y, files = _read_images(inputs, progress)
        np.save(Path(scratch) / "images.npy", x)
        workers: dict[str, FormatWorker] = {}
        try:
            for fmt in measured:
                progress(f"loading {fmt.name}")
                worker = _start(fmt, results[fmt.name], inputs, export, Path(scratch) / "images.npy", args.device)
                if worker is not None:
                    workers[fmt.name] = worker
            predictions = _predict_and_check(workers, results, y, inputs.info, _limits(args))
            if "keras" in [f.name for f in inputs.formats]:
                keras = results["keras"]
                keras.timings["other_calls_ms"] = keras.keep("other calls",
                                                             lambda: workers["keras"].call("other_calls"))
            timed = [f for f in inputs.formats if f.name in workers]
            folder = make_folder(files, max(len(files), args.e2e_images), Path(scratch) / "e2e")
            rounds = interleave({f.name: lambda f=f: _round(workers[f.name], results[f.name], args, files[0], folder,
                                                             progress) for f in timed}, args.repeats, progress)
            for fmt in timed:
                _aggregate([r[fmt.name] for r in rounds], results[fmt.name], len(files))
        finally:
            for worker in workers.values():
                worker.close()
    rows = [results[name] for name in FORMATS if name in results]
    return _document(args, inputs, rows, y, predictions, files)


def _export(inputs: Inputs, out: Path, progress: Callable[[str], None]) -> Path | None:
    """``emotion-export`` into ``out`` in a child process (TensorFlow stays out of this one), when needed."""
    if all(f.backend == "keras" for f in inputs.formats):
        return None
    progress("exporting (no --export given)")
    source = inputs.run.path if inputs.run else inputs.keras_file
    done = subprocess.run([sys.executable, "-m", "emotion.export.cli", os.fspath(source), "--out", os.fspath(out),
                           "--quiet"], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: exported, FP32 parity failed: measured here all the same
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise UsageError(f"export of {source} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
    inputs.notes.append("no --export given: the run was exported into a temporary folder for this benchmark")
    return out


def _read_images(inputs: Inputs, progress: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    progress(f"reading {len(inputs.samples)} images")
    x, y, rejected = load_images(inputs.samples, inputs.info.preprocess_spec)
    if len(x) == 0:
        raise UsageError(f"none of the {len(inputs.samples)} images could be read")
    if rejected:
        inputs.notes.append(f"{len(rejected)} images could not be read and were left out (first: "
                            f"{rejected[0][0]}: {rejected[0][1]})")
    if len(set(y.tolist())) < 2:
        inputs.notes.append("the images hold one class only: ROC AUC is undefined")
    left_out = {os.fspath(p) for p, _ in rejected}
    return x, y, [os.fspath(s.path) for s in inputs.samples if os.fspath(s.path) not in left_out]


def _start(fmt: Format, result: FormatResult, inputs: Inputs, export: Path | None, images: Path,
           device: str) -> FormatWorker | None:
    """The format's worker, or None with the result's status saying why it cannot run."""
    if fmt.precision == "bf16" and not cpu_supports_bf16():
        result.fail(Status.SKIPPED, "this CPU has no BF16 support (OpenVINO OPTIMIZATION_CAPABILITIES)")
        return None
    try:
        path = inputs.keras_file if fmt.backend == "keras" else exported_file(fmt, export)
    except ModelLoadError as exc:
        result.fail(Status.UNAVAILABLE, str(exc))
        return None
    result.model = os.fspath(path)
    result.size_mb = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.is_file()) / 1e6
    try:
        worker = FormatWorker(fmt, path, images, inputs.info, device)
    except RuntimeError as exc:
        result.fail(Status.ERROR, str(exc))
        return None
    result.runtime = worker.description
    return worker


def _predict_and_check(workers: dict[str, FormatWorker], results: dict[str, FormatResult], y: np.ndarray,
                       info: ModelInfo, limits: dict[str, Limits]) -> dict[str, np.ndarray]:
    """Every format's predictions on the same images, judged against Keras' by the shared parity gate."""
    predictions = {}
    for name, worker in list(workers.items()):
        try:
            predictions[name] = np.asarray(worker.call("predict"), np.float64)
            if not np.all(np.isfinite(predictions[name])):
                raise RuntimeError("non-finite probabilities")
        except RuntimeError as exc:
            results[name].fail(Status.ERROR, str(exc))
            predictions.pop(name, None)
            workers.pop(name).close()
    if "keras" not in predictions:
        raise UsageError(f"the Keras model cannot be run: {results['keras'].reason}")
    for name, result in results.items():
        parity = compare(predictions[name], predictions["keras"], y, info.threshold) if name in predictions else None
        error = None if result.status is Status.OK else f"{result.status.value}: {result.reason}"
        result.check = judge(name, FORMATS[name].parity_class, parity,
                             limits if result.status is not Status.SKIPPED else {}, error)
    return predictions


def _round(worker: FormatWorker, result: FormatResult, args: argparse.Namespace, image: str, folder: Path,
           progress: Callable[[str], None]) -> dict[str, Any]:
    """One round of every timing of one format; a failed measurement is kept as an error of the row."""
    progress(f"timing {result.format}")
    steps = worker.steps(args.seconds, max(0, args.warmup), folder,
                         None if args.no_ceiling else args.ba_seconds or args.seconds)
    done = {name: result.keep(name, step) for name, step in steps.items()}
    if not args.no_cold_start:
        done["cold_start"] = result.keep("cold_start", lambda: coldstart.measure(result.format, result.model, image,
                                                                                 device=args.device))
    return {**done, **pair_ratios(done)}


def _aggregate(rounds: list[dict[str, Any]], result: FormatResult, n_files: int) -> None:
    """Medians and spread of the rounds' measurements of one format, into its timings."""
    t = result.timings
    done = {key: [r[key] for r in rounds if r.get(key)] for key in ("latency", "throughput", "e2e", "cold_start",
                                                                    "ba_latency", "ba_throughput")}
    t["latency_ms"] = series(rounds, {q: ("latency", q) for q in ("p50", "p90", "p99", "mean")})
    t["latency_iterations"] = sum(m["n"] for m in done["latency"])
    t.update(series(rounds, {"throughput": ("throughput", "images_per_second"), "e2e": ("e2e", "images_per_second")}))
    t["throughput_requests"] = next((m.get("requests") for m in done["throughput"]), None)
    if sum(m["errors"] for m in done["e2e"]):
        result.errors.append(f"e2e: {sum(m['errors'] for m in done['e2e'])} files failed")
    if done["e2e"]:  # compared with the predictions on the arrays by _document
        t["e2e_files"] = np.asarray(done["e2e"][0]["probabilities"], np.float64)[:n_files]
    if done["cold_start"]:
        t.update(coldstart.summary(done["cold_start"]))
        del t["cold_start_errors"]  # kept in the row's errors already
    if done["ba_latency"] or done["ba_throughput"]:
        ba = t["benchmark_app"] = series(rounds, {"latency_median_ms": ("ba_latency", "median_latency_ms"),
                                                  "throughput": ("ba_throughput", "throughput")})
        ba["commands"] = [m["command"] for m in done["ba_latency"][:1] + done["ba_throughput"][:1]]
        ba["requests_throughput"] = next((m.get("requests") for m in done["ba_throughput"]), None)
        per_round = series(rounds, {"latency_per_round": ("latency_ratio", None),
                                    "throughput_per_round": ("throughput_ratio", None)})
        t["ratios"] = {  # per-round pairs measured back to back; the ratio of the medians beside them
            "latency": per_round["latency_per_round"]["median"], **per_round,
            "throughput": per_round["throughput_per_round"]["median"],
            "latency_of_medians": ratio(t["latency_ms"]["p50"]["median"], ba["latency_median_ms"]["median"]),
            "throughput_of_medians": ratio(t["throughput"]["median"], ba["throughput"]["median"])}


def _document(args: argparse.Namespace, inputs: Inputs, rows: list[FormatResult], y: np.ndarray,
              predictions: dict[str, np.ndarray], files: list[str]) -> dict[str, Any]:
    """The JSON document of the run: settings, one entry per format, the gate, how the machine was used."""
    for row in rows:  # the files read by predict_many must give the answers the arrays gave
        from_files, arrays = row.timings.pop("e2e_files", None), predictions.get(row.format)
        if from_files is not None and arrays is not None and from_files.shape == arrays.shape:
            row.timings["e2e_max_abs_diff"] = float(np.nanmax(np.abs(from_files - arrays)))
    checks = [row.check for row in rows if row.check and row.format in [f.name for f in inputs.formats]]
    info = inputs.info
    return {
        "tool": "emotion-bench", "run": os.fspath(inputs.run.path if inputs.run else inputs.keras_file),
        "keras_file": os.fspath(inputs.keras_file),
        "export": os.fspath(inputs.export) if inputs.export else None, "data": os.fspath(inputs.data),
        "images": {"source": inputs.source, "count": int(len(y)), "positives": int(np.sum(y == 1)),
                   "negatives": int(np.sum(y == 0)), "input_size": [info.input_height, info.input_width],
                   "threshold": info.threshold, "labels": list(info.labels)},
        "model": {"name": info.name, "architecture": info.architecture, "version": info.version},
        "settings": {"repeats": args.repeats, "seconds": args.seconds,
                     "benchmark_app_seconds": args.ba_seconds or args.seconds, "warmup": max(0, args.warmup),
                     "e2e_images": max(len(files), args.e2e_images), "device": args.device,
                     "cold_start": not args.no_cold_start, "ceiling": not args.no_ceiling},
        "formats": [row.to_dict() for row in rows],
        "gate": {"passed": passed(checks), "limits": {k: asdict(v) for k, v in _limits(args).items()},
                 "failures": {c.format: c.problems for c in checks if c.verdict.value == "fail"}},
        "hints": {
            "latency": "PERFORMANCE_HINT=LATENCY, batch 1, synchronous (EmotionClassifier.predict on a uint8 array)",
            "throughput": "PERFORMANCE_HINT=THROUGHPUT, optimal streams, one synchronous request per worker thread "
                          "(EmotionClassifier.submit)",
            "inference precision": "f32 for every OpenVINO row but openvino-bf16 (INFERENCE_PRECISION_HINT=bf16)",
            "OpenVINO model cache": "off for every measurement (cold start without cache)"},
        "notes": inputs.notes,
    }


def summary(document: dict[str, Any]) -> str:
    return main_table(document) + f"\n\nparity gate {'passed' if document['gate']['passed'] else 'FAILED'}"
