"""``emotion-bench infer-speed EXPORT --data DATA``: the runtime's speed targets, each against its ceiling.

(a) **Folder throughput.** ``EmotionClassifier.predict_many`` over a folder of photos (DATA's images repeated
    through symbolic links up to ``--files``), from discovery to the last result, against the combined ceiling
    ``1 / (1/D + 1/B)``: D is decode-and-resize-only images/s on all cores (a thread pool running the shared
    ``preprocess``), B is ``benchmark_app``'s throughput on the same IR and hints on all cores. The two share the
    cores, so an image costs at best its decode time plus its inference time. Target: ratio >= 0.9.
(b) **Single-image latency.** ``clf.predict(uint8 array)`` (LATENCY hint) against ``benchmark_app -hint
    latency``'s median. Target: ratio <= 1.15.
(c) **Cold start.** A fresh process imports the runtime, loads the IR and classifies one image file, without
    and with OpenVINO's model cache (warmed once beforehand), beside Keras (import, load ``.keras``, predict).

D, B, E and the latencies are measured in the same run, interleaved (the order rotates each round), and
reported as medians with their min-max over ``--repeats`` rounds. Only the runtime, numpy and Pillow are
imported in this process (no TensorFlow), as on an edge box.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion.runtime.console import positive_float, positive_int
from emotion.runtime.locate import REPORT_NAME

from . import coldstart
from .hardware import hardware_markdown, hardware_report
from .report import num, spread
from .suite import BenchError
from .timing import latency_loop, percentiles_ms, ratio, rotations, run_benchmark_app, summarize

TARGET_FOLDER = 0.9  # E / ceiling, at least
TARGET_LATENCY = 1.15  # ours / benchmark_app, at most


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
                        help="decode threads for D and predict_many (default: the CPU count)")
    parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (and FILE.json beside it)")


def _image_files(data: Path) -> list[Path]:
    from emotion.runtime.files import discover

    return [c.path for c in discover([data]) if c.error is None]


def make_folder(files: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` symbolic links in ``folder`` to ``files`` taken in turn; their paths, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        source = files[i % len(files)]
        link = folder / f"{i:06d}{source.suffix.lower() or '.img'}"
        os.symlink(os.path.abspath(source), link)
        made.append(link)
    return made


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (all its threads), or of its waited-for children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode_rate(files: list[Path], spec, workers: int) -> dict[str, float]:
    """Decode-and-resize-only images/s on ``workers`` threads (the shared preprocess; results dropped)."""
    from emotion.runtime.preprocess import preprocess

    cpu = cpu_seconds()
    started = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode-only") as pool:
        for _ in pool.map(lambda f: preprocess(f, spec), files):
            done += 1
    elapsed = time.perf_counter() - started
    return {"images": done, "seconds": elapsed, "images_per_second": done / elapsed,
            "cpu_ms_per_image": (cpu_seconds() - cpu) * 1000.0 / max(1, done)}


def submit_rate(clf, arrays: list[np.ndarray], seconds: float) -> dict[str, float]:
    """Inference-only images/s through ``clf.submit`` (preprocessed arrays), with its CPU cost per image."""
    from .timing import throughput_loop

    cpu = cpu_seconds()
    result = throughput_loop(lambda i: clf.submit(arrays[i % len(arrays)]), seconds,
                             window=2 * clf.workers, warmup=clf.workers)
    result["cpu_ms_per_image"] = (cpu_seconds() - cpu) * 1000.0 / max(1, result["images"])
    return result


def benchmark_app_cpu(xml: Path, shape: list[int], hint: str, precision: str, seconds: float) -> dict[str, Any]:
    """One benchmark_app run with the CPU seconds it used (its own start-up and compilation included)."""
    cpu = cpu_seconds(children=True)
    result = run_benchmark_app(xml, shape, hint, precision, seconds).to_dict()
    result["cpu_seconds"] = cpu_seconds(children=True) - cpu
    return result


def folder_rate(clf, folder: Path) -> dict[str, Any]:
    """``predict_many(discover(folder))``, as ``emotion-infer FOLDER`` runs it: images/s from start to the end."""
    from emotion.runtime.files import discover

    cpu = cpu_seconds()
    started = time.perf_counter()
    ok = errors = 0
    for prediction in clf.predict_many(discover([folder])):
        if prediction.ok:
            ok += 1
        else:
            errors += 1
    elapsed = time.perf_counter() - started
    return {"images": ok, "errors": errors, "seconds": elapsed, "images_per_second": ok / elapsed,
            "cpu_ms_per_image": (cpu_seconds() - cpu) * 1000.0 / max(1, ok + errors)}


def _keras_source(export: Path, explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    report = export / REPORT_NAME if export.is_dir() else None
    if report is not None and report.is_file():
        try:
            source = json.loads(report.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError):
            source = None
        if source and Path(source).is_file():
            return Path(source)
    return None


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure (a), (b) and (c); the result document.

    Raises:
        BenchError: the export or the data folder cannot be used.
    """
    from emotion.runtime import EmotionClassifier, ModelLoadError, resolve_model

    export, data = Path(args.export).expanduser(), Path(args.data).expanduser()
    if not export.exists():
        raise BenchError(f"export {export} does not exist; make one with `emotion-export RUN --out DIR`")
    if not data.is_dir():
        raise BenchError(f"data folder {data} does not exist or is not a folder")
    try:
        xml = resolve_model(export, backend="openvino", variant=args.variant)
    except ModelLoadError as exc:
        raise BenchError(str(exc)) from None
    if xml.suffix.lower() != ".xml":
        raise BenchError(f"{xml} is not an OpenVINO IR; infer-speed compares against benchmark_app on an IR")
    sources = _image_files(data)
    if not sources:
        raise BenchError(f"no images in {data}")
    keras_file = None if args.no_cold_start else _keras_source(export, args.keras)
    workers, started, notes = args.workers or os.cpu_count() or 1, time.time(), []
    with tempfile.TemporaryDirectory(prefix="emotion-infer-speed-") as scratch_dir:
        scratch = Path(scratch_dir)
        files = make_folder(sources, args.files, scratch / "photos")
        thr = EmotionClassifier.load(xml, mode="throughput", workers=args.workers, precision=args.precision,
                                     cache_dir=None)
        lat = EmotionClassifier.load(xml, mode="latency", precision=args.precision, cache_dir=None)
        with thr, lat:
            progress("warming up")
            arrays = [np.array(thr.preprocess(f)) for f in sources[:16]]
            folder_rate(thr, scratch / "photos" if len(files) <= 256 else _subfolder(files[:256], scratch / "warm"))
            latency_loop(lambda i: lat.predict(arrays[i % len(arrays)]), 0.5, warmup=5)
            # benchmark_app's start-up CPU (Python, read, compile) and a second of inference: subtracted from the
            # rounds' runs to estimate its CPU cost per inferred image
            shape = [1, thr.spec.height, thr.spec.width, 3]
            short = benchmark_app_cpu(xml, shape, "throughput", args.precision, 1)
            steps = {
                "decode": lambda: decode_rate(files, thr.spec, workers),
                "ba_throughput": lambda: benchmark_app_cpu(xml, shape, "throughput", args.precision, args.seconds),
                "folder": lambda: folder_rate(thr, scratch / "photos"),
                "submit": lambda: submit_rate(thr, arrays, args.seconds),
                "latency": lambda: percentiles_ms(latency_loop(lambda i: lat.predict(arrays[i % len(arrays)]),
                                                               args.seconds, warmup=5)),
                "ba_latency": lambda: run_benchmark_app(xml, shape, "latency", args.precision, args.seconds).to_dict(),
            }
            rounds = []
            for r, order in rotations(list(steps), args.repeats):
                progress(f"round {r + 1}/{args.repeats}")
                rounds.append(_derived({"order": order, **{step: steps[step]() for step in order}}, short))
            describe = {"throughput": thr.describe(), "latency": lat.describe()}
        cold = {} if args.no_cold_start else _cold_starts(xml, keras_file, sources[0], args, scratch, notes, progress)

    def series(key: str, inner: str | None = None) -> dict[str, Any]:
        return summarize((r.get(key) or {}).get(inner) if inner else r.get(key) for r in rounds)

    summary = {
        "decode_images_per_second": series("decode", "images_per_second"),
        "benchmark_app_throughput": series("ba_throughput", "throughput"),
        "folder_images_per_second": series("folder", "images_per_second"),
        "ceiling_images_per_second": series("ceiling"),
        "folder_ratio": series("folder_ratio"),
        "latency_p50_ms": series("latency", "p50"),
        "latency_p90_ms": series("latency", "p90"),
        "benchmark_app_latency_ms": series("ba_latency", "median_latency_ms"),
        "latency_ratio": series("latency_ratio"),
        "submit_images_per_second": series("submit", "images_per_second"),
        "decode_cpu_ms": series("decode", "cpu_ms_per_image"),
        "benchmark_app_cpu_ms": series("ba_cpu_ms_per_image"),
        "submit_cpu_ms": series("submit", "cpu_ms_per_image"),
        "folder_cpu_ms": series("folder", "cpu_ms_per_image"),
        "cpu_ceiling_ms": series("cpu_ceiling_ms_per_image"),
        "cpu_efficiency": series("cpu_efficiency"),
    }
    folder_ratio = summary["folder_ratio"]["median"]
    latency_ratio = summary["latency_ratio"]["median"]
    targets = {
        "folder": {"ratio": folder_ratio, "target": f">= {TARGET_FOLDER}",
                   "met": folder_ratio is not None and folder_ratio >= TARGET_FOLDER},
        "latency": {"ratio": latency_ratio, "target": f"<= {TARGET_LATENCY}",
                    "met": latency_ratio is not None and latency_ratio <= TARGET_LATENCY},
    }
    errors = [f"round {i + 1}: benchmark_app: {r[k]['error']}" for i, r in enumerate(rounds)
              for k in ("ba_throughput", "ba_latency") if r[k].get("error")]
    return {
        "tool": "emotion-bench infer-speed",
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "model": os.fspath(xml),
        "data": os.fspath(data),
        "files": len(files),
        "distinct_images": len(sources),
        "input_size": shape[1:3],
        "precision": args.precision,
        "workers": workers,
        "repeats": args.repeats,
        "runtime": describe,
        "rounds": rounds,
        "summary": summary,
        "targets": targets,
        "cold_start": cold,
        "keras_model": os.fspath(keras_file) if keras_file else None,
        "errors": errors,
        "notes": notes,
        "hardware": hardware_report({
            "folder run": f"EmotionClassifier.load(mode='throughput', precision='{args.precision}', cache_dir=None)"
                          f".predict_many(discover([folder])), {workers} decode threads",
            "latency": f"EmotionClassifier.load(mode='latency', precision='{args.precision}').predict(uint8 array)",
            "benchmark_app": f"-hint throughput|latency -infer_precision {args.precision} -shape {shape} "
                             f"-t {int(round(args.seconds))}",
        }),
    }


