"""``emotion-bench RUN``: every format of one model, measured side by side on the same validation images.

One loop over the formats, one :class:`FormatResult` each, errors caught per format: check the arguments (no
TensorFlow) -> export when no ``--export`` is given -> read the images once through the shared preprocessing ->
load each format in a worker process -> predictions on identical input, parity against Keras through the
shared gate -> ``repeats`` rounds of timings, the formats in rotating order, each OpenVINO timing right before
the matching ``benchmark_app`` run -> medians and spread.
"""

from __future__ import annotations

import enum
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emotion.export.formats import FORMATS, Format, exported_file, parse_formats
from emotion.export.openvino_export import cpu_supports_bf16
from emotion.export.parity import DEFAULT_LIMITS, Check, Limits, compare, judge, passed
from emotion.runtime import ModelInfo, ModelLoadError, resolve_model
from emotion.train.data import DataError, Sample, load_dataset, load_images
from emotion.train.model_io import ModelFileError, read_info
from emotion.train.run_folder import RunFolder, locate

from . import coldstart
from .hardware import hardware_report
from .timing import percentiles_ms, ratio, rotations, run_benchmark_app, summarize
from .workers import FormatWorker

TIMINGS = ("latency", "ba_latency", "throughput", "ba_throughput", "e2e", "cold_start", "latency_ratio",
           "throughput_ratio")


class BenchError(ValueError):
    """Bad input (missing run, export or data, data without labels, unknown format): one line, exit status 2."""


class Status(str, enum.Enum):
    OK = "ok"
    SKIPPED = "skipped"  # cannot run on this machine (bf16 without CPU support)
    UNAVAILABLE = "unavailable"  # the export has no file for it
    ERROR = "error"  # it failed to load or to predict; the reason is kept


@dataclass
class BenchConfig:
    run: Path
    data: Path | None = None
    export: Path | None = None
    formats: Sequence[str] | None = None
    repeats: int = 3
    seconds: float = 3.0  # each latency and throughput measurement
    ba_seconds: float | None = None  # benchmark_app -t (default: seconds)
    warmup: int = 5
    e2e_images: int = 200  # the validation files repeated up to this many per end-to-end run
    cold_start: bool = True
    ceiling: bool = True
    limits: dict[str, Limits] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    device: str = "CPU"
    command: str = ""


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data, "status": self.status.value, "check": self.check.to_dict() if self.check else None}


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


def prepare(config: BenchConfig) -> Inputs:
    """Everything that can be refused before slow work.

    Raises:
        BenchError: one line saying what is wrong and what to pass instead.
    """
    if not Path(config.run).expanduser().exists():
        raise BenchError(f"run {config.run} does not exist; give a training run folder (or a .keras file)")
    try:
        formats = parse_formats(config.formats)
        keras_file, run = locate(config.run)
        info = read_info(keras_file)
    except (ValueError, ModelFileError) as exc:
        raise BenchError(str(exc)) from None
    data = _data_folder(config.data, run, info)
    samples, source, notes = _images(data, run, info)
    export = None if config.export is None else Path(config.export).expanduser()
    if export is not None:
        if not export.is_dir():
            raise BenchError(f"export {export} does not exist or is not a folder; make one with "
                             "`emotion-export RUN --out DIR`")
        try:
            resolve_model(export)
        except ModelLoadError as exc:
            raise BenchError(f"{exc}; make an export with `emotion-export RUN --out DIR`") from None
    return Inputs(keras_file, run, info, data, samples, source, export, formats, notes)


def _data_folder(data: Path | None, run: RunFolder | None, info: ModelInfo) -> Path:
    if data is None:
        try:
            return _labelled(run.data_root() if run else None, info)
        except DataError as exc:
            raise BenchError(f"no --data given and {exc}") from None
    return _labelled(Path(data).expanduser(), info)


