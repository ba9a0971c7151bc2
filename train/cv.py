"""Grouped K-fold cross-validation of registered architectures and of the colour-statistics baseline.

Pictures of one subject must never sit on both sides of a split, or a network that memorises subjects looks
good. So the folds (scikit-learn's ``StratifiedGroupKFold``, fixed seed) keep each group whole: the ``group``
column of ``DATA/labels.csv``, or else its ``theme`` without the trailing number (OASIS's "Dog 1" .. "Dog 31" are
one group); a file it does not list, and every file when there is no labels.csv, is its own group.

Every model trains on the same K-1 folds and is scored on the held-out one: ROC AUC, accuracy and balanced
accuracy at its threshold, reported as mean and standard deviation (ddof=0) over folds. A network's validation
images (early stopping, threshold) are a grouped, stratified fifth of its training folds, never the test fold;
the colour baseline chooses its threshold by a grouped cross-validation inside its training folds.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.runtime.preprocess import DEFAULT_RESIZE_FILTER, PreprocessSpec

from . import models
from .data import DEFAULT_SEED, DataError, grouped_split, load_dataset, load_images, read_groups

BASELINE = "colour-logreg"
METRICS = ("roc_auc", "accuracy", "balanced_accuracy")
METRIC_TITLES = {"roc_auc": "AUC", "accuracy": "accuracy", "balanced_accuracy": "balanced acc."}


def check_k(k: int, y: np.ndarray, groups: np.ndarray, labels=("Negative", "Positive")) -> None:
    """A usable number of folds, or a DataError saying what is possible."""
    if k < 2:
        raise DataError(f"--cv needs at least 2 folds, got {k}")
    counts = np.bincount(y, minlength=2)
    smallest = int(np.argmin(counts))
    n_groups = len(set(groups))
    if k > counts[smallest]:
        raise DataError(f"--cv {k} is larger than the smallest class ({labels[smallest]}: {counts[smallest]} images); "
                        f"use --cv {min(int(counts[smallest]), n_groups)} or fewer")
    if k > n_groups:
        raise DataError(f"--cv {k} is larger than the number of groups ({n_groups}; pictures of one group stay in "
                        f"one fold); use --cv {n_groups} or fewer")


def grouped_folds(y: np.ndarray, groups: np.ndarray, k: int,
                  seed: int = DEFAULT_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, test) index pairs; each group lies wholly in one test fold; classes stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    check_k(k, y, groups)  # (the default class names: run_cv checks first, with the dataset's own)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]


@dataclass
class CVConfig:
    data: Path
    k: int = 5
    archs: tuple[str, ...] = ("seed", "edge")
    epochs: int | None = None  # None: each architecture's recipe
    batch_size: int | None = None
    seed: int = DEFAULT_SEED
    baseline: bool = True
    verbose: int = 0  # 1: Keras progress per epoch
    overrides: dict = field(default_factory=dict)  # extra TrainConfig fields, e.g. learning_rate


def _summary(folds: list[dict]) -> dict:
    values = {name: np.array([f[name] for f in folds], dtype=np.float64) for name in METRICS}
    return {name: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "folds": v.tolist()}
            for name, v in values.items()}


def _score(y, probability, threshold) -> dict:
    from .metrics import classification_metrics

    m = classification_metrics(y, probability, threshold)
    return {k: m[k] for k in ("roc_auc", "accuracy", "balanced_accuracy", "threshold", "n")}


def _fold_line(name: str, i: int, k: int, fold: dict, note: str) -> str:
    return (f"  {name} fold {i + 1}/{k}: AUC {fold['roc_auc']:.3f} accuracy {fold['accuracy']:.3f} "
            f"balanced {fold['balanced_accuracy']:.3f} ({note})")


def _baseline(cfg: CVConfig, small: np.ndarray, y, groups, folds, log) -> tuple[dict, np.ndarray]:
    """The colour baseline on every fold: (its results, its out-of-fold probabilities)."""
    from .features import FEATURE_SIZE, ColourLogReg, feature_matrix

    t0 = time.perf_counter()
    features = feature_matrix(small)
    per_fold, probs = [], np.full(len(y), np.nan)
    for i, (tr, te) in enumerate(folds):
        model = ColourLogReg(seed=cfg.seed).fit(features[tr], y[tr], groups[tr])
        probs[te] = model.predict_proba(features[te])
        per_fold.append({**_score(y[te], probs[te], model.threshold), "C": model.c})
        log(_fold_line(BASELINE, i, cfg.k, per_fold[-1], f"C {model.c}"))
    return {"kind": "baseline", "features": int(features.shape[1]), "input_size": list(FEATURE_SIZE),
            "folds": per_fold, **_summary(per_fold), "seconds": round(time.perf_counter() - t0, 1)}, probs


def _network(cfg: CVConfig, arch: str, images_at, y, folds, inner, log) -> tuple[dict, np.ndarray]:
    """``arch`` trained on every fold, as ``emotion-train`` would: (its results, its out-of-fold probabilities)."""
    import keras

    from .model_io import predict_proba
    from .trainer import TRANSFER_OPTIONS, TrainConfig, fit

    t0 = time.perf_counter()
    tcfg = TrainConfig(data=Path(cfg.data), out=Path("(cross-validation: no run folder)"), arch=arch,
                       epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, verbose=cfg.verbose,
                       **cfg.overrides).resolve()
    images = images_at(tuple(tcfg.image_size))
    per_fold, probs = [], np.full(len(y), np.nan)
    for i, ((_, te), (itr, ival)) in enumerate(zip(folds, inner)):
        t1 = time.perf_counter()
        fitted = fit(tcfg, images[itr], y[itr], images[ival], y[ival])
        probs[te] = predict_proba(fitted.model, images[te], tcfg.batch_size)
        params = int(fitted.model.count_params())
        kept = fitted.best_epoch
        fold = {**_score(y[te], probs[te], fitted.threshold), "epochs_run": len(fitted.history.get("loss", [])),
                "best_epoch": kept + 1, "inner_validation_auc": float(fitted.history["val_auc"][kept]),
                "seconds": round(time.perf_counter() - t1, 1)}
        per_fold.append(fold)
        log(_fold_line(arch, i, cfg.k, fold, f"best epoch {fold['best_epoch']}/{fold['epochs_run']}, inner val "
                       f"AUC {fold['inner_validation_auc']:.3f}, {fold['seconds']:.0f} s"))
        del fitted
        keras.backend.clear_session()
    recipe = ("batch_size", "learning_rate", "class_weight", "threshold", "early_stopping", "early_stopping_start",
              "lr_schedule", *(TRANSFER_OPTIONS if models.get(arch).backbone else ()))
    return {"kind": "network", "parameters": params, "input_size": list(tcfg.image_size), "epochs": tcfg.epochs,
            "recipe": {k: getattr(tcfg, k) for k in recipe}, "folds": per_fold, **_summary(per_fold),
            "seconds": round(time.perf_counter() - t0, 1)}, probs


def run_cv(cfg: CVConfig, log=print) -> dict:
    """Cross-validate ``cfg.archs`` (and the colour baseline) on the same grouped folds; returns the results."""
    for arch in cfg.archs:
        models.get(arch)  # unknown names fail before any work
    dataset = load_dataset(cfg.data)
    check_k(cfg.k, dataset.y, read_groups(dataset)[0], dataset.labels)  # before any decoding
    from .features import FEATURE_SIZE

    # Decoding at the small baseline size first finds undecodable files, which are left out before folding.
    small, y, rejected = load_images(dataset.samples, PreprocessSpec(*FEATURE_SIZE, DEFAULT_RESIZE_FILTER))
    bad = {p for p, _ in rejected}
    dataset.samples = [s for s in dataset.samples if s.path not in bad]
    groups, group_source = read_groups(dataset)
    folds = grouped_folds(y, groups, cfg.k, cfg.seed)
    inner = [tuple(tr[part] for part in grouped_split(y[tr], groups[tr], cfg.seed)) for tr, _ in folds]
    n_groups = len(set(groups))
    log(f"{cfg.k}-fold grouped cross-validation on {dataset.root}: {len(y)} images "
        f"({int((y == 0).sum())} {dataset.labels[0]}, {int((y == 1).sum())} {dataset.labels[1]}), {n_groups} groups "
        f"from {group_source}; seed {cfg.seed}")
    for path, reason in rejected:
        log(f"  left out {path}: {reason}")

    @functools.cache
    def images_at(size: tuple[int, int]) -> np.ndarray:
        """The kept images, decoded once per input size and kept in memory for every fold and architecture."""
        images, _, failed = load_images(dataset.samples, PreprocessSpec(*size, DEFAULT_RESIZE_FILTER))
        if failed:
            raise DataError(f"{failed[0][0]} failed to decode at {size[0]}x{size[1]}: {failed[0][1]}")
        return images

    results: dict[str, dict] = {}
    oof: dict[str, np.ndarray] = {}
    if cfg.baseline:
        results[BASELINE], oof[BASELINE] = _baseline(cfg, small, y, groups, folds, log)
    for arch in cfg.archs:
        results[arch], oof[arch] = _network(cfg, arch, images_at, y, folds, inner, log)
    fold_of = {int(i): f + 1 for f, (_, te) in enumerate(folds) for i in te}
    return {
        "data": str(dataset.root), "k": cfg.k, "seed": cfg.seed, "n": int(len(y)), "groups": n_groups,
        "group_source": group_source, "majority_accuracy": float(np.bincount(y, minlength=2).max() / len(y)),
        "fold_sizes": [int(len(te)) for _, te in folds],
        "left_out": [{"path": str(p), "reason": r} for p, r in rejected],
        "models": results,
        "predictions": [
            {"path": s.relative_to(dataset.root), "group": str(groups[i]), "label": int(y[i]),
             "fold": fold_of[i], **{name: float(p[i]) for name, p in oof.items()}}
            for i, s in enumerate(dataset.samples)
        ],
    }


def table(result: dict) -> str:
    """The results as a plain-text table: mean +- std over folds."""
    head = (f"{result['k']}-fold grouped CV, {result['n']} images, {result['groups']} groups "
            f"({result['group_source']}); mean ± std over folds")
    rows = [("model", "size", *(METRIC_TITLES[m] for m in METRICS))]
    for name, r in result["models"].items():
        size = f"{r['features']} features" if r["kind"] == "baseline" else f"{r['parameters']:,} params"
        rows.append((name, size, *(f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}" for m in METRICS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([head, *lines, f"majority-class accuracy {result['majority_accuracy']:.3f}"])
