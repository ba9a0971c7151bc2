"""Writing results: one writer and one page layout for every ``emotion-bench`` command, and the format benchmark's
Markdown.

Every command produces a JSON-ready document and a Markdown rendering of it; :func:`write` puts both (and a
picture, when there is one) beside each other, each file complete or absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from emotion.export.parity import Check, table as gate_table
from emotion.train import atomic


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars and arrays as Python values, NaN and infinities as null, paths as text."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return os.fspath(value) if isinstance(value, Path) else value


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(jsonable(document), indent=2, allow_nan=False) + "\n"


def write(document: dict[str, Any], stem: Path, markdown: Callable[..., str],
          plot: Callable[[dict[str, Any], Path], bool] | None = None) -> list[Path]:
    """``stem.json``, ``stem.md`` and, when ``plot`` draws one, ``stem.png``; the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".json", ".md", ".png")]  # a dotted stem kept whole
    drawn = plot is not None and plot(document, paths[2])
    atomic.write_text(paths[0], to_json(document))
    atomic.write_text(paths[1], markdown(document, paths[2].name) if drawn else markdown(document))
    return paths if drawn else paths[:2]


def page(title: str, document: dict[str, Any], sections: list[str], notes: list[str] = ()) -> str:
    """A report as every command writes it: title, command line, machine line, ``sections``, the machine and
    software in full, then ``notes``."""
    hardware = document["hardware"]
    machine = (f"Machine: {hardware['cpu']}, {hardware['usable_cores']} of {hardware['cores']} cores usable, "
               f"Python {hardware['python']}, OpenVINO {hardware['versions'].get('openvino', '–')}.")
    return "\n".join([f"# {title}", "", f"Command: `{document['command']}`", "", machine, "", *sections, "",
                      "## Hardware and software", "", hardware_markdown(hardware)]
                     + (["", "## Notes", "", *(f"- {note}" for note in notes)] if notes else [])) + "\n"


def hardware_markdown(report: dict[str, Any]) -> str:
    ov_cpu = report["openvino_cpu"]
    rows = [["CPU", f"{report['cpu']} ({report['cores']} logical cores, {report['usable_cores']} usable)"],
            ["ISA (/proc/cpuinfo)", ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in report["isa"].items())],
            ["OpenVINO CPU capabilities", ", ".join(ov_cpu.get("optimization_capabilities", []))
             or ov_cpu.get("error", "?")],
            ["Memory", f"{report['memory_gib']} GiB"], ["OS", report["os"]], ["Python", report["python"]],
            ["Libraries", ", ".join(f"{name} {v}" for name, v in report["versions"].items() if name != "python")]]
    return row_table(["", ""], rows + [[key, str(value)] for key, value in report["hints"].items()])


