"""``emotion-bench RUN``: every format of one model, measured side by side on the same validation images.

Order of work: check the arguments (no TensorFlow, a second at most) -> export when no ``--export`` is given
-> read the validation images once through the shared preprocessing -> one worker process per format ->
predictions and metrics (identical input for every format) -> ``repeats`` rounds of timings, the formats
taken in turn (round-robin, the starting format rotating each round) and each OpenVINO timing beside the
matching ``benchmark_app`` run -> medians and spread -> gate -> Markdown, JSON and PNG.
"""

from __future__ import annotations

import json
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

from . import coldstart
from .formats import FORMATS, FormatSpec, UnknownFormat, Worker, file_bytes, model_file, parse_formats
from .timing import percentiles_ms, ratio, run_benchmark_app, summarize

EXIT_OK, EXIT_GATE, EXIT_USAGE = 0, 1, 2


class BenchError(ValueError):
    """Bad input (missing run, export or data, data without labels, unknown format): one line, exit 2."""


@dataclass
class Gates:
    """Parity limits against Keras; |dAUC| is the absolute ROC AUC difference on the validation images."""

    fp32_auc: float = 1e-4
    fp32_agreement: float = 100.0  # percent of images with Keras's label
    fp32_max_dp: float = 1e-4  # largest |P(format) - P(Keras)|
    bf16_auc: float = 0.005
    fp16_auc: float = 0.005
    int8_auc: float = 0.01

    def limits(self, gate_class: str) -> dict[str, float]:
        if gate_class == "fp32":
            return {"d_auc": self.fp32_auc, "label_agreement": self.fp32_agreement, "max_abs_dp": self.fp32_max_dp}
        if gate_class in ("bf16", "fp16", "int8"):
            return {"d_auc": getattr(self, f"{gate_class}_auc")}
        return {}


@dataclass
class BenchConfig:
    run: Path
    data: Path | None = None
    export: Path | None = None
    formats: Sequence[str] | None = None
    out: Path | None = None
    name: str = "benchmark"
    repeats: int = 3
    seconds: float = 3.0  # each latency and throughput measurement
    ba_seconds: float | None = None  # benchmark_app -t (default: seconds, at least 1)
    warmup: int = 5
    e2e_images: int = 200  # the validation files are repeated up to at least this many per end-to-end run
    cold_start: bool = True
    ceiling: bool = True
    gate: bool = True
    gates: Gates = field(default_factory=Gates)
    device: str = "CPU"
    progress: bool = True
    command: str | None = None  # the command line, for the report


@dataclass
class Prepared:
    keras_file: Path
    run_dir: Path | None
    info: Any  # ModelInfo
    data: Path
    samples: list
    sample_source: str
    export: Path | None
    formats: list[str]
    notes: list[str]