def _labelled(data: Path | None, info: ModelInfo) -> Path:
    expected = f"expected DATA/{info.labels[0]}/ and DATA/{info.labels[1]}/"
    if data is None:
        raise BenchError(f"the .keras file has no run folder to take the data from; pass --data DATA ({expected})")
    if not data.is_dir():
        raise BenchError(f"data folder {data} does not exist or is not a folder ({expected})")
    missing = [name for name in info.labels if not (data / name).is_dir()]
    if missing:
        raise BenchError(f"data folder {data} has no labels: no {' or '.join(m + '/' for m in missing)} folder "
                         f"({expected}; accuracy and AUC need labelled images)")
    return data


def _images(data: Path, run: RunFolder | None, info: ModelInfo) -> tuple[list[Sample], str, list[str]]:
    """The run's validation images found in ``data``, or else every labelled image of ``data``."""
    notes: list[str] = []
    if run is not None:
        try:
            validation = run.split(data).validation
        except DataError as exc:
            raise BenchError(str(exc)) from None
        present = [s for s in validation if s.path.is_file()]
        if len(present) < len(validation):
            notes.append(f"{len(validation) - len(present)} of the run's validation images are not in {data}"
                         + ("" if present else ": all of DATA's images are used"))
        if present:
            return present, f"{len(present)} validation-split images of {data} (split.csv of the run)", notes
    try:
        samples = load_dataset(data, info.labels).samples
    except DataError as exc:
        raise BenchError(str(exc)) from None
    return samples, f"all {len(samples)} labelled images of {data}", notes


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Measure every format; the result document (what ``--json`` prints and the report is written from).

    Raises:
        BenchError: bad input, found before any measurement.
    """
    inputs = prepare(config)
    started = time.time()
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
                worker = _start(fmt, results[fmt.name], inputs, export, Path(scratch) / "images.npy", config)
                if worker is not None:
                    workers[fmt.name] = worker
            predictions = _predict_and_check(workers, results, y, inputs.info, config.limits)
            if "keras" in [f.name for f in inputs.formats]:
                other_calls = _keep(results["keras"], "other calls", lambda: workers["keras"].call("other_calls"))
                results["keras"].timings["other_calls_ms"] = other_calls
            _time(workers, results, inputs, config, files, progress)
        finally:
            for worker in workers.values():
                worker.close()
    rows = [results[name] for name in FORMATS if name in results]
    return _document(config, inputs, rows, y, predictions, files, started)


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
        raise BenchError(f"export of {source} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
    inputs.notes.append("no --export given: the run was exported into a temporary folder for this benchmark")
    return out


def _read_images(inputs: Inputs, progress: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    progress(f"reading {len(inputs.samples)} images")
    x, y, rejected = load_images(inputs.samples, inputs.info.preprocess_spec)
    if len(x) == 0:
        raise BenchError(f"none of the {len(inputs.samples)} images could be read")
    if rejected:
        inputs.notes.append(f"{len(rejected)} images could not be read and were left out (first: "
                            f"{rejected[0][0]}: {rejected[0][1]})")
    if len(set(y.tolist())) < 2:
        inputs.notes.append("the images hold one class only: ROC AUC is undefined")
    left_out = {os.fspath(p) for p, _ in rejected}
    return x, y, [os.fspath(s.path) for s in inputs.samples if os.fspath(s.path) not in left_out]


def _start(fmt: Format, result: FormatResult, inputs: Inputs, export: Path | None, images: Path,
           config: BenchConfig) -> FormatWorker | None:
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
        worker = FormatWorker(fmt, path, images, inputs.info, config.device)
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
        raise BenchError(f"the Keras model cannot be run: {results['keras'].reason}")
    reference = predictions["keras"]
    for name, result in results.items():
        fmt = FORMATS[name]
        parity = compare(predictions[name], reference, y, info.threshold) if name in predictions else None
        error = None if result.status is Status.OK else f"{result.status.value}: {result.reason}"
        result.check = judge(name, fmt.parity_class, parity,
                             limits if result.status is not Status.SKIPPED else {}, error)
    return predictions


def _time(workers: dict[str, FormatWorker], results: dict[str, FormatResult], inputs: Inputs, config: BenchConfig,
          files: list[str], progress: Callable[[str], None]) -> None:
    """``repeats`` rounds over the timed formats, the first one rotating; then medians and spread per format."""
    timed = [f for f in inputs.formats if f.name in workers]
    samples: dict[str, dict[str, list]] = {f.name: {key: [] for key in TIMINGS} for f in timed}
    e2e_files = (files * math.ceil(config.e2e_images / len(files)))[: max(len(files), config.e2e_images)]
    for r, order in rotations(timed, config.repeats):
        for fmt in order:
            progress(f"round {r + 1}/{config.repeats}: {fmt.name}")
            _round(fmt, workers[fmt.name], results[fmt.name], samples[fmt.name], inputs, config, files[0], e2e_files)
    for fmt in timed:
        results[fmt.name].timings = _aggregate(samples[fmt.name], results[fmt.name], len(files))


def _round(fmt: Format, worker: FormatWorker, result: FormatResult, samples: dict[str, list], inputs: Inputs,
           config: BenchConfig, image: str, e2e_files: list[str]) -> None:
    """One round of every timing of one format; a failed measurement is kept as an error of the row."""
    def measure(key: str, work: Callable[[], Any]) -> Any:
        value = _keep(result, key, work)
        if value is not None:
            samples[key].append(value)
        return value

    seconds, ba_seconds = config.seconds, config.ba_seconds or config.seconds
    shape = [1, inputs.info.input_height, inputs.info.input_width, 3]
    for hint, key, ours_figure, ba_figure in (("latency", "latency", "p50", "median_latency_ms"),
                                              ("throughput", "throughput", "images_per_second", "throughput")):
        ours = measure(key, lambda: percentiles_ms(worker.call("latency", seconds=seconds, warmup=config.warmup))
                       if hint == "latency" else worker.call("throughput", seconds=seconds))
        if fmt.openvino and config.ceiling:  # right after ours: the pair shares the machine's mood
            ceiling = measure(f"ba_{key}", lambda: _benchmark_app(result.model, shape, hint, fmt.precision,
                                                                  ba_seconds, config.device))
            if ours and ceiling:
                samples[f"{key}_ratio"].append(ratio(ours[ours_figure], ceiling.get(ba_figure)))
    measure("e2e", lambda: worker.call("e2e", files=e2e_files))
    if config.cold_start:
        measure("cold_start", lambda: coldstart.measure(fmt.name, result.model, image, device=config.device))


def _keep(result: FormatResult, key: str, work: Callable[[], Any]) -> Any:
    try:
        value = work()
    except RuntimeError as exc:
        result.errors.append(f"{key}: {exc}")
        return None
    if isinstance(value, dict) and value.get("error"):
        result.errors.append(f"{key}: {value['error']}")
        return None
    return value


def _benchmark_app(model: str, shape: list[int], hint: str, precision: str, seconds: float,
                   device: str) -> dict[str, Any]:
    return run_benchmark_app(model, shape, hint, precision, seconds, device).to_dict()


def _aggregate(s: dict[str, list], result: FormatResult, n_files: int) -> dict[str, Any]:
    """Medians and spread of the rounds' measurements of one format."""
    out: dict[str, Any] = {k: v for k, v in result.timings.items()}
    out["latency_ms"] = {q: summarize(m[q] for m in s["latency"]) for q in ("p50", "p90", "p99", "mean")}
    out["latency_iterations"] = sum(m["n"] for m in s["latency"])
    out["throughput"] = summarize(m["images_per_second"] for m in s["throughput"])
    out["throughput_requests"] = next((m.get("requests") for m in s["throughput"]), None)
    out["e2e"] = summarize(m["images_per_second"] for m in s["e2e"])
    if sum(m["errors"] for m in s["e2e"]):
        result.errors.append(f"e2e: {sum(m['errors'] for m in s['e2e'])} files failed")
    if s["e2e"]:  # compared with the predictions on the arrays by _document
        out["e2e_files"] = np.asarray(s["e2e"][0]["probabilities"], np.float64)[:n_files]
    if s["cold_start"]:
        out["cold_start_s"] = summarize(m["since_spawn_seconds"] for m in s["cold_start"])
        out["cold_start_parts_s"] = {k: summarize(m[k] for m in s["cold_start"])["median"]
                                     for k in ("import_seconds", "load_seconds", "first_result_seconds")}
        out["peak_rss_mb"] = summarize(m["peak_rss_mb"] for m in s["cold_start"])
    if s["ba_latency"] or s["ba_throughput"]:
        ba_latency = summarize(m["median_latency_ms"] for m in s["ba_latency"])
        ba_throughput = summarize(m["throughput"] for m in s["ba_throughput"])
        out["benchmark_app"] = {
            "latency_median_ms": ba_latency, "throughput": ba_throughput,
            "commands": [m["command"] for m in s["ba_latency"][:1] + s["ba_throughput"][:1]],
            "requests_throughput": next((m.get("requests") for m in s["ba_throughput"]), None)}
        # the pairs measured back to back in each round: latency ours/benchmark_app (above 1: slower than the
        # ceiling), throughput ours/benchmark_app (below 1: slower); the ratio of the medians beside them
        out["ratios"] = {
            "latency": summarize(s["latency_ratio"])["median"], "throughput": summarize(s["throughput_ratio"])["median"],
            "latency_per_round": summarize(s["latency_ratio"]), "throughput_per_round": summarize(s["throughput_ratio"]),
            "latency_of_medians": ratio(out["latency_ms"]["p50"]["median"], ba_latency["median"]),
            "throughput_of_medians": ratio(out["throughput"]["median"], ba_throughput["median"])}
    return out