def _derived(result: dict[str, Any], short: dict[str, Any]) -> dict[str, Any]:
    """One round's ratios: the combined ceiling, E against it, our latency against benchmark_app's, CPU costs."""
    d, b = result["decode"]["images_per_second"], result["ba_throughput"].get("throughput")
    result["ceiling"] = 1.0 / (1.0 / d + 1.0 / b) if d and b else None
    result["folder_ratio"] = ratio(result["folder"]["images_per_second"], result["ceiling"])
    result["latency_ratio"] = ratio(result["latency"]["p50"], result["ba_latency"].get("median_latency_ms"))
    # CPU cost per image: robust to other processes taking cores (wall-clock rates are not)
    ba = result["ba_throughput"]
    extra = (ba.get("iterations") or 0) - (short.get("iterations") or 0)
    result["ba_cpu_ms_per_image"] = (ba["cpu_seconds"] - short["cpu_seconds"]) * 1000.0 / extra if extra > 0 else None
    if result["ba_cpu_ms_per_image"] is not None:
        result["cpu_ceiling_ms_per_image"] = result["decode"]["cpu_ms_per_image"] + result["ba_cpu_ms_per_image"]
        result["cpu_efficiency"] = ratio(result["cpu_ceiling_ms_per_image"], result["folder"]["cpu_ms_per_image"])
    return result