# -- checks ------------------------------------------------------------------------------------------------
def prepare(config: BenchConfig) -> Prepared:
    """Everything that can be refused before slow work; raises :class:`BenchError` with one line."""
    from emotion.train.data import DataError, load_dataset, read_manifest
    from emotion.train.model_io import ModelFileError, read_info, resolve_model_path

    try:
        formats = parse_formats(config.formats)
    except UnknownFormat as exc:
        raise BenchError(str(exc)) from None
    if config.repeats < 1:
        raise BenchError(f"--repeats must be at least 1, got {config.repeats}")
    if not config.seconds > 0:
        raise BenchError(f"--seconds must be positive, got {config.seconds}")
    if not config.name or "/" in config.name or config.name.startswith("."):
        raise BenchError(f"--name {config.name!r} must be a plain file name stem")
    run = Path(config.run).expanduser()
    if not run.exists():
        raise BenchError(f"run {run} does not exist; give a training run folder (or a .keras file)")
    try:
        keras_file = resolve_model_path(run)
        info = read_info(keras_file)
    except ModelFileError as exc:
        raise BenchError(str(exc)) from None
    run_dir = keras_file.parent if (keras_file.parent / "split.csv").is_file() else None
    notes: list[str] = []

    data = Path(config.data).expanduser() if config.data else None
    if data is None:
        data = _run_data_root(run_dir)
        if data is None:
            raise BenchError("no --data given and the run's run.json names no data folder; pass --data DATA")
    if not data.exists():
        raise BenchError(f"data folder {data} does not exist")
    if not data.is_dir():
        raise BenchError(f"data {data} is not a folder (expected DATA/{info.labels[0]}/ and DATA/{info.labels[1]}/)")
    missing = [name for name in info.labels if not (data / name).is_dir()]
    if missing:
        raise BenchError(
            f"data folder {data} has no labels: no {' or '.join(m + '/' for m in missing)} folder (expected "
            f"DATA/{info.labels[0]}/ and DATA/{info.labels[1]}/; accuracy and AUC need labelled images)"
        )

    samples: list = []
    source = ""
    if run_dir is not None:
        try:
            split = read_manifest(run_dir / "split.csv", data)
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"{run_dir / 'split.csv'} cannot be read: {exc}") from None
        present = [s for s in split.validation if s.path.is_file()]
        if present:
            samples = present
            source = f"{len(present)} validation-split images of {data} (split.csv of the run)"
            if len(present) < len(split.validation):
                notes.append(f"{len(split.validation) - len(present)} validation images of split.csv are missing "
                             f"from {data}")
        else:
            notes.append(f"none of split.csv's validation images are in {data}: all of DATA's images are used")
    if not samples:
        try:
            dataset = load_dataset(data, info.labels)
        except DataError as exc:
            raise BenchError(str(exc)) from None
        samples = dataset.samples
        source = f"all {len(samples)} labelled images of {data}"
    if len({s.label for s in samples}) < 2:
        notes.append("the images hold one class only: ROC AUC is undefined")

    export = None
    if config.export is not None:
        export = Path(config.export).expanduser()
        if not export.exists():
            raise BenchError(f"export {export} does not exist; make one with `emotion-export RUN --out DIR`")
        if not export.is_dir():
            raise BenchError(f"export {export} is not a folder (give the folder emotion-export wrote)")
        from emotion.runtime import ModelLoadError, resolve_model

        try:
            resolve_model(export)
        except ModelLoadError as exc:
            raise BenchError(f"{exc}; make an export with `emotion-export RUN --out DIR`") from None
    return Prepared(keras_file, run_dir, info, data, samples, source, export, formats, notes)


def _run_data_root(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    try:
        value = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("data_root")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


# -- the run -------------------------------------------------------------------------------------------------
class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="emotion-bench", unit="step", file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True, leave=False)

    def step(self, text: str, advance: int = 1) -> None:
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(advance)

    def say(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        self.bar.close()


def _export(run: Path, out: Path) -> None:
    """``emotion-export RUN --out DIR`` in a child process (TensorFlow stays out of this one)."""
    command = [sys.executable, "-m", "emotion.export.cli", os.fspath(run), "--out", os.fspath(out), "--quiet"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1) or not out.is_dir():  # 1: exported, FP32 parity failed -- measured here
        lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
        raise BenchError(f"export of {run} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")


def _metrics(y: np.ndarray, p: np.ndarray, info) -> dict[str, float]:
    from emotion.train.metrics import classification_metrics

    m = classification_metrics(y, p, info.threshold, info.labels)
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "roc_auc": m["roc_auc"]}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _d_auc(auc: float | None, reference: float | None) -> float:
    if auc is None or reference is None:
        return math.inf
    if math.isnan(auc) and math.isnan(reference):
        return 0.0  # one class only: AUC undefined for both
    if math.isnan(auc) or math.isnan(reference):
        return math.inf
    return abs(auc - reference)