def num(value: Any, digits: int = 1) -> str:
    """A figure for a table: a dash when missing, scientific notation when too small for ``digits``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def med(summary: Any) -> float | None:
    return summary.get("median") if isinstance(summary, dict) else None


def spread(summary: Any, digits: int = 1) -> str:
    if med(summary) is None:
        return "–"
    return f"{num(summary['min'], digits)}–{num(summary['max'], digits)}"


def mm(summary: Any, digits: int = 1) -> str:
    """``median (min–max)`` of a :func:`~.timing.summarize` result."""
    return f"{num(med(summary), digits)} ({spread(summary, digits)})"


def row_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, ``|`` inside cells escaped."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


# -- the format benchmark ---------------------------------------------------------------------------------------
def _status(row: dict[str, Any]) -> str:
    check = row.get("check") or {}
    if check.get("verdict") == "fail":
        return "❌ " + "; ".join(check["problems"])
    return {"ok": "✅", "skipped": "➖ ", "unavailable": "➖ "}.get(row["status"], "❌ ") + (row["reason"] or "")


def main_table(document: dict[str, Any]) -> str:
    rows = []
    for row in document["formats"]:
        parity, t = (row.get("check") or {}).get("parity") or {}, row["timings"]
        latency = t.get("latency_ms") or {}
        rows.append([f"`{row['format']}`", _status(row), num(row["size_mb"], 2), num(parity.get("accuracy"), 4),
                     num(parity.get("balanced_accuracy"), 4), num(parity.get("roc_auc"), 4),
                     "0 (reference)" if row["format"] == "keras" else num(parity.get("max_abs_dp"), 6),
                     num(parity.get("label_agreement"), 1),
                     *(num(med(latency.get(q)), 2) for q in ("p50", "p90", "p99")),
                     num(med(t.get("throughput"))), num(med(t.get("e2e"))), num(med(t.get("cold_start_s")), 2),
                     num(med(t.get("peak_rss_mb")), 0)])
    return row_table(["Format", "Status", "Size (MB)", "Accuracy", "Balanced acc.", "ROC AUC", "max |dP|",
                      "Agreement %", "Latency p50 (ms)", "p90 (ms)", "p99 (ms)", "Throughput (img/s)",
                      "End-to-end (img/s)", "Cold start (s)", "Peak RSS (MB)"], rows)


def _timed(document: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"`{row['format']}`", row["timings"]) for row in document["formats"] if row["timings"].get(key)]


def ceiling_table(document: dict[str, Any]) -> str:
    rows = [[name, num(med(t["latency_ms"]["p50"]), 2), mm(t["benchmark_app"]["latency_median_ms"], 2),
             f"{num(t['ratios']['latency'], 2)} ({spread(t['ratios']['latency_per_round'], 2)})",
             num(med(t["throughput"])), mm(t["benchmark_app"]["throughput"]),
             f"{num(t['ratios']['throughput'], 2)} ({spread(t['ratios']['throughput_per_round'], 2)})"]
            for name, t in _timed(document, "benchmark_app")]
    return row_table(["Format", "Our latency p50 (ms)", "benchmark_app median (ms)", "Latency ratio (ours / ceiling)",
                      "Our throughput (img/s)", "benchmark_app (img/s)", "Throughput ratio (ours / ceiling)"],
                     rows) if rows else ""


def cold_table(rows: list[tuple[str, dict[str, Any]]], errors: bool = False) -> str:
    """Cold starts by part: ``(name, coldstart.summarize(...))`` pairs, one row each."""
    return row_table(
        ["Path", "Spawn to result (s)", "Import (s)", "Load (s)", "First result (s)", "Peak RSS (MB)"]
        + ["Errors"] * errors,
        [[name, mm(c["cold_start_s"], 2), *(num(c["cold_start_parts_s"][part], d) for part, d in (
            ("import_seconds", 2), ("load_seconds", 3), ("first_result_seconds", 3))), num(med(c["peak_rss_mb"]), 0)]
         + ["; ".join(c.get("cold_start_errors", [])) or "none"] * errors for name, c in rows])


def spread_table(document: dict[str, Any]) -> str:
    rows = [[f"`{row['format']}`", spread(t["latency_ms"]["p50"], 2), spread(t["throughput"]), spread(t["e2e"]),
             spread(t.get("cold_start_s"), 2), spread(t.get("peak_rss_mb"), 0), str(t["latency_iterations"]),
             "; ".join(row["errors"]) or "none"]
            for row in document["formats"] for t in [row["timings"]] if t.get("latency_ms")]
    return row_table(["Format", "Latency p50 (ms)", "Throughput (img/s)", "End-to-end (img/s)", "Cold start (s)",
                      "Peak RSS (MB)", "Latency samples", "Errors"], rows)


def markdown(document: dict[str, Any], plot_name: str | None = None) -> str:
    """The format benchmark's report: results, parity gate, ceiling, cold start, spread, machine."""
    images, settings, gate = document["images"], document["settings"], document["gate"]
    out = [f"Model `{document['model']['name']}` ({document['model']['architecture']}, input "
           f"{images['input_size'][0]}x{images['input_size'][1]}) from `{document['run']}`; export "
           f"`{document['export'] or 'temporary (exported for this run)'}`.",
           f"Images: {images['source']}: {images['count']} ({images['positives']} {images['labels'][1]}, "
           f"{images['negatives']} {images['labels'][0]}), decision threshold {images['threshold']:g}; every format "
           "is fed the same uint8 arrays from the shared preprocessing.",
           f"Timings: medians of {settings['repeats']} rounds, formats taken in turn (the first format rotating "
           f"each round); each latency/throughput measurement runs {settings['seconds']:g} s after "
           f"{settings['warmup']} warm-up inferences; end-to-end runs over {settings['e2e_images']} files; "
           f"benchmark_app runs {settings['benchmark_app_seconds']:g} s. Measured {document['started']}, "
           f"{document['seconds']:.0f} s in all.", "", "## Results", "", main_table(document), "",
           "Columns: size of the model file(s); accuracy, balanced accuracy and ROC AUC on the images above; max |dP| "
           "and label agreement against Keras; latency of one image (batch 1, synchronous, `EmotionClassifier.predict` "
           "on a uint8 array with the LATENCY hint; Keras: one image through the model); throughput of preprocessed "
           "images (asynchronous `submit`, THROUGHPUT hint, one synchronous request per worker thread of the "
           "classifier; Keras: batches of 32); end-to-end images/s from the files including decode and resize "
           "(`predict_many`; Keras: `load_images` + the model in batches of 32); cold start: a fresh process imports, "
           "loads the model (no OpenVINO model cache) and classifies one image file, from spawn to result; peak RSS "
           "of that process."]
    calls = next((r["timings"].get("other_calls_ms") for r in document["formats"] if r["format"] == "keras"), None)
    if calls:
        out += ["", f"Keras is timed through `tf.function(model(x, training=False))`, its fastest ordinary path; one "
                f"image through an eager `model(x)` takes {num(calls['eager_call_ms'], 0)} ms here and through "
                f"`model.predict` {num(calls['model_predict_ms'], 0)} ms (medians of 5), what a plain Keras script "
                "pays per image."]
    if plot_name:
        out += ["", f"![latency p50 against ROC AUC]({plot_name})"]
    checks = [Check.from_dict(row["check"]) for row in document["formats"] if row["check"]]
    out += ["", "## Parity gate", "", f"Result: **{'PASS' if gate['passed'] else 'FAIL'}**", "", gate_table(checks),
            "", "Agreement: percent of images with Keras' label; in brackets, images whose label flips only because "
            "Keras' P lies within the FP32 |dP| limit of the threshold (ties: the gate counts them as agreeing)."]
    if ceiling_table(document):
        out += ["", "## Against the ceiling: OpenVINO benchmark_app on the same IR and hints", "",
                ceiling_table(document), "", "benchmark_app runs in inference-only mode on random uint8 input of the "
                "same shape, with `-hint latency|throughput -infer_precision f32|bf16 -shape [1,H,W,3]`; its median "
                "latency is read from its printed output (to 0.01 µs below 1 ms), its throughput from its JSON "
                "statistics report. Each of our measurements runs right before its benchmark_app counterpart; the "
                "ratios are the medians (min–max) of those per-round pairs. Latency ratio above 1: we are slower; "
                "throughput ratio below 1: we are slower."]
    cold = _timed(document, "cold_start_parts_s")
    if cold:
        out += ["", "## Cold start, by part (medians)", "", cold_table(cold)]
    out += ["", "## Spread over rounds (min–max)", "", spread_table(document)]
    return page(f"emotion-bench: {Path(document['run']).name}", document, out, document["notes"])
