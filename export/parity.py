"""The parity gate: each format's P(Positive) against the Keras model's on the same images, within limits.

One gate serves ``emotion-export`` (FP32 only, :data:`EXPORT_LIMITS`: the exported files must be the model
that was trained) and ``emotion-bench`` (every format, :data:`DEFAULT_LIMITS`, configurable).

Label agreement is what a user sees change, but a probability within the |dP| tolerance of the decision
threshold can land on either side of it through float rounding alone. So the gate counts a label that differs
only on such an image as a tie, not a disagreement; the plain agreement over all images is reported beside it.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    MEASURED = "measured"  # no limits apply: the reference itself, or a row the command reports only
    SKIPPED = "skipped"  # the format cannot run here (e.g. bf16 on a CPU without it)


@dataclass(frozen=True)
class Limits:
    """The largest difference from Keras a format may show; None means not checked."""

    max_abs_dp: float | None = None  # largest |P(format) - P(Keras)|
    min_agreement: float | None = None  # percent of images with Keras' label, ties at the threshold excepted
    max_d_auc: float | None = None  # |ROC AUC(format) - ROC AUC(Keras)|

    def describe(self) -> str:
        parts = [(self.max_abs_dp, "|dP| ≤ {:g}"), (self.min_agreement, "agreement ≥ {:g}%"),
                 (self.max_d_auc, "|dAUC| ≤ {:g}")]
        return ", ".join(text.format(value) for value, text in parts if value is not None) or "none"


FP32_LIMITS = Limits(max_abs_dp=1e-4, min_agreement=100.0, max_d_auc=1e-4)
DEFAULT_LIMITS = {"fp32": FP32_LIMITS, "bf16": Limits(max_d_auc=0.005), "fp16": Limits(max_d_auc=0.005),
                  "int8": Limits(max_d_auc=0.01)}
EXPORT_LIMITS = {"fp32": FP32_LIMITS}  # the other variants are measured, never refused


@dataclass(frozen=True)
class Parity:
    """One format's predictions compared with Keras' (and with the labels, when known)."""

    images: int
    max_abs_dp: float
    label_agreement: float  # percent of all images
    ties: int  # images labelled differently whose Keras P lies within the tolerance of the threshold
    roc_auc: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    d_auc: float | None = None
    non_finite: int = 0  # outputs that are NaN or infinite: a broken model, whatever the other figures say

    @property
    def decided_agreement(self) -> float:
        """Percent of images with Keras' label, the ties counted as agreeing."""
        return self.label_agreement + 100.0 * self.ties / max(1, self.images)


def compare(probabilities: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, threshold: float,
            tolerance: float = FP32_LIMITS.max_abs_dp) -> Parity:
    """Compare ``probabilities`` with Keras' ``reference`` on the same images, and with their ``labels`` if known;
    a flipped label is a tie when Keras' P lies within ``tolerance`` of the ``threshold``."""
    from emotion.train.metrics import classification_metrics

    p, ref = np.asarray(probabilities, np.float64).reshape(-1), np.asarray(reference, np.float64).reshape(-1)
    finite = np.isfinite(p) & np.isfinite(ref)
    differs = ~finite | ((p >= threshold) != (ref >= threshold))
    ties = int(np.sum(differs & finite & (np.abs(ref - threshold) <= tolerance)))
    quality: dict[str, Any] = {}
    if labels is not None and len(labels) and finite.all():
        own, keras = (classification_metrics(labels, x, threshold) for x in (p, ref))
        quality = {k: _finite(own[k]) for k in ("roc_auc", "accuracy", "balanced_accuracy")}
        if quality["roc_auc"] is not None and _finite(keras["roc_auc"]) is not None:
            quality["d_auc"] = abs(quality["roc_auc"] - keras["roc_auc"])
    return Parity(len(p), float(np.max(np.abs(p - ref)[finite], initial=0.0)),
                  100.0 * float(np.mean(~differs)) if len(p) else 100.0, ties, **quality,
                  non_finite=int(np.sum(~finite)))


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


@dataclass
class Check:
    """A format's place in the gate: its comparison (or why there is none), the limits and the verdict."""

    format: str
    parity: Parity | None = None
    limits: Limits | None = None
    verdict: Verdict = Verdict.MEASURED
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "verdict": self.verdict.value, "problems": list(self.problems),
                "limits": asdict(self.limits) if self.limits else None,
                "parity": asdict(self.parity) if self.parity else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Check":
        """The check that :meth:`to_dict` wrote (reports are rendered from their JSON document)."""
        return cls(data["format"], Parity(**data["parity"]) if data["parity"] else None,
                   Limits(**data["limits"]) if data["limits"] else None, Verdict(data["verdict"]), list(data["problems"]))


def judge(name: str, parity_class: str, parity: Parity | None, limits: Mapping[str, Limits],
          error: str | None = None) -> Check:
    """The verdict on one format: PASS or FAIL against the limits of its ``parity_class``, MEASURED when none
    apply. ``error`` says why the format gave no predictions; a failure when limits apply."""
    bound = limits.get(parity_class)
    if bound is None:
        return Check(name, parity, None, Verdict.MEASURED, [error] if error else [])
    if parity is None:
        return Check(name, None, bound, Verdict.FAIL, [error or "no predictions"])
    problems = [f"{parity.non_finite} non-finite outputs"] if parity.non_finite else []
    if bound.max_abs_dp is not None and parity.max_abs_dp > bound.max_abs_dp:
        problems.append(f"max |dP| {parity.max_abs_dp:.3g} > {bound.max_abs_dp:g}")
    if bound.min_agreement is not None and parity.decided_agreement < bound.min_agreement:
        problems.append(f"label agreement {parity.decided_agreement:.2f}% < {bound.min_agreement:g}%")
    if bound.max_d_auc is not None and (parity.d_auc or 0.0) > bound.max_d_auc:
        problems.append(f"|dAUC| {parity.d_auc:.3g} > {bound.max_d_auc:g}")
    return Check(name, parity, bound, Verdict.FAIL if problems else Verdict.PASS, problems)


def passed(checks: Sequence[Check]) -> bool:
    return all(c.verdict is not Verdict.FAIL for c in checks)


def table(checks: Sequence[Check]) -> str:
    """The gate as a Markdown table: one row per format, its figures against Keras, its limits and verdict."""
    lines = ["| Format | max \\|dP\\| | Agreement % (ties) | ROC AUC | \\|dAUC\\| | Accuracy | Balanced acc. "
             "| Limits | Verdict |", "|" + "---|" * 9]
    for check in checks:
        p = check.parity
        figures = ["–"] * 6 if p is None else [
            _num(p.max_abs_dp, ".2e"), f"{p.label_agreement:.2f} ({p.ties})", _num(p.roc_auc, ".4f"),
            _num(p.d_auc, ".2e"), _num(p.accuracy, ".4f"), _num(p.balanced_accuracy, ".4f")]
        verdict = check.verdict.value.upper() + (": " + "; ".join(check.problems) if check.problems else "")
        limits = check.limits.describe() if check.limits else "–"
        cells = [f"`{check.format}`", *figures, limits, verdict]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)