def evaluate_gate(row: dict[str, Any], gates: Gates) -> dict[str, Any]:
    spec = FORMATS[row["format"]]
    limits = gates.limits(spec.gate)
    gate: dict[str, Any] = {"class": spec.gate, "limits": limits, "passed": None, "failures": []}
    if not limits:
        return gate
    if row["status"].startswith("mismatch"):
        gate["passed"] = False
        gate["failures"].append(row["status"])
        return gate
    if not row["ok"] or row.get("roc_auc") is None and row.get("label_agreement") is None:
        gate["failures"].append("not evaluated: the format did not run")
        return gate
    failures = []
    if row["d_auc"] > limits["d_auc"]:
        failures.append(f"|dAUC| {row['d_auc']:.3g} > {limits['d_auc']:g}")
    if "label_agreement" in limits and row["label_agreement"] < limits["label_agreement"] - 1e-9:
        failures.append(f"label agreement {row['label_agreement']:.2f}% < {limits['label_agreement']:g}%")
    if "max_abs_dp" in limits and not row["max_abs_dp"] <= limits["max_abs_dp"]:
        failures.append(f"max |dP| {row['max_abs_dp']:.3g} > {limits['max_abs_dp']:g}")
    gate["passed"] = not failures
    gate["failures"] = failures
    return gate


