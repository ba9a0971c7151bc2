"""The benchmark's picture: latency p50 against ROC AUC, one labelled point per format."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from emotion.train import atomic

from .report import med

# labels of points at the same AUC (FP32 formats agree exactly) alternate above and below, staggered
_LABEL_OFFSETS = ((0, 9), (0, -16), (0, 22), (0, -29), (0, 35), (0, -42))


def latency_auc_plot(document: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False (nothing written) when no format has both figures or matplotlib is missing."""
    points = [(row["format"], row["timings"]["latency_ms"]["p50"], row["check"]["parity"]["roc_auc"])
              for row in document["formats"] if med((row["timings"].get("latency_ms") or {}).get("p50")) is not None
              and ((row.get("check") or {}).get("parity") or {}).get("roc_auc") is not None]
    if not points:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, p50, auc) in enumerate(points):
        colour = colours[i % len(colours)]
        ax.errorbar([p50["median"]], [auc], xerr=[[p50["median"] - p50["min"]], [p50["max"] - p50["median"]]],
                    fmt="o", color=colour, capsize=3, markersize=7)
        ax.annotate(name, (p50["median"], auc), textcoords="offset points", fontsize=9, color=colour, ha="center",
                    xytext=_LABEL_OFFSETS[i % len(_LABEL_OFFSETS)])
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("latency p50, batch 1 (ms, log scale; bars: min–max over rounds)")
    ax.set_ylabel("ROC AUC (the benchmark's labelled images)")
    ax.set_title(f"emotion-bench: {document['model']['name']} ({Path(document['run']).name})", fontsize=10)
    aucs = [auc for _, _, auc in points]
    pad = max(0.004, (max(aucs) - min(aucs)) * 0.5)
    ax.set_ylim(min(aucs) - pad, max(aucs) + pad)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())
    return True
