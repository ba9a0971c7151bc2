"""The seed's evaluation plots, as PNG files: training curves, ROC curve, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from emotion.runtime.atomic import atomic_open  # noqa: E402
from emotion.runtime.metadata import DEFAULT_LABELS  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss, accuracy and AUC per epoch, training beside validation."""
    keys = [k for k in ("loss", "accuracy", "auc") if k in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6))
    for ax, key in zip(np.atleast_1d(axes), keys):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set(xlabel="epoch", title=key.replace("auc", "ROC AUC"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def roc_curve(y_true: np.ndarray, probability: np.ndarray, path: Path, name: str = "model") -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    RocCurveDisplay.from_predictions(y_true, probability, name=name, ax=ax, plot_chance_level=True)
    ax.set_title("ROC curve (validation)")
    return _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], path: Path, labels: Sequence[str] = DEFAULT_LABELS) -> Path:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(ax=ax, cmap="Blues", colorbar=False)
    ax.set_title("Confusion matrix (validation)")
    return _save(fig, path)
