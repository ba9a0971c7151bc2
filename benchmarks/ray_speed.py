"""``emotion-bench ray-speed``: folder inference through Ray Data against local ``emotion-infer``.

Both commands run as a user runs them, each in a fresh process, on the same folder, the order alternating
each round; beside them, each model's cost per image on one core (decoding, then OpenVINO on one thread, as an
actor's thread runs it), which is what sizing a cluster needs.
"""

from __future__ import annotations

import argparse
import itertools
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

from emotion.runtime import EmotionClassifier, discover, resolve_model
from emotion.runtime.console import UsageError, one_line, positive_int

from .report import med, mm, num, page, row_table
from .timing import interleave, latency_loop, series
from .workers import make_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DATA", help="folder of photos, repeated up to --files")
    parser.add_argument("--models", nargs="+", required=True, metavar="EXPORT", help="export folders to compare")
    parser.add_argument("--files", type=positive_int, default=1344, metavar="N",
                        help="files in the folder run: DATA's images repeated by symbolic links (default %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=3, metavar="N",
                        help="interleaved rounds (default %(default)s)")


def infer(folder: Path, model: str, ray: bool) -> dict[str, Any]:
    """One ``emotion-infer`` run in a fresh process: wall seconds, the summary's images/s, the results.

    Raises:
        UsageError: it exited with neither 0 (done) nor 1 (some files failed, the results complete).
    """
    command = [sys.executable, "-m", "emotion.runtime.cli", str(folder), "--model", model, "--json",
               *(["--ray"] if ray else [])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise UsageError(f"{shlex.join(command)} exited {result.returncode}: "
                         f"{one_line(result.stderr.decode(errors='replace') or 'no message')}")
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
        # the first inferences allocate: 10 untimed
        times = latency_loop(lambda i: classifier.predict(arrays[i % len(arrays)]), 0, warmup=10,
                             min_iterations=len(arrays), max_iterations=len(arrays))
    return {"decode_ms": 1000 * decode, "inference_ms": 1000 * sum(times) / len(times)}


def _model_round(folder: Path, files: list[Path], model: str, ray_first: bool) -> dict[str, Any]:
    """Local and Ray on ``folder`` one after the other, then the model's costs on one core."""
    done = {ray: infer(folder, model, ray) for ray in ((True, False) if ray_first else (False, True))}
    costs = core_costs(files[:200], model)
    total = costs["decode_ms"] + costs["inference_ms"]
    return {"local": done[False], "ray": done[True], "costs": costs,
            "agreement": agreement(done[True].pop("results"), done[False].pop("results")),
            "ray_over_local": done[True]["images_per_second"] / done[False]["images_per_second"],
            "images_per_core_second": 1000 / total, "inference_share": costs["inference_ms"] / total}


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Both ways on every model, interleaved; the document.

    Raises:
        UsageError, ModelLoadError: no images in ``--data``, a ``--models`` entry that is no model.
    """
    for model in args.models:
        resolve_model(model)
    files = [c.path for c in discover([args.data]) if c.error is None]
    if not files:
        raise UsageError(f"no images in {args.data}")
    load, turns = os.getloadavg(), {m: itertools.count() for m in args.models}
    with tempfile.TemporaryDirectory(prefix="ray-speed-") as tmp:
        folder = make_folder(files, args.files, Path(tmp) / "photos")
        rounds = interleave({m: lambda m=m: _model_round(folder, files, m, next(turns[m]) % 2 == 1)
                             for m in args.models}, args.rounds, progress)
    models = {}
    for model in args.models:
        r = [done[model] for done in rounds]
        models[model] = {
            "input_size": r[0]["ray"]["model"]["input_size"], "ray": r[0]["ray"]["model"]["ray"],
            **series(r, {f"{way}_{figure}": (way, figure) for way in ("local", "ray")
                         for figure in ("images_per_second", "wall_s")}),
            **series(r, {"ray_over_local": ("ray_over_local", None), "decode_ms": ("costs", "decode_ms"),
                         "inference_ms": ("costs", "inference_ms"),
                         "images_per_core_second": ("images_per_core_second", None),
                         "inference_share": ("inference_share", None)}),
            "agreement": {"same_paths_labels_reasons": all(x["agreement"]["same_paths_labels_reasons"] for x in r),
                          "max_abs_dp": max(x["agreement"]["max_abs_dp"] for x in r)}}
    return {"load_average_at_start": load, "load_average_at_end": os.getloadavg(),
            "data": str(args.data), "distinct_images": len(files), "files": args.files, "rounds": args.rounds,
            "models": models, "ray_version": metadata.version("ray")}


def markdown(doc: dict[str, Any]) -> str:
    throughput = [[f"`{model}`", f"{m['input_size'][0]}x{m['input_size'][1]}", mm(m["local_images_per_second"]),
                   mm(m["ray_images_per_second"]), f"**{mm(m['ray_over_local'], 2)}**", mm(m["local_wall_s"]),
                   mm(m["ray_wall_s"]), f"{m['ray']['actors']} actor x {m['ray']['actor_threads']} thread, "
                   f"{m['ray']['cpus']:g} CPUs", f"{'yes' if m['agreement']['same_paths_labels_reasons'] else 'NO'}, "
                   f"max dP {m['agreement']['max_abs_dp']:.1e}"] for model, m in doc["models"].items()]
    costs = [[f"`{model}`", mm(m["decode_ms"], 2), mm(m["inference_ms"], 2), mm(m["images_per_core_second"]),
              mm(m["inference_share"], 2)] for model, m in doc["models"].items()]
    return page("Folder inference through Ray Data against local emotion-infer (issue 15)", doc, [
        f"Measured {doc['started']} ({doc['seconds']:.0f} s) on **{doc['hardware']['cpu']}**, "
        f"{doc['hardware']['usable_cores']} cores (load average {doc['load_average_at_start'][0]:.1f} at the start, "
        f"{doc['load_average_at_end'][0]:.1f} at the end; the runs themselves load the cores). "
        f"Folder of {doc['files']} files ({doc['distinct_images']} distinct images of `{doc['data']}` repeated through "
        f"symbolic links); {doc['rounds']} rounds, local and Ray side by side in each, the order alternating. "
        "Medians, (min–max) beside them. On cores shared with other jobs, read the ratio more than the rates, and a "
        "Ray / local ratio near or above 1 as a tie (Ray's several processes can take a larger part of shared cores "
        "than one process).", "",
        "## Throughput: the engine's overhead", "",
        "images/s is the summary's (first to last answer; for Ray it includes the actors' start); wall is the whole "
        f"command (Ray's start included). Ray {doc['ray_version']} here: a local instance on this machine, the pool "
        "sized by default.", "",
        row_table(["model", "input", "local images/s", "Ray images/s", "Ray / local", "local wall s", "Ray wall s",
                   "Ray pool", "same answers"], throughput),
        "", "## Cost per image on one core: sizing a cluster", "",
        "Decoding is the shared preprocessing of a 500x400 JPEG on one thread; inference is OpenVINO with one "
        "inference thread, as each thread of an actor runs it. A core gives 1000 / (decode + inference) images/s at "
        "best; the inference share is the part of the cores worth giving to the actors.", "",
        row_table(["model", "decode ms", "inference ms", "images/s per core", "inference share"], costs)])


def summary(doc: dict[str, Any]) -> str:
    """Ray / local images/s for each model, one line each."""
    return "\n".join(f"{model}: Ray / local {num(med(m['ray_over_local']), 2)} ({num(med(m['ray_images_per_second']))} "
                     f"against {num(med(m['local_images_per_second']))} images/s)" for model, m in doc["models"].items())
