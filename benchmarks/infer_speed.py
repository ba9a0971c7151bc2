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
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emotion.train import atomic

from . import coldstart
from .hardware import hardware_markdown, hardware_report
from .report import num, spread, to_json
from .timing import latency_loop, percentiles_ms, ratio, run_benchmark_app, summarize

PROG = "emotion-bench infer-speed"
TARGET_FOLDER = 0.9  # E / ceiling, at least
TARGET_LATENCY = 1.15  # ours / benchmark_app, at most


class SpeedError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 measured (targets are reported, not enforced), 2 bad input.")
    parser.add_argument("export", metavar="EXPORT", help="export folder, or a model .xml")
    parser.add_argument("--data", required=True, metavar="DATA", help="folder of images (searched recursively)")
    parser.add_argument("--files", type=int, default=2240, metavar="N",
                        help="files in the folder run: DATA's images repeated by symbolic links (default %(default)s)")
    parser.add_argument("--variant", default="fp32", choices=("fp32", "fp16", "int8"), help="export variant")
    parser.add_argument("--precision", default="f32", choices=("f32", "bf16"), help="inference precision hint")
    parser.add_argument("--repeats", type=int, default=3, metavar="N", help="rounds (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, metavar="S",
                        help="benchmark_app -t and our latency loop, per round (default %(default)s)")
    parser.add_argument("--keras", metavar="RUN", help="run folder or .keras file for the Keras cold start "
                        "(default: the export report's source, when it exists)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip (c)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="decode threads for D and predict_many (default: the CPU count)")
    parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (and FILE.json beside it)")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    return parser


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
    report = export / "export_report.json" if export.is_dir() else None
    if report is not None and report.is_file():
        try:
            source = json.loads(report.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError):
            source = None
        if source and Path(source).is_file():
            return Path(source)
    return None


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from emotion.runtime import ModelLoadError
    from emotion.runtime.classifier import EmotionClassifier
    from emotion.runtime.locate import resolve_model

    export = Path(args.export).expanduser()
    data = Path(args.data).expanduser()
    if not export.exists():
        raise SpeedError(f"export {export} does not exist")
    if not data.is_dir():
        raise SpeedError(f"data folder {data} does not exist or is not a folder")
    if args.repeats < 1 or args.files < 1 or not args.seconds > 0:
        raise SpeedError("--repeats, --files and --seconds must be positive")
    try:
        xml = resolve_model(export, backend="openvino", variant=args.variant)
    except (ModelLoadError, ValueError) as exc:
        raise SpeedError(str(exc)) from None
    if xml.suffix.lower() != ".xml":
        raise SpeedError(f"{xml} is not an OpenVINO IR; infer-speed compares against benchmark_app on an IR")
    sources = _image_files(data)
    if not sources:
        raise SpeedError(f"no images in {data}")
    keras_file = None if args.no_cold_start else _keras_source(export, args.keras)
    workers = args.workers or os.cpu_count() or 1
    started = time.time()
    notes: list[str] = []
    bar = tqdm(total=3 + args.repeats, desc="infer-speed", unit="step", file=sys.stderr,
               disable=args.quiet or args.json, leave=False, dynamic_ncols=True)
    try:
        with tempfile.TemporaryDirectory(prefix="emotion-infer-speed-") as scratch_dir:
            scratch = Path(scratch_dir)
            folder = scratch / "photos"
            files = make_folder(sources, args.files, folder)
            common = dict(precision=args.precision, cache_dir=None)
            thr = EmotionClassifier.load(xml, mode="throughput", workers=args.workers, **common)
            lat = EmotionClassifier.load(xml, mode="latency", **common)
            spec = thr.spec
            shape = [1, spec.height, spec.width, 3]
            arrays = [np.array(thr.preprocess(f)) for f in sources[:16]]
            # warm-up: every path once (page cache, thread pools, requests)
            folder_rate(thr, folder if len(files) <= 256 else _subfolder(files[:256], scratch / "warm"))
            latency_loop(lambda i: lat.predict(arrays[i % len(arrays)]), 0.5, warmup=5)
            # benchmark_app's start-up CPU (Python, read, compile) and a second of inference: subtracted from the
            # rounds' runs to estimate its CPU cost per inferred image
            short = benchmark_app_cpu(xml, shape, "throughput", args.precision, 1)
            bar.update()

            rounds: list[dict[str, Any]] = []
            steps = ["decode", "ba_throughput", "folder", "submit", "latency", "ba_latency"]
            for r in range(args.repeats):
                order = steps[r % len(steps):] + steps[: r % len(steps)]
                result: dict[str, Any] = {"order": order}
                for step in order:
                    bar.set_postfix_str(f"round {r + 1}: {step}")
                    if step == "decode":
                        result["decode"] = decode_rate(files, spec, workers)
                    elif step == "folder":
                        result["folder"] = folder_rate(thr, folder)
                    elif step == "submit":
                        result["submit"] = submit_rate(thr, arrays, args.seconds)
                    elif step == "latency":
                        result["latency"] = percentiles_ms(
                            latency_loop(lambda i: lat.predict(arrays[i % len(arrays)]), args.seconds, warmup=5))
                    elif step == "ba_throughput":
                        result["ba_throughput"] = benchmark_app_cpu(xml, shape, "throughput", args.precision,
                                                                    args.seconds)
                    elif step == "ba_latency":
                        result["ba_latency"] = run_benchmark_app(xml, shape, "latency", args.precision,
                                                                 args.seconds).to_dict()
                d = result["decode"]["images_per_second"]
                b = result["ba_throughput"].get("throughput")
                e = result["folder"]["images_per_second"]
                result["ceiling"] = 1.0 / (1.0 / d + 1.0 / b) if d and b else None
                result["folder_ratio"] = ratio(e, result["ceiling"])
                result["latency_ratio"] = ratio(result["latency"]["p50"], result["ba_latency"].get("median_latency_ms"))
                # CPU cost per image: robust to other processes taking cores (wall-clock rates are not)
                ba = result["ba_throughput"]
                extra = (ba.get("iterations") or 0) - (short.get("iterations") or 0)
                result["ba_cpu_ms_per_image"] = ((ba["cpu_seconds"] - short["cpu_seconds"]) * 1000.0 / extra
                                                 if extra > 0 else None)
                if result["ba_cpu_ms_per_image"] is not None:
                    result["cpu_ceiling_ms_per_image"] = (result["decode"]["cpu_ms_per_image"]
                                                          + result["ba_cpu_ms_per_image"])
                    result["cpu_efficiency"] = ratio(result["cpu_ceiling_ms_per_image"],
                                                     result["folder"]["cpu_ms_per_image"])
                rounds.append(result)
                bar.update()
            describe = {"throughput": thr.describe(), "latency": lat.describe()}
            thr.close()
            lat.close()

            cold: dict[str, Any] = {}
            if not args.no_cold_start:
                bar.set_postfix_str("cold starts")
                image = sources[0]
                cache = scratch / "ov-cache"
                coldstart.measure("runtime", xml, image, precision=args.precision, cache_dir=cache)  # fill it
                runs: dict[str, list] = {"runtime, no model cache": [], "runtime, model cache": []}
                if keras_file is not None:
                    runs["keras"] = []
                else:
                    notes.append("no Keras model found for the cold start (pass --keras RUN)")
                for r in range(args.repeats):
                    names = list(runs)
                    for name in names[r % len(names):] + names[: r % len(names)]:
                        if name == "keras":
                            value = coldstart.measure("keras", keras_file, image)
                        else:
                            value = coldstart.measure("runtime", xml, image, precision=args.precision,
                                                      cache_dir=cache if name == "runtime, model cache" else None)
                        runs[name].append(value)
                for name, values in runs.items():
                    good = [v for v in values if not v.get("error")]
                    cold[name] = {
                        "spawn_to_result_s": summarize(v["since_spawn_seconds"] for v in good),
                        "import_s": summarize(v["import_seconds"] for v in good)["median"],
                        "load_s": summarize(v["load_seconds"] for v in good)["median"],
                        "first_result_s": summarize(v["first_result_seconds"] for v in good)["median"],
                        "peak_rss_mb": summarize(v["peak_rss_mb"] for v in good),
                        "errors": [v["error"] for v in values if v.get("error")],
                    }
            bar.update()
    finally:
        bar.close()

    def series(key: str, inner: str | None = None):
        values = []
        for r in rounds:
            value = r.get(key)
            if inner is not None:
                value = (value or {}).get(inner)
            values.append(value)
        return summarize(values)

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
        "tool": PROG,
        "command": " ".join(["emotion-bench", "infer-speed"] + [shlex.quote(a) for a in argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "model": os.fspath(xml),
        "data": os.fspath(data),
        "files": len(files),
        "distinct_images": len(sources),
        "input_size": [spec.height, spec.width],
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


def _subfolder(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        os.symlink(os.readlink(f), folder / f"{i:06d}{f.suffix}")
    return folder


def markdown(doc: dict[str, Any], title: str | None = None) -> str:
    s, t = doc["summary"], doc["targets"]

    def mm(key: str, digits: int = 1) -> str:
        return f"{num(s[key]['median'], digits)} ({spread(s[key], digits)})"

    def met(name: str) -> str:
        return "**met**" if t[name]["met"] else "**missed**"

    h, w = doc["input_size"]
    out = [f"# {title or 'Runtime speed targets (issue 4)'}", ""]
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        doc = run(args, argv)
    except SpeedError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if args.out:
        out = Path(args.out)
        atomic.write_text(out, markdown(doc))
        atomic.write_text(out.with_suffix(".json"), to_json(doc))
        print(f"{PROG}: wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    if args.json:
        sys.stdout.write(to_json(doc))
    else:
        s = doc["summary"]
        print(f"(a) folder {num(s['folder_images_per_second']['median'])} img/s, ceiling "
              f"{num(s['ceiling_images_per_second']['median'])} img/s (D {num(s['decode_images_per_second']['median'])}, "
              f"B {num(s['benchmark_app_throughput']['median'])}): ratio {num(s['folder_ratio']['median'], 3)} "
              f"(target >= {TARGET_FOLDER})")
        print(f"(b) latency p50 {num(s['latency_p50_ms']['median'], 2)} ms vs benchmark_app "
              f"{num(s['benchmark_app_latency_ms']['median'], 2)} ms: ratio {num(s['latency_ratio']['median'], 3)} "
              f"(target <= {TARGET_LATENCY})")
        for name, c in doc["cold_start"].items():
            print(f"(c) cold start {name}: {num(c['spawn_to_result_s']['median'], 2)} s, "
                  f"peak RSS {num(c['peak_rss_mb']['median'], 0)} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
