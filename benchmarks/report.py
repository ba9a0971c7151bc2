"""Writing a benchmark: the Markdown tables (Ultralytics' benchmark-table style), the JSON document, the PNG."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from emotion.train import atomic

from .hardware import hardware_markdown


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars and arrays as Python values, NaN and infinities as null."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if np is not None:
        if isinstance(value, np.ndarray):
            return jsonable(value.tolist())
        if isinstance(value, np.generic):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return os.fspath(value)
    return value


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(jsonable(document), indent=2, allow_nan=False) + "\n"


def num(value: Any, digits: int = 1, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if pct:
        return f"{value:.{digits}f}"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def med(summary: Any) -> float | None:
    return summary.get("median") if isinstance(summary, dict) else None


def spread(summary: Any, digits: int = 1) -> str:
    if not isinstance(summary, dict) or summary.get("median") is None:
        return "–"
    return f"{num(summary['min'], digits)}–{num(summary['max'], digits)}"


def status_cell(row: dict[str, Any]) -> str:
    gate = row.get("gate") or {}
    if gate.get("passed") is False:
        return "❌ " + "; ".join(gate.get("failures") or [row["status"]])
    if row["status"] == "ok":
        return "✅"
    if row["status"].startswith(("skipped", "unavailable")):
        return "➖ " + row["status"]
    return "❌ " + row["status"]


def main_table(document: dict[str, Any]) -> str:
    head = ("| Format | Status | Size (MB) | Accuracy | Balanced acc. | ROC AUC | max \\|dP\\| | Agreement % "
            "| Latency p50 (ms) | p90 (ms) | p99 (ms) | Throughput (img/s) | End-to-end (img/s) | Cold start (s) "
            "| Peak RSS (MB) |")
    lines = [head, "|" + "---|" * 15]
    for row in document["formats"]:
        lat = row.get("latency_ms") or {}
        lines.append("| " + " | ".join([
            f"`{row['format']}`",
            status_cell(row).replace("|", "\\|"),
            num(row.get("size_mb"), 2),
            num(row.get("accuracy"), 4),
            num(row.get("balanced_accuracy"), 4),
            num(row.get("roc_auc"), 4),
            num(row.get("max_abs_dp"), 6) if row["format"] != "keras" else "0 (reference)",
            num(row.get("label_agreement"), 1, pct=True),
            num(med(lat.get("p50")), 2),
            num(med(lat.get("p90")), 2),
            num(med(lat.get("p99")), 2),
            num(med(row.get("throughput")), 1),
            num(med(row.get("e2e")), 1),
            num(med(row.get("cold_start_s")), 2),
            num(med(row.get("peak_rss_mb")), 0),
        ]) + " |")
    return "\n".join(lines)


def spread_table(document: dict[str, Any]) -> str:
    lines = ["| Format | Latency p50 (ms) | Throughput (img/s) | End-to-end (img/s) | Cold start (s) | Peak RSS (MB) "
             "| Latency samples | Errors |",
             "|" + "---|" * 8]
    for row in document["formats"]:
        if "latency_ms" not in row:
            continue
        lines.append("| " + " | ".join([
            f"`{row['format']}`",
            spread(row["latency_ms"].get("p50"), 2),
            spread(row.get("throughput"), 1),
            spread(row.get("e2e"), 1),
            spread(row.get("cold_start_s"), 2),
            spread(row.get("peak_rss_mb"), 0),
            str(row.get("latency_iterations", "–")),
            ("; ".join(row.get("errors") or []) or "none").replace("|", "\\|"),
        ]) + " |")
    return "\n".join(lines)


def ceiling_table(document: dict[str, Any]) -> str:
    lines = ["| Format | Our latency p50 (ms) | benchmark_app median (ms) | Latency ratio (ours / ceiling) "
             "| Our throughput (img/s) | benchmark_app (img/s) | Throughput ratio (ours / ceiling) |",
             "|" + "---|" * 7]
    found = False
    for row in document["formats"]:
        ba = row.get("benchmark_app")
        if not ba:
            continue
        found = True
        ratios = row.get("ratios") or {}
        lines.append("| " + " | ".join([
            f"`{row['format']}`",
            num(med(row["latency_ms"].get("p50")), 2),
            f"{num(med(ba['latency_median_ms']), 2)} ({spread(ba['latency_median_ms'], 2)})",
            f"{num(ratios.get('latency'), 2)} ({spread(ratios.get('latency_per_round'), 2)})",
            num(med(row.get("throughput")), 1),
            f"{num(med(ba['throughput']), 1)} ({spread(ba['throughput'], 1)})",
            f"{num(ratios.get('throughput'), 2)} ({spread(ratios.get('throughput_per_round'), 2)})",
        ]) + " |")
    return "\n".join(lines) if found else ""


def cold_table(document: dict[str, Any]) -> str:
    lines = ["| Format | Import (s) | Load (s) | First result (s) | Spawn to result (s) | Peak RSS (MB) |",
             "|" + "---|" * 6]
    found = False
    for row in document["formats"]:
        parts = row.get("cold_start_parts_s")
        if not parts:
            continue
        found = True
        lines.append("| " + " | ".join([
            f"`{row['format']}`", num(parts.get("import_seconds"), 2), num(parts.get("load_seconds"), 2),
            num(parts.get("first_result_seconds"), 3), num(med(row.get("cold_start_s")), 2),
            num(med(row.get("peak_rss_mb")), 0),
        ]) + " |")
    return "\n".join(lines) if found else ""


def gate_table(document: dict[str, Any]) -> str:
    lines = ["| Format | Gate | \\|dAUC\\| | Label agreement % | max \\|dP\\| | Limits | Result |", "|" + "---|" * 7]
    for row in document["formats"]:
        gate = row.get("gate") or {}
        limits = gate.get("limits") or {}
        if not limits:
            continue
        passed = gate.get("passed")
        result = "pass" if passed else ("FAIL: " + "; ".join(gate.get("failures", [])) if passed is False
                                        else "not evaluated: " + row["status"])
        limit_text = ", ".join(
            f"\\|dAUC\\| ≤ {limits['d_auc']:g}" if k == "d_auc" else
            f"agreement ≥ {v:g}%" if k == "label_agreement" else f"\\|dP\\| ≤ {v:g}"
            for k, v in limits.items())
        lines.append("| " + " | ".join([
            f"`{row['format']}`", gate.get("class", ""), num(row.get("d_auc"), 5),
            num(row.get("label_agreement"), 1, pct=True), num(row.get("max_abs_dp"), 6), limit_text,
            result.replace("|", "\\|"),
        ]) + " |")
    return "\n".join(lines)


def markdown(document: dict[str, Any], plot_name: str | None = None, title: str | None = None) -> str:
    images = document["images"]
    settings = document["settings"]
    gate = document["gate"]
    out = [f"# {title or 'emotion-bench: ' + Path(document['run']).name}", ""]
    out.append(f"Model `{document['model']['name']}` ({document['model']['architecture']}, input "
               f"{images['input_size'][0]}x{images['input_size'][1]}) from `{document['run']}`; "
               f"export `{document['export'] or 'temporary (exported for this run)'}`.")
    out.append(f"Images: {images['source']}: {images['count']} ({images['positives']} {images['labels'][1]}, "
               f"{images['negatives']} {images['labels'][0]}), decision threshold {images['threshold']:g}; every "
               "format is fed the same uint8 arrays from the shared preprocessing.")
    out.append(f"Timings: medians of {settings['repeats']} rounds, formats taken in turn (round-robin, the "
               f"first format rotating each round); each latency/throughput measurement runs "
               f"{settings['seconds']:g} s after {settings['warmup']} warm-up inferences; end-to-end runs over "
               f"{settings['e2e_images']} files; benchmark_app runs {settings['benchmark_app_seconds']:g} s. "
               f"Measured {document['started']}, {document['seconds']:.0f} s in all.")
    if document.get("command"):
        out += ["", f"Command: `{document['command']}`"]
    out += ["", "## Results", "", main_table(document), ""]
    out.append("Columns: size of the model file(s); accuracy, balanced accuracy and ROC AUC on the images above "
               "(`emotion.train.metrics`); max |dP| and label agreement against Keras; latency of one image "
               "(batch 1, synchronous, `EmotionClassifier.predict` on a uint8 array with the LATENCY hint; Keras: "
               "one image through the model, see below); throughput of preprocessed images (asynchronous `submit`, "
               "THROUGHPUT hint, OpenVINO's optimal number of requests; Keras: batches of 32); end-to-end "
               "images/s from the files including decode and resize (`predict_many`; Keras: `load_images` + "
               "the model in batches of 32); cold start: a fresh process imports, loads the model (no OpenVINO model "
               "cache) and classifies one image file, from spawn to result; peak RSS of that process.")
    keras = next((r for r in document["formats"] if r["format"] == "keras"), None)
    if keras and keras.get("other_calls_ms"):
        calls = keras["other_calls_ms"]
        out += ["", f"Keras is timed through `tf.function(model(x, training=False))`, its fastest ordinary path; "
                    f"one image through an eager `model(x)` takes {num(calls.get('eager_call_ms'), 0)} ms here and "
                    f"through `model.predict` {num(calls.get('model_predict_ms'), 0)} ms (medians of 5), which is "
                    "what a plain Keras script pays per image."]
    if plot_name:
        out += ["", f"![latency p50 against ROC AUC]({plot_name})"]
    out += ["", "## Parity gate", "",
            f"Result: **{'PASS' if gate['passed'] else 'FAIL'}**" + ("" if gate["enabled"] else " (gate disabled)"),
            "", gate_table(document)]
    ceiling = ceiling_table(document)
    if ceiling:
        out += ["", "## Against the ceiling: OpenVINO benchmark_app on the same IR and hints", "", ceiling, "",
                "benchmark_app runs in inference-only mode on random uint8 input of the same shape, with "
                "`-hint latency|throughput -infer_precision f32|bf16 -shape [1,H,W,3]`; its median latency and "
                "throughput are read from its JSON statistics report. Each of our measurements runs right before "
                "its benchmark_app counterpart; the ratios are the medians (min–max) of those per-round pairs. "
                "Latency ratio above 1: we are slower; throughput ratio below 1: we are slower."]
    cold = cold_table(document)
    if cold:
        out += ["", "## Cold start, by part (medians)", "", cold]
    out += ["", "## Spread over rounds (min–max)", "", spread_table(document)]
    out += ["", "## Hardware and software", "", hardware_markdown(document["hardware"])]
    if document.get("notes"):
        out += ["", "## Notes", ""] + [f"- {note}" for note in document["notes"]]
    return "\n".join(out) + "\n"


def write(document: dict[str, Any], out_dir: Path, name: str, title: str | None = None) -> dict[str, Path]:
    """``out_dir/name.md``, ``name.json`` and ``name.png`` (each written atomically); returns their paths."""
    from .plot import latency_auc_plot

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json", "plot": out_dir / f"{name}.png"}
    plotted = latency_auc_plot(document, paths["plot"])
    if not plotted:
        paths.pop("plot")
    atomic.write_text(paths["json"], to_json(document))
    atomic.write_text(paths["markdown"], markdown(document, paths["plot"].name if plotted else None, title))
    return paths