def _cold_starts(xml: Path, keras_file: Path | None, image: Path, args: argparse.Namespace, scratch: Path,
                 notes: list[str], progress: Callable[[str], None]) -> dict[str, Any]:
    """(c): the runtime without and with OpenVINO's model cache (filled once first), and Keras, in rotation."""
    progress("cold starts")
    runtime = "openvino-bf16" if args.precision == "bf16" else "openvino-fp32"
    cache = scratch / "ov-cache"
    coldstart.measure(runtime, xml, image, cache_dir=cache)  # fills the cache
    runs: dict[str, Callable[[], dict]] = {
        "runtime, no model cache": lambda: coldstart.measure(runtime, xml, image),
        "runtime, model cache": lambda: coldstart.measure(runtime, xml, image, cache_dir=cache)}
    if keras_file is not None:
        runs["keras"] = lambda: coldstart.measure("keras", keras_file, image)
    else:
        notes.append("no Keras model found for the cold start (pass --keras RUN)")
    values: dict[str, list] = {name: [] for name in runs}
    for _, order in rotations(list(runs), args.repeats):
        for name in order:
            values[name].append(runs[name]())
    cold = {}
    for name, measured in values.items():
        good = [v for v in measured if not v.get("error")]
        cold[name] = {"spawn_to_result_s": summarize(v["since_spawn_seconds"] for v in good),
                      **{f"{part}_s": summarize(v[f"{part}_seconds"] for v in good)["median"]
                         for part in ("import", "load", "first_result")},
                      "peak_rss_mb": summarize(v["peak_rss_mb"] for v in good),
                      "errors": [v["error"] for v in measured if v.get("error")]}
    return cold


