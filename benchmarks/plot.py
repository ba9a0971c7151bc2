"""The benchmark's picture: latency p50 against ROC AUC, one labelled point per format."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from emotion.train import atomic


_LABEL_OFFSETS = ((0, 9), (0, -16), (0, 22), (0, -29), (0, 35), (0, -42))


def latency_auc_plot(document: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False (nothing written) when no format has both figures or matplotlib is missing."""
    points = []
    for row in document.get("formats", []):
        p50 = (row["timings"].get("latency_ms") or {}).get("p50") or {}
        auc = ((row.get("check") or {}).get("parity") or {}).get("roc_auc")
        if p50.get("median") is None or auc is None or not math.isfinite(p50["median"]) or not math.isfinite(auc):
            continue
        points.append((row["format"], p50["median"], auc, (p50.get("min"), p50.get("max"))))
    if not points:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, latency, auc, (low, high)) in enumerate(points):
        colour = colours[i % len(colours)]
        xerr = [[latency - low], [high - latency]] if low is not None and high is not None else None
        ax.errorbar([latency], [auc], xerr=xerr, fmt="o", color=colour, capsize=3, markersize=7)
        # labels of points at the same AUC (FP32 formats agree exactly) alternate above and below, staggered
        ax.annotate(name, (latency, auc), textcoords="offset points", xytext=_LABEL_OFFSETS[i % len(_LABEL_OFFSETS)],
                    fontsize=9, color=colour, ha="center")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("latency p50, batch 1 (ms, log scale; bars: min–max over rounds)")
    ax.set_ylabel("ROC AUC (validation images)")
    title = f"{document.get('model', {}).get('name', 'model')} ({Path(document.get('run', '')).name})"
    ax.set_title(f"emotion-bench: {title}", fontsize=10)
    aucs = [p[2] for p in points]
    pad = max(0.004, (max(aucs) - min(aucs)) * 0.5)
    ax.set_ylim(min(aucs) - pad, max(aucs) + pad)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())
    return True