def run_bench(config: BenchConfig, prepared: Prepared | None = None) -> dict[str, Any]:
    """Measure; returns the result document (also what ``--json`` prints). Raises BenchError for bad input."""
    prepared = prepared or prepare(config)
    from .hardware import cpu_supports_bf16, hardware_report

    started = time.time()
    notes = list(prepared.notes)
    formats = prepared.formats
    info = prepared.info
    spec_images = info.preprocess_spec
    n_timed = len(formats)
    total = 4 + config.repeats * n_timed
    progress = _Progress(config.progress, total)
    workers: dict[str, Worker] = {}
    with tempfile.TemporaryDirectory(prefix="emotion-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        try:
            # 1. the export
            export = prepared.export
            needs_export = any(FORMATS[f].kind == "runtime" for f in formats)
            if export is None and needs_export:
                progress.say("exporting (no --export given)")
                export = scratch / "export"
                _export(prepared.keras_file.parent if prepared.run_dir else prepared.keras_file, export)
                notes.append("no --export given: the run was exported into a temporary folder for this benchmark")
            progress.step("export ready")

            # 2. the images, once, through the shared preprocessing
            from emotion.train.data import load_images

            progress.say(f"reading {len(prepared.samples)} images")
            x, y, rejected = load_images(prepared.samples, spec_images)
            if len(x) == 0:
                raise BenchError(f"none of the {len(prepared.samples)} images could be read")
            rejected_paths = {os.fspath(p) for p, _ in rejected}
            files = [os.fspath(s.path) for s in prepared.samples if os.fspath(s.path) not in rejected_paths]
            if rejected:
                notes.append(f"{len(rejected)} images could not be read and were left out (first: "
                             f"{rejected[0][0]}: {rejected[0][1]})")
            images_path = scratch / "images.npy"
            np.save(images_path, x)
            e2e_files = (files * max(1, math.ceil(config.e2e_images / len(files))))[: max(len(files), config.e2e_images)]
            progress.step("images read")

            # 3. one worker per format (Keras always: it is the reference)
            rows: dict[str, dict[str, Any]] = {}
            bf16 = cpu_supports_bf16()
            for name in ["keras"] + [f for f in formats if f != "keras"]:
                spec = FORMATS[name]
                row = {"format": name, "description": spec.description, "status": "ok", "ok": False,
                       "timed": name in formats, "errors": []}
                rows[name] = row
                if name == "openvino-bf16" and not bf16:
                    row["status"] = "skipped: this CPU has no BF16 support (OpenVINO OPTIMIZATION_CAPABILITIES)"
                    continue
                try:
                    path = model_file(spec, export, prepared.keras_file)
                except Exception as exc:  # ModelLoadError: the export lacks this variant
                    row["status"] = f"unavailable: {_short(exc)}"
                    continue
                row["model"] = os.fspath(path)
                row["size_mb"] = file_bytes(path) / 1e6
                workers[name] = Worker(spec, path, images_path, config.device, scratch / f"{name}.log")
            progress.say("loading models")
            for name, worker in list(workers.items()):
                if not worker.wait_ready():
                    rows[name]["status"] = f"error: cannot load: {worker.error}"
                    worker.close()
                    del workers[name]
                    continue
                rows[name]["runtime"] = worker.description
            if "keras" not in workers:
                raise BenchError(f"the Keras model {prepared.keras_file} cannot be loaded: {rows['keras']['status']}")
            reference_info = workers["keras"].description
            for name in list(workers):
                if name == "keras":
                    continue
                problem = _mismatch(reference_info, workers[name].description)
                if problem:
                    rows[name]["status"] = f"mismatch: {problem}"
                    workers.pop(name).close()
            progress.step("models loaded")

            # 4. predictions on identical input, metrics, parity
            progress.say("predicting the validation images")
            reference = None
            for name, worker in list(workers.items()):
                row = rows[name]
                try:
                    p = np.asarray(worker.call("predict"), np.float64)
                except RuntimeError as exc:
                    row["status"] = f"error: {exc}"
                    workers.pop(name).close()
                    continue
                if not np.all(np.isfinite(p)):
                    row["status"] = "error: non-finite probabilities"
                    workers.pop(name).close()
                    continue
                if name == "keras":
                    reference = p
                row["probabilities"] = p
                row.update(_metrics(y, p, info))
                row["ok"] = True
            if reference is None:
                raise BenchError("the Keras model gave no predictions: " + rows["keras"]["status"])
            ref_labels = reference >= info.threshold
            for name, row in rows.items():
                if "probabilities" not in row:
                    continue
                p = row.pop("probabilities")
                row["max_abs_dp"] = float(np.max(np.abs(p - reference)))
                row["label_agreement"] = float(np.mean((p >= info.threshold) == ref_labels) * 100.0)
                row["d_auc"] = _d_auc(row["roc_auc"], rows["keras"]["roc_auc"])
                row["_p"] = p
            if "keras" in formats:
                try:
                    rows["keras"]["other_calls_ms"] = workers["keras"].call("other_calls")
                except RuntimeError as exc:
                    rows["keras"]["errors"].append(f"other calls: {exc}")
            progress.step("predictions")

            # 5. timings: rounds, formats in turn
            timed = [f for f in formats if f in workers]
            samples = {f: _empty_samples() for f in timed}
            cold_image = files[0]
            ba_seconds = config.ba_seconds if config.ba_seconds is not None else config.seconds
            shape = [1, spec_images.height, spec_images.width, 3]
            for r in range(config.repeats):
                order = timed[r % len(timed):] + timed[: r % len(timed)] if timed else []
                for name in order:
                    spec, worker, s = FORMATS[name], workers[name], samples[name]
                    progress.say(f"round {r + 1}/{config.repeats}: {name}")
                    ours = _measure(s, "latency", lambda: percentiles_ms(
                        worker.call("latency", seconds=config.seconds, warmup=config.warmup)))
                    if spec.openvino and config.ceiling:
                        ceiling = _measure(s, "ba_latency", lambda: _ba(rows[name]["model"], shape, "latency",
                                                                        spec.precision, ba_seconds, config.device))
                        if ours and ceiling:  # measured back to back: the pair shares the machine's mood
                            s["latency_ratio"].append(ratio(ours["p50"], ceiling.get("median_latency_ms")))
                    ours = _measure(s, "throughput", lambda: worker.call("throughput", seconds=config.seconds))
                    if spec.openvino and config.ceiling:
                        ceiling = _measure(s, "ba_throughput", lambda: _ba(rows[name]["model"], shape, "throughput",
                                                                           spec.precision, ba_seconds, config.device))
                        if ours and ceiling:
                            s["throughput_ratio"].append(ratio(ours["images_per_second"], ceiling.get("throughput")))
                    _measure(s, "e2e", lambda: worker.call("e2e", files=e2e_files))
                    if config.cold_start:
                        _measure(s, "cold_start", lambda: _cold(spec, rows[name]["model"], prepared.keras_file,
                                                                cold_image, config.device))
                    progress.step(f"round {r + 1}: {name}")
            for name in timed:
                _aggregate(rows[name], samples[name], len(files))
        finally:
            for worker in workers.values():
                worker.close()
            progress.close()

    for row in rows.values():
        row.pop("_p", None)
        row["gate"] = evaluate_gate(row, config.gates) if config.gate else {"passed": None, "failures": []}
    gate_results = [row["gate"]["passed"] for row in rows.values() if row["format"] in formats]
    gate_failed = config.gate and any(result is False for result in gate_results)
    hints = {
        "latency": "PERFORMANCE_HINT=LATENCY, batch 1, synchronous (EmotionClassifier.predict on a uint8 array)",
        "throughput": "PERFORMANCE_HINT=THROUGHPUT, optimal streams and requests (EmotionClassifier.submit)",
        "inference precision": "f32 for every OpenVINO row but openvino-bf16 (INFERENCE_PRECISION_HINT=bf16)",
        "OpenVINO model cache": "off for every measurement (cold start without cache)",
    }
    return {
        "tool": "emotion-bench",
        "command": config.command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "run": os.fspath(prepared.run_dir or prepared.keras_file),
        "keras_file": os.fspath(prepared.keras_file),
        "export": os.fspath(prepared.export) if prepared.export else None,
        "data": os.fspath(prepared.data),
        "images": {"source": prepared.sample_source, "count": int(len(x)), "positives": int(np.sum(y == 1)),
                   "negatives": int(np.sum(y == 0)), "input_size": [spec_images.height, spec_images.width],
                   "threshold": info.threshold, "labels": list(info.labels)},
        "model": {"name": info.name, "architecture": info.architecture, "version": info.version},
        "settings": {"repeats": config.repeats, "seconds": config.seconds, "benchmark_app_seconds": ba_seconds,
                     "warmup": config.warmup, "e2e_images": len(e2e_files), "device": config.device,
                     "cold_start": config.cold_start, "ceiling": config.ceiling},
        "formats": [rows[name] for name in FORMATS if name in rows and (name in formats or name == "keras")],
        "gate": {"enabled": config.gate, "passed": not gate_failed, "limits": asdict(config.gates),
                 "failures": {row["format"]: row["gate"]["failures"] for row in rows.values()
                              if row["gate"].get("passed") is False}},
        "hardware": hardware_report(hints),
        "notes": notes,
    }


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _mismatch(reference: dict[str, Any], other: dict[str, Any]) -> str | None:
    """Why an exported model cannot be this run's model (input size, labels, threshold), or None."""
    ref_size, size = list(reference.get("input_size", [])), list(other.get("input_size", []))
    if ref_size != size:
        return (f"the export's input is {'x'.join(map(str, size))}, the run's model takes "
                f"{'x'.join(map(str, ref_size))}: not an export of this model")
    if list(reference.get("labels", [])) != list(other.get("labels", [])):
        return f"labels {other.get('labels')} differ from the run's {reference.get('labels')}"
    if not math.isclose(float(reference.get("threshold", 0.5)), float(other.get("threshold", 0.5)), abs_tol=1e-9):
        return f"decision threshold {other.get('threshold')} differs from the run's {reference.get('threshold')}"
    return None


def _empty_samples() -> dict[str, list]:
    return {k: [] for k in ("latency", "ba_latency", "throughput", "ba_throughput", "e2e", "cold_start", "errors",
                            "latency_ratio", "throughput_ratio")}


def _measure(samples: dict[str, list], key: str, work: Callable[[], Any]) -> Any:
    """Run one measurement, keep its value (or its error); the value, or None when it failed."""
    try:
        value = work()
    except RuntimeError as exc:
        samples["errors"].append(f"{key}: {exc}")
        return None
    if isinstance(value, dict) and value.get("error"):
        samples["errors"].append(f"{key}: {value['error']}")
        return None
    samples[key].append(value)
    return value


def _ba(model: str, shape: list[int], hint: str, precision: str, seconds: float, device: str) -> dict[str, Any]:
    return run_benchmark_app(model, shape, hint, precision, seconds, device).to_dict()


def _cold(spec: FormatSpec, model: str, keras_file: Path, image: str, device: str) -> dict[str, Any]:
    if spec.kind == "keras":
        return coldstart.measure("keras", keras_file, image)
    return coldstart.measure("runtime", model, image, backend=spec.backend or "openvino", precision=spec.precision,
                             device=device, cache_dir=None)


def _aggregate(row: dict[str, Any], s: dict[str, list], n_files: int) -> None:
    row["latency_ms"] = {q: summarize(m[q] for m in s["latency"]) for q in ("p50", "p90", "p99", "mean")}
    row["latency_iterations"] = sum(m["n"] for m in s["latency"])
    row["throughput"] = summarize(m["images_per_second"] for m in s["throughput"])
    if s["throughput"] and "requests" in s["throughput"][0]:
        row["throughput_requests"] = s["throughput"][0]["requests"]
    row["e2e"] = summarize(m["images_per_second"] for m in s["e2e"])
    e2e_errors = sum(m.get("errors", 0) for m in s["e2e"])
    if e2e_errors:
        row["errors"].append(f"e2e: {e2e_errors} files failed")
    p = row.get("_p")
    if s["e2e"] and p is not None:
        from_files = np.asarray(s["e2e"][0]["probabilities"], np.float64)[:n_files]
        if from_files.shape == p.shape:
            row["e2e_max_abs_diff"] = float(np.nanmax(np.abs(from_files - p)))
    if s["cold_start"]:
        row["cold_start_s"] = summarize(m["since_spawn_seconds"] for m in s["cold_start"])
        row["cold_start_parts_s"] = {k: summarize(m[k] for m in s["cold_start"])["median"]
                                     for k in ("import_seconds", "load_seconds", "first_result_seconds")}
        row["peak_rss_mb"] = summarize(m["peak_rss_mb"] for m in s["cold_start"])
    if s["ba_latency"] or s["ba_throughput"]:
        ba_lat = summarize(m["median_latency_ms"] for m in s["ba_latency"])
        ba_thr = summarize(m["throughput"] for m in s["ba_throughput"])
        row["benchmark_app"] = {
            "latency_median_ms": ba_lat,
            "throughput": ba_thr,
            "commands": [m["command"] for m in (s["ba_latency"][:1] + s["ba_throughput"][:1])],
            "requests_throughput": s["ba_throughput"][0].get("requests") if s["ba_throughput"] else None,
        }
        # Ratios of the pairs measured back to back in each round (ours right before benchmark_app's), then
        # their median and spread: latency ours/benchmark_app (above 1: slower than the ceiling), throughput
        # ours/benchmark_app (below 1: slower). The ratio of the medians is kept too.
        row["ratios"] = {
            "latency": summarize(s["latency_ratio"])["median"],
            "throughput": summarize(s["throughput_ratio"])["median"],
            "latency_per_round": summarize(s["latency_ratio"]),
            "throughput_per_round": summarize(s["throughput_ratio"]),
            "latency_of_medians": ratio(row["latency_ms"]["p50"]["median"], ba_lat["median"]),
            "throughput_of_medians": ratio(row["throughput"]["median"], ba_thr["median"]),
        }
    row["errors"].extend(s["errors"])
