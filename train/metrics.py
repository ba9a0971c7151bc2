"""Classification metrics, computed one way for training, evaluation, export checks and benchmarks.

Everything comes from scikit-learn; this module only fixes which figures we report and how a decision
threshold is chosen.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn import metrics as skm

from emotion.runtime.metadata import DEFAULT_LABELS


def roc_auc(y_true: np.ndarray, probability: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present (AUC is undefined then)."""
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_true, probability))


def classification_metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5,
                           labels: Sequence[str] = DEFAULT_LABELS) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, confusion matrix and the per-class report at ``threshold``."""
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    y_pred = (probability >= threshold).astype(int)
    counts = np.bincount(y_true, minlength=2)
    majority = int(np.argmax(counts))
    return {
        "n": int(len(y_true)), "threshold": float(threshold), "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)) if counts.all() else float("nan"),
        "roc_auc": roc_auc(y_true, probability),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        "classification_report": skm.classification_report(y_true, y_pred, labels=[0, 1], target_names=list(labels),
                                                           output_dict=True, zero_division=0),
        "majority_class": labels[majority], "majority_accuracy": float(counts[majority] / max(1, len(y_true))),
    }


def report_text(y_true: np.ndarray, probability: np.ndarray, threshold: float,
                labels: Sequence[str] = DEFAULT_LABELS) -> str:
    y_pred = (np.asarray(probability).reshape(-1) >= threshold).astype(int)
    return skm.classification_report(y_true, y_pred, labels=[0, 1], target_names=list(labels), digits=3,
                                     zero_division=0)


def best_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The threshold that maximises balanced accuracy (Youden's J on the ROC curve), for imbalanced data.

    Ties go to the threshold nearest 0.5. The threshold lies midway between the lowest score it calls Positive
    and the next lower score, not on a score: a threshold equal to a validation image's own score would flip that
    image's label on the smallest numerical change (an exported model's 1e-6 is enough). Falls back to 0.5 when
    only one class is present.
    """
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return 0.5
    fpr, tpr, thresholds = skm.roc_curve(y_true, probability, drop_intermediate=False)
    finite = np.flatnonzero(np.isfinite(thresholds))
    j = (tpr - fpr)[finite]
    best = finite[j >= j.max() - 1e-12]
    choice = best[np.argmin(np.abs(thresholds[best] - 0.5))]
    lower = thresholds[choice + 1] if choice + 1 < len(thresholds) else 0.0  # thresholds decrease
    return float(np.clip((thresholds[choice] + lower) / 2.0, 1e-6, 1 - 1e-6))


def summary_line(m: dict) -> str:
    return (
        f"AUC {m['roc_auc']:.3f}  accuracy {m['accuracy']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}  "
        f"(majority baseline {m['majority_accuracy']:.3f}, threshold {m['threshold']:.3f}, n={m['n']})"
    )