def _document(config: BenchConfig, inputs: Inputs, rows: list[FormatResult], y: np.ndarray,
              predictions: dict[str, np.ndarray], files: list[str], started: float) -> dict[str, Any]:
    """The JSON document of the run: settings, one entry per format, the gate, the machine."""
    for row in rows:  # the files read by predict_many must give the answers the arrays gave
        from_files, arrays = row.timings.pop("e2e_files", None), predictions.get(row.format)
        if from_files is not None and arrays is not None and from_files.shape == arrays.shape:
            row.timings["e2e_max_abs_diff"] = float(np.nanmax(np.abs(from_files - arrays)))
    checks = [row.check for row in rows if row.check and row.format in [f.name for f in inputs.formats]]
    info = inputs.info
    return {
        "tool": "emotion-bench", "command": config.command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "run": os.fspath(inputs.run.path if inputs.run else inputs.keras_file), "keras_file": os.fspath(inputs.keras_file),
        "export": os.fspath(config.export) if config.export else None, "data": os.fspath(inputs.data),
        "images": {"source": inputs.source, "count": int(len(y)), "positives": int(np.sum(y == 1)),
                   "negatives": int(np.sum(y == 0)), "input_size": [info.input_height, info.input_width],
                   "threshold": info.threshold, "labels": list(info.labels)},
        "model": {"name": info.name, "architecture": info.architecture, "version": info.version},
        "settings": {"repeats": config.repeats, "seconds": config.seconds,
                     "benchmark_app_seconds": config.ba_seconds or config.seconds, "warmup": config.warmup,
                     "e2e_images": max(len(files), config.e2e_images), "device": config.device,
                     "cold_start": config.cold_start, "ceiling": config.ceiling},
        "formats": [row.to_dict() for row in rows],
        "gate": {"passed": passed(checks), "limits": {k: asdict(v) for k, v in config.limits.items()},
                 "failures": {c.format: c.problems for c in checks if c.verdict.value == "fail"}},
        "hardware": hardware_report({
            "latency": "PERFORMANCE_HINT=LATENCY, batch 1, synchronous (EmotionClassifier.predict on a uint8 array)",
            "throughput": "PERFORMANCE_HINT=THROUGHPUT, optimal streams and requests (EmotionClassifier.submit)",
            "inference precision": "f32 for every OpenVINO row but openvino-bf16 (INFERENCE_PRECISION_HINT=bf16)",
            "OpenVINO model cache": "off for every measurement (cold start without cache)"}),
        "notes": inputs.notes,
    }
