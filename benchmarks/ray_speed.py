"""``emotion-bench ray-speed``: folder inference through Ray Data against local ``emotion-infer``.

Both commands run as a user runs them, each in a fresh process, on the same folder (DATA's images repeated
through symbolic links up to ``--files``): in each round, for each model, one after the other, the order
alternating. From each run: the wall time of the whole command (Ray's start included), the images/s of its
summary (first to last answer; for Ray, the actors' start and the pipeline too), and whether its answers equal
the local run's (paths, labels and reasons equal, the largest |dP|).

Beside them, what sizing a cluster needs: each model's cost per image on one core, decoding (the shared
preprocessing) and inferring (OpenVINO on one thread, as an actor's thread runs it), so the images/s one core
gives and the share of the cores worth giving to inference.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from emotion.runtime import EmotionClassifier, discover
from emotion.runtime.console import positive_int

from .hardware import hardware_markdown, hardware_report
from .infer_speed import make_folder
from .report import num, spread
from .suite import BenchError
from .timing import summarize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DATA", help="folder of photos, repeated up to --files")
    parser.add_argument("--models", nargs="+", required=True, metavar="EXPORT", help="export folders to compare")
    parser.add_argument("--files", type=positive_int, default=1344, metavar="N",
                        help="files in the folder run: DATA's images repeated by symbolic links (default %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=3, metavar="N",
                        help="interleaved rounds (default %(default)s)")
    parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (and FILE.json beside it)")


def infer(folder: Path, model: str, ray: bool) -> dict[str, Any]:
    """One ``emotion-infer`` run in a fresh process: wall seconds, the summary's images/s, the results."""
    command = [sys.executable, "-m", "emotion.runtime.cli", str(folder), "--model", model, "--json",
               *(["--ray"] if ray else [])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    document = json.loads(result.stdout)
    return {"wall_s": wall, "images_per_second": document["summary"]["images_per_second"],
            "results": document["results"], "model": document["model"]}


def agreement(ray: list[dict[str, Any]], local: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether Ray's answers are local's: same paths, labels and reasons in the same order, and the largest |dP|."""
    same = [(r["path"], r["label"], r["error"]) for r in ray] == [(r["path"], r["label"], r["error"]) for r in local]
    gaps = [abs(r["probability"] - l["probability"]) for r, l in zip(ray, local) if r["probability"] is not None]
    return {"same_paths_labels_reasons": same, "max_abs_dp": max(gaps, default=0.0)}


def core_costs(files: list[Path], model: str) -> dict[str, float]:
    """Milliseconds per image on one core: decoding, then inferring with one OpenVINO thread."""
    with EmotionClassifier.load(model, mode="latency", workers=1,
                                config={"INFERENCE_NUM_THREADS": 1, "ENABLE_CPU_PINNING": False}) as classifier:
        started = time.perf_counter()
        arrays = [classifier.preprocess(path) for path in files]
        decode = (time.perf_counter() - started) / len(files)
        for array in arrays[:10]:  # first inferences allocate
            classifier.predict(array)
        started = time.perf_counter()
        for array in arrays:
            classifier.predict(array)
        inference = (time.perf_counter() - started) / len(files)
    return {"decode_ms": 1000 * decode, "inference_ms": 1000 * inference}


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    files = [c.path for c in discover([args.data]) if c.error is None]
    if not files:
        raise BenchError(f"no images in {args.data}")
    began, load = time.time(), os.getloadavg()
    runs: dict[str, dict[str, list]] = {m: {"local": [], "ray": [], "agreement": [], "costs": []} for m in args.models}
    with tempfile.TemporaryDirectory(prefix="ray-speed-") as tmp:
        folder = Path(tmp) / "photos"
        make_folder(files, args.files, folder)
        for round_ in range(args.rounds):
            for model in args.models:
                order = (False, True) if round_ % 2 == 0 else (True, False)
                done = {ray: infer(folder, model, ray) for ray in order}
                runs[model]["agreement"].append(agreement(done[True]["results"], done[False]["results"]))
                for ray, name in ((False, "local"), (True, "ray")):
                    runs[model][name].append({k: v for k, v in done[ray].items() if k != "results"})
                runs[model]["costs"].append(core_costs(files[:200], model))
                progress(f"round {round_ + 1}/{args.rounds} {model}: local {done[False]['images_per_second']} img/s, "
                         f"ray {done[True]['images_per_second']} img/s")
    models = {}
    for model, r in runs.items():
        costs = {key: summarize(c[key] for c in r["costs"]) for key in ("decode_ms", "inference_ms")}
        per_core = [1000 / (c["decode_ms"] + c["inference_ms"]) for c in r["costs"]]
        share = [c["inference_ms"] / (c["decode_ms"] + c["inference_ms"]) for c in r["costs"]]
        description = r["ray"][0]["model"]
        models[model] = {
            "input_size": description["input_size"], "ray": description["ray"],
            "local_images_per_second": summarize(x["images_per_second"] for x in r["local"]),
            "ray_images_per_second": summarize(x["images_per_second"] for x in r["ray"]),
            "ray_over_local": summarize(y["images_per_second"] / x["images_per_second"]
                                        for x, y in zip(r["local"], r["ray"])),
            "local_wall_s": summarize(x["wall_s"] for x in r["local"]),
            "ray_wall_s": summarize(x["wall_s"] for x in r["ray"]),
            "agreement": {"same_paths_labels_reasons": all(a["same_paths_labels_reasons"] for a in r["agreement"]),
                          "max_abs_dp": max(a["max_abs_dp"] for a in r["agreement"])},
            **costs, "images_per_core_second": summarize(per_core), "inference_share": summarize(share),
        }
    return {"measured": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began)), "seconds": round(time.time() - began),
            "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
            "data": str(args.data), "distinct_images": len(files), "files": args.files, "rounds": args.rounds,
            "models": models, "ray_version": metadata.version("ray"), "hardware": hardware_report()}


def markdown(doc: dict[str, Any]) -> str:
    cell = lambda s, digits=1: f"{num(s['median'], digits)} ({spread(s, digits)})"
    lines = [
        "# Folder inference through Ray Data against local emotion-infer (issue 15)", "",
        f"Command: `{doc['command']}`", "",
        f"Measured {doc['measured']} ({doc['seconds']} s) on **{doc['hardware']['cpu']}**, "
        f"{doc['hardware']['usable_cores']} cores shared with other jobs (load average "
        f"{doc['load_average_at_start'][0]:.1f} at the start, {doc['load_average_at_end'][0]:.1f} at the end). Folder of "
        f"{doc['files']} files ({doc['distinct_images']} distinct images of `{doc['data']}` repeated through symbolic "
        f"links); {doc['rounds']} rounds, local and Ray side by side in each, the order alternating. Medians, (min–max) "
        "beside them: on shared cores, read the ratio more than the rates, and a Ray / local ratio near or above 1 as "
        "a tie (Ray's several processes can take a larger part of cores that other jobs share than one process).", "",
        "## Throughput: the engine's overhead", "",
        "images/s is the summary's (first to last answer; for Ray it includes the actors' start); wall is the whole "
        f"command (Ray's start included). Ray {doc['ray_version']} here: a local instance on this machine, the pool "
        "sized by default.", "",
        "| model | input | local images/s | Ray images/s | Ray / local | local wall s | Ray wall s | Ray pool | same answers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, m in doc["models"].items():
        pool = m["ray"]
        lines.append(
            f"| `{model}` | {m['input_size'][0]}x{m['input_size'][1]} | {cell(m['local_images_per_second'])} | "
            f"{cell(m['ray_images_per_second'])} | **{cell(m['ray_over_local'], 2)}** | {cell(m['local_wall_s'])} | "
            f"{cell(m['ray_wall_s'])} | {pool['actors']} actor x {pool['actor_threads']} thread, {pool['cpus']:g} CPUs | "
            f"{'yes' if m['agreement']['same_paths_labels_reasons'] else 'NO'}, max dP "
            f"{m['agreement']['max_abs_dp']:.1e} |")
    lines += [
        "", "## Cost per image on one core: sizing a cluster", "",
        "Decoding is the shared preprocessing of a 500x400 JPEG on one thread; inference is OpenVINO with one "
        "inference thread, as each thread of an actor runs it. A core gives 1000 / (decode + inference) images/s at "
        "best; the inference share is the part of the cores worth giving to the actors.", "",
        "| model | decode ms | inference ms | images/s per core | inference share |",
        "|---|---|---|---|---|",
    ]
    for model, m in doc["models"].items():
        lines.append(f"| `{model}` | {cell(m['decode_ms'], 2)} | {cell(m['inference_ms'], 2)} | "
                     f"{cell(m['images_per_core_second'])} | {cell(m['inference_share'], 2)} |")
    lines += ["", "## Hardware and software", "", hardware_markdown(doc["hardware"]), ""]
    return "\n".join(lines)


def summary(doc: dict[str, Any]) -> str:
    """Ray / local images/s for each model, one line each."""
    return "\n".join(f"{model}: Ray / local {num(m['ray_over_local']['median'], 2)} "
                     f"({num(m['ray_images_per_second']['median'])} against {num(m['local_images_per_second']['median'])}"
                     " images/s)" for model, m in doc["models"].items())
