"""``emotion-bench infer-speed EXPORT --data DATA``: the runtime's speed targets, each against its ceiling.

(a) folder throughput E (``predict_many`` over DATA's images repeated up to ``--files``) against the combined
ceiling 1/(1/D + 1/B), D the shared preprocessing alone on all cores, B benchmark_app's throughput; (b)
``clf.predict(uint8 array)`` latency against benchmark_app's; (c) cold start with and without OpenVINO's model
cache, beside Keras. D, B, E and the latencies run interleaved, the order rotating each round; only the runtime,
numpy and Pillow are imported (no TensorFlow), as on an edge box.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from emotion.export.formats import FORMATS
from emotion.runtime import discover, resolve_model
from emotion.runtime.console import UsageError, attempt, positive_float, positive_int
from emotion.runtime.locate import REPORT_NAME
from emotion.runtime.preprocess import decode

from . import coldstart
from .report import cold_table, mm, num, page, row_table
from .timing import interleave, ratio, run_benchmark_app, series
from .workers import FormatWorker, make_folder, pair_ratios

TARGET_FOLDER = 0.9  # E / ceiling, at least
TARGET_LATENCY = 1.15  # ours / benchmark_app, at most
SERIES = {  # summary figure -> (a round's step, its figure); None: the round's own ratio or cost
    "decode_images_per_second": ("decode", "images_per_second"),
    "benchmark_app_throughput": ("ba_throughput", "throughput"),
    "folder_images_per_second": ("e2e", "images_per_second"),
    "ceiling_images_per_second": ("ceiling", None),
    "folder_ratio": ("folder_ratio", None),
    "latency_p50_ms": ("latency", "p50"),
    "latency_p90_ms": ("latency", "p90"),
    "benchmark_app_latency_ms": ("ba_latency", "median_latency_ms"),
    "latency_ratio": ("latency_ratio", None),
    "submit_images_per_second": ("throughput", "images_per_second"),
    "decode_cpu_ms": ("decode", "cpu_ms_per_image"),
    "benchmark_app_cpu_ms": ("ba_cpu_ms_per_image", None),
    "submit_cpu_ms": ("throughput", "cpu_ms_per_image"),
    "folder_cpu_ms": ("e2e", "cpu_ms_per_image"),
    "cpu_ceiling_ms": ("cpu_ceiling_ms_per_image", None),
    "cpu_efficiency": ("cpu_efficiency", None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", metavar="EXPORT", help="export folder, or a model .xml")
    parser.add_argument("--data", required=True, metavar="DATA", help="folder of images (searched recursively)")
    parser.add_argument("--files", type=positive_int, default=2240, metavar="N",
                        help="files in the folder run: DATA's images repeated by symbolic links (default %(default)s)")
    parser.add_argument("--variant", default="fp32", choices=("fp32", "fp16", "int8"), help="export variant")
    parser.add_argument("--precision", default="f32", choices=("f32", "bf16"), help="inference precision hint")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N", help="rounds (default %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=5.0, metavar="S",
                        help="benchmark_app -t and our latency loop, per round (default %(default)s)")
    parser.add_argument("--keras", metavar="RUN", help="run folder or .keras file for the Keras cold start "
                        "(default: the export report's source, when it exists)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip (c)")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="decode threads for D and predict_many (default: the runtime's, the CPU count + 1 "
                        "and at least OpenVINO's optimal number of requests)")


def _keras_source(export: Path, explicit: str | None) -> Path | None:
    """``--keras``, else the source model named by the export's report, when it is still there."""
    try:
        source = explicit or json.loads((export / REPORT_NAME).read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError):
        return None
    return Path(source) if explicit or (source and Path(source).is_file()) else None


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure (a), (b) and (c); the result document.

    Raises:
        UsageError, ModelLoadError: the export or the data folder cannot be used, or the model does not load.
    """
    export, data = Path(args.export).expanduser(), Path(args.data).expanduser()
    if not export.exists():
        raise UsageError(f"export {export} does not exist; make one with `emotion-export RUN --out DIR`")
    if not data.is_dir():
        raise UsageError(f"data folder {data} does not exist or is not a folder")
    xml = resolve_model(export, backend="openvino", variant=args.variant)
    if xml.suffix.lower() != ".xml":
        raise UsageError(f"{xml} is not an OpenVINO IR; infer-speed compares against benchmark_app on an IR")
    sources, notes = _decodable(data)
    keras_file = None if args.no_cold_start else _keras_source(export, args.keras)
    precision = args.precision
    fmt = FORMATS["openvino-bf16" if precision == "bf16" else f"openvino-{args.variant}"]  # runs as: backend, hint
    with tempfile.TemporaryDirectory(prefix="emotion-infer-speed-") as scratch_dir:
        scratch = Path(scratch_dir)
        folder = make_folder(sources, args.files, scratch / "photos")
        try:
            worker = FormatWorker(fmt, xml, sources[:16], None, "CPU", args.workers)
        except RuntimeError as exc:  # the worker's one line, "cannot load: why"
            raise UsageError(f"{fmt.name} {exc}") from None
        workers = worker.description["throughput_mode"]["workers"]  # D decodes on as many threads as E runs
        try:
            rounds = _rounds(worker, sources, folder, scratch, args, workers, progress)
        finally:
            worker.close()
        cold = {} if args.no_cold_start else _cold_starts(fmt.name, xml, keras_file, sources[0], args, scratch, notes,
                                                          progress)
    shape = [1, *worker.description["input_size"], 3]
    summary = series(rounds, SERIES)
    folder_ratio, latency_ratio = summary["folder_ratio"]["median"], summary["latency_ratio"]["median"]
    return {
        "tool": "emotion-bench infer-speed", "model": os.fspath(xml), "data": os.fspath(data),
        "files": args.files, "distinct_images": len(sources), "input_size": shape[1:3], "precision": precision,
        "workers": workers, "repeats": args.repeats, "runtime": worker.description, "rounds": rounds,
        "summary": summary,
        "targets": {"folder": {"ratio": folder_ratio, "target": f">= {TARGET_FOLDER}",
                               "met": folder_ratio is not None and folder_ratio >= TARGET_FOLDER},
                    "latency": {"ratio": latency_ratio, "target": f"<= {TARGET_LATENCY}",
                                "met": latency_ratio is not None and latency_ratio <= TARGET_LATENCY}},
        "cold_start": cold, "keras_model": os.fspath(keras_file) if keras_file else None,
        "errors": [f"round {i + 1}: benchmark_app: {r[k]['error']}" for i, r in enumerate(rounds)
                   for k in ("ba_throughput", "ba_latency") if r[k].get("error")],
        "notes": notes,
        "hints": {
            "folder run": f"EmotionClassifier.load(mode='throughput', precision='{precision}', cache_dir=None)"
                          f".predict_many(discover([folder])), {workers} decode threads",
            "latency": f"EmotionClassifier.load(mode='latency', precision='{precision}').predict(uint8 array)",
            "benchmark_app": f"-hint throughput|latency -infer_precision {precision} -shape {shape} "
                             f"-t {max(1, round(args.seconds))}"},
    }


def _decodable(data: Path) -> tuple[list[Path], list[str]]:
    """The image files of ``data`` that decode, and a note on those left out.

    Raises:
        UsageError: none decodes.
    """
    found = [(c.path, attempt(decode, c.path)[1]) for c in discover([data]) if c.error is None]
    sources = [path for path, error in found if error is None]
    if not sources:
        raise UsageError(f"no readable images in {data}")
    left_out = [(path, error) for path, error in found if error]
    return sources, [f"{len(left_out)} files of {data} could not be decoded and were left out (first: "
                     f"{left_out[0][0]}: {left_out[0][1]})"] if left_out else []


def _rounds(worker: FormatWorker, sources: list[Path], folder: Path, scratch: Path, args: argparse.Namespace,
            workers: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """(a) and (b) after a warm-up: every step once per round, then the round's ratios."""
    progress("warming up")
    worker.call("e2e", folder=make_folder(sources, min(256, args.files), scratch / "warm"))
    worker.call("latency", seconds=0.5, warmup=5)
    shape = [1, *worker.description["input_size"], 3]
    # benchmark_app's start-up CPU (Python, read, compile) and a second of inference: subtracted from the
    # rounds' runs to estimate its CPU cost per inferred image
    short = run_benchmark_app(worker.model, shape, "throughput", args.precision, 1)
    steps = {"decode": lambda: worker.call("decode", folder=folder, threads=workers),
             **worker.steps(args.seconds, 5, folder, ba_seconds=args.seconds)}
    return [_derived(r, short) for r in interleave(steps, args.repeats, progress)]