def _subfolder(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        os.symlink(os.readlink(f), folder / f"{i:06d}{f.suffix}")
    return folder


def markdown(doc: dict[str, Any]) -> str:
    s, t = doc["summary"], doc["targets"]

    def mm(key: str, digits: int = 1) -> str:
        return f"{num(s[key]['median'], digits)} ({spread(s[key], digits)})"

    def met(name: str) -> str:
        return "**met**" if t[name]["met"] else "**missed**"

    h, w = doc["input_size"]
    out = ["# Runtime speed targets (issue 4)", ""]
    out.append(f"Model `{doc['model']}` ({h}x{w}, {doc['precision']} inference hint); folder of {doc['files']} "
               f"photos ({doc['distinct_images']} distinct images of `{doc['data']}` repeated through symbolic "
               f"links); {doc['workers']} decode threads. Medians of {doc['repeats']} interleaved rounds, "
               f"(min–max) beside them. Measured {doc['started']}, {doc['seconds']:.0f} s in all.")
    out += ["", f"Command: `{doc['command']}`", "", "## (a) Folder throughput against the combined ceiling", "",
            "| Figure | images/s |", "|---|---|",
            f"| D: decode + resize only, thread pool of the shared `preprocess` | {mm('decode_images_per_second')} |",
            f"| B: benchmark_app, THROUGHPUT hint, same IR | {mm('benchmark_app_throughput')} |",
            f"| Ceiling 1/(1/D + 1/B) | {mm('ceiling_images_per_second')} |",
            f"| E: `predict_many(discover(folder))` | {mm('folder_images_per_second')} |",
            f"| **E / ceiling** (target ≥ {TARGET_FOLDER}) | **{mm('folder_ratio', 3)}**: {met('folder')} |",
            "", "### CPU cost per image (a diagnostic that other processes on the machine do not skew)", "",
            "Wall-clock rates on a shared machine move with whatever else runs; the CPU time each path spends per "
            "image does not (much). benchmark_app's cost is the difference between a round's run and a 1-second "
            "run, which removes its start-up and compilation.", "",
            "| Path | CPU ms per image | images/s |", "|---|---|---|",
            f"| D: decode + resize | {mm('decode_cpu_ms', 2)} | {mm('decode_images_per_second')} |",
            f"| B: benchmark_app inference | {mm('benchmark_app_cpu_ms', 2)} | {mm('benchmark_app_throughput')} |",
            f"| our inference alone: `clf.submit` of preprocessed arrays | {mm('submit_cpu_ms', 2)} "
            f"| {mm('submit_images_per_second')} |",
            f"| D + B | {mm('cpu_ceiling_ms', 2)} | |",
            f"| E: `predict_many(discover(folder))` | {mm('folder_cpu_ms', 2)} | {mm('folder_images_per_second')} |",
            f"| **(D + B) / E**: CPU efficiency of the folder run | **{mm('cpu_efficiency', 3)}** | |",
            "", "## (b) Single-image latency against benchmark_app", "",
            "| Figure | ms |", "|---|---|",
            f"| `clf.predict(uint8 array)`, LATENCY hint, p50 | {mm('latency_p50_ms', 2)} |",
            f"| same, p90 | {mm('latency_p90_ms', 2)} |",
            f"| benchmark_app -hint latency, median | {mm('benchmark_app_latency_ms', 2)} |",
            f"| **ours / benchmark_app** (target ≤ {TARGET_LATENCY}) | **{mm('latency_ratio', 3)}**: {met('latency')} |"]
    if doc.get("cold_start"):
        out += ["", "## (c) Cold start: fresh process, import + load + classify one image file", "",
                "| Path | Spawn to result (s) | Import (s) | Load (s) | First result (s) | Peak RSS (MB) | Errors |",
                "|---|---|---|---|---|---|---|"]
        for name, c in doc["cold_start"].items():
            out.append(f"| {name} | {num(c['spawn_to_result_s']['median'], 2)} ({spread(c['spawn_to_result_s'], 2)}) "
                       f"| {num(c['import_s'], 2)} | {num(c['load_s'], 3)} | {num(c['first_result_s'], 3)} "
                       f"| {num(c['peak_rss_mb']['median'], 0)} | {'; '.join(c['errors']) or 'none'} |")
    out += ["", "## Rounds", "", "| Round | order | D | B | E | ceiling | E/ceiling | p50 ms | ba ms | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(doc["rounds"], 1):
        out.append(f"| {i} | {', '.join(r['order'])} | {num(r['decode']['images_per_second'])} "
                   f"| {num(r['ba_throughput'].get('throughput'))} | {num(r['folder']['images_per_second'])} "
                   f"| {num(r['ceiling'])} | {num(r['folder_ratio'], 3)} | {num(r['latency']['p50'], 2)} "
                   f"| {num(r['ba_latency'].get('median_latency_ms'), 2)} | {num(r['latency_ratio'], 3)} |")
    out += ["", "## Hardware and software", "", hardware_markdown(doc["hardware"])]
    if doc.get("errors") or doc.get("notes"):
        out += ["", "## Notes", ""] + [f"- {e}" for e in doc.get("errors", []) + doc.get("notes", [])]
    return "\n".join(out) + "\n"


def summary(doc: dict[str, Any]) -> str:
    """The three headline figures, one line each."""
    s = doc["summary"]
    lines = [f"(a) folder {num(s['folder_images_per_second']['median'])} img/s, ceiling "
             f"{num(s['ceiling_images_per_second']['median'])} img/s (D {num(s['decode_images_per_second']['median'])}, "
             f"B {num(s['benchmark_app_throughput']['median'])}): ratio {num(s['folder_ratio']['median'], 3)} "
             f"(target >= {TARGET_FOLDER})",
             f"(b) latency p50 {num(s['latency_p50_ms']['median'], 2)} ms vs benchmark_app "
             f"{num(s['benchmark_app_latency_ms']['median'], 2)} ms: ratio {num(s['latency_ratio']['median'], 3)} "
             f"(target <= {TARGET_LATENCY})"]
    lines += [f"(c) cold start {name}: {num(c['spawn_to_result_s']['median'], 2)} s, peak RSS "
              f"{num(c['peak_rss_mb']['median'], 0)} MB" for name, c in doc["cold_start"].items()]
    return "\n".join(lines)