def _derived(result: dict[str, Any], short: dict[str, Any]) -> dict[str, Any]:
    """One round's ratios: the combined ceiling, E against it, our latency against benchmark_app's, CPU costs."""
    result["e2e"].pop("probabilities")
    d, b = result["decode"]["images_per_second"], result["ba_throughput"].get("throughput")
    result.update(pair_ratios(result), ceiling=1.0 / (1.0 / d + 1.0 / b) if d and b else None)
    result["folder_ratio"] = ratio(result["e2e"]["images_per_second"], result["ceiling"])
    ba = result["ba_throughput"]
    extra = (ba.get("iterations") or 0) - (short.get("iterations") or 0)
    if extra > 0 and "cpu_seconds" in ba and "cpu_seconds" in short:
        result["ba_cpu_ms_per_image"] = (ba["cpu_seconds"] - short["cpu_seconds"]) * 1000.0 / extra
        result["cpu_ceiling_ms_per_image"] = result["decode"]["cpu_ms_per_image"] + result["ba_cpu_ms_per_image"]
        result["cpu_efficiency"] = ratio(result["cpu_ceiling_ms_per_image"], result["e2e"]["cpu_ms_per_image"])
    return result


def _cold_starts(fmt: str, xml: Path, keras_file: Path | None, image: Path, args: argparse.Namespace,
                 scratch: Path, notes: list[str], progress: Callable[[str], None]) -> dict[str, Any]:
    """(c): the runtime without and with OpenVINO's model cache (filled once first), and Keras, in rotation."""
    progress("cold starts")
    cache = scratch / "ov-cache"
    coldstart.measure(fmt, xml, image, cache_dir=cache)  # fills the cache
    runs: dict[str, Callable[[], dict]] = {
        "runtime, no model cache": lambda: coldstart.measure(fmt, xml, image),
        "runtime, model cache": lambda: coldstart.measure(fmt, xml, image, cache_dir=cache)}
    if keras_file is not None:
        runs["keras"] = lambda: coldstart.measure("keras", keras_file, image)
    else:
        notes.append("no Keras model found for the cold start (pass --keras RUN)")
    rounds = interleave(runs, args.repeats)
    return {name: coldstart.summary([r[name] for r in rounds]) for name in runs}


def markdown(doc: dict[str, Any]) -> str:
    s, t = doc["summary"], doc["targets"]
    met = {name: "**met**" if t[name]["met"] else "**missed**" for name in t}
    h, w = doc["input_size"]
    out = [f"Model `{doc['model']}` ({h}x{w}, {doc['precision']} inference hint); folder of {doc['files']} "
           f"photos ({doc['distinct_images']} distinct images of `{doc['data']}` repeated through symbolic "
           f"links); {doc['workers']} decode threads. Medians of {doc['repeats']} interleaved rounds, "
           f"(min–max) beside them. Measured {doc['started']}, {doc['seconds']:.0f} s in all.",
           "", "## (a) Folder throughput against the combined ceiling", "", row_table(["Figure", "images/s"], [
               ["D: decode + resize only, thread pool of the shared `preprocess`", mm(s["decode_images_per_second"])],
               ["B: benchmark_app, THROUGHPUT hint, same IR", mm(s["benchmark_app_throughput"])],
               ["Ceiling 1/(1/D + 1/B)", mm(s["ceiling_images_per_second"])],
               ["E: `predict_many(discover(folder))`", mm(s["folder_images_per_second"])],
               [f"**E / ceiling** (target ≥ {TARGET_FOLDER})", f"**{mm(s['folder_ratio'], 3)}**: {met['folder']}"]]),
           "", "### CPU cost per image (a diagnostic that other processes on the machine do not skew)", "",
           "Wall-clock rates on a shared machine move with whatever else runs; the CPU time each path spends per "
           "image does not (much). benchmark_app's cost is the difference between a round's run and a 1-second "
           "run, which removes its start-up and compilation.", "", row_table(["Path", "CPU ms per image", "images/s"], [
               ["D: decode + resize", mm(s["decode_cpu_ms"], 2), mm(s["decode_images_per_second"])],
               ["B: benchmark_app inference", mm(s["benchmark_app_cpu_ms"], 2), mm(s["benchmark_app_throughput"])],
               ["our inference alone: `clf.submit` of preprocessed arrays", mm(s["submit_cpu_ms"], 2),
                mm(s["submit_images_per_second"])],
               ["D + B", mm(s["cpu_ceiling_ms"], 2), ""],
               ["E: `predict_many(discover(folder))`", mm(s["folder_cpu_ms"], 2), mm(s["folder_images_per_second"])],
               ["**(D + B) / E**: CPU efficiency of the folder run", f"**{mm(s['cpu_efficiency'], 3)}**", ""]]),
           "", "## (b) Single-image latency against benchmark_app", "", row_table(["Figure", "ms"], [
               ["`clf.predict(uint8 array)`, LATENCY hint, p50", mm(s["latency_p50_ms"], 2)],
               ["same, p90", mm(s["latency_p90_ms"], 2)],
               ["benchmark_app -hint latency, median", mm(s["benchmark_app_latency_ms"], 2)],
               [f"**ours / benchmark_app** (target ≤ {TARGET_LATENCY})",
                f"**{mm(s['latency_ratio'], 3)}**: {met['latency']}"]])]
    if doc["cold_start"]:
        out += ["", "## (c) Cold start: fresh process, import + load + classify one image file", "",
                cold_table(list(doc["cold_start"].items()), errors=True)]
    out += ["", "## Rounds", "", row_table(
        ["Round", "order", "D", "B", "E", "ceiling", "E/ceiling", "p50 ms", "ba ms", "ratio"],
        [[str(i), ", ".join(r["order"]), num(r["decode"]["images_per_second"]), num(r["ba_throughput"]["throughput"]),
          num(r["e2e"]["images_per_second"]), num(r["ceiling"]), num(r["folder_ratio"], 3),
          num(r["latency"]["p50"], 2), num(r["ba_latency"]["median_latency_ms"], 2), num(r["latency_ratio"], 3)]
         for i, r in enumerate(doc["rounds"], 1)])]
    return page("Runtime speed against its ceilings (emotion-bench infer-speed)", doc, out,
                doc["errors"] + doc["notes"])


def summary(doc: dict[str, Any]) -> str:
    """The three headline figures, one line each."""
    s = {name: figure["median"] for name, figure in doc["summary"].items()}
    lines = [f"(a) folder {num(s['folder_images_per_second'])} img/s, ceiling {num(s['ceiling_images_per_second'])} "
             f"img/s (D {num(s['decode_images_per_second'])}, B {num(s['benchmark_app_throughput'])}): ratio "
             f"{num(s['folder_ratio'], 3)} (target >= {TARGET_FOLDER})",
             f"(b) latency p50 {num(s['latency_p50_ms'], 2)} ms vs benchmark_app "
             f"{num(s['benchmark_app_latency_ms'], 2)} ms: ratio {num(s['latency_ratio'], 3)} "
             f"(target <= {TARGET_LATENCY})"]
    return "\n".join(lines + [f"(c) cold start {name}: {num(c['cold_start_s']['median'], 2)} s, peak RSS "
                              f"{num(c['peak_rss_mb']['median'], 0)} MB" for name, c in doc["cold_start"].items()])
