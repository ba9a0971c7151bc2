"""Global colour and tone statistics of an image, and the logistic-regression baseline built on them.

The baseline answers one question in cross-validation: does a network learn more than the overall colour
and tone of a photo? On real photos of unseen subjects, such statistics (warm or cold, saturated or dull, dark
or bright) generalise across subjects, where a small CNN trained from scratch tends to memorise subjects.

Features (from the uint8 RGB array of the shared preprocessing, at any size; 65 numbers):

- per channel of R, G, B, saturation and value: mean, standard deviation, 10th, 50th and 90th percentile;
- hue as a circular quantity: the saturation-weighted mean of cos(hue) and sin(hue), and its resultant length;
- a 12-bin hue histogram weighted by saturation (grey pixels carry no hue), plus the share of near-grey pixels;
- 8-bin histograms of saturation and of value (brightness);
- colourfulness (Hasler and Suesstrunk, 2003) and the mean and spread of its two opponent channels;
- luma contrast (standard deviation), and the shares of dark (V < 0.2) and bright (V > 0.8) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HUE_BINS = 12
SAT_BINS = 8
VALUE_BINS = 8
GREY_SATURATION = 0.1
FEATURE_SIZE = (100, 125)  # (height, width) the images are decoded at for the baseline: statistics need few pixels


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float RGB in [0, 1] (..., 3) -> hue in [0, 1), saturation, value (as colorsys / Pillow's HSV)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    minimum = rgb.min(axis=-1)
    chroma = value - minimum
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-12), 0.0)
    safe = np.maximum(chroma, 1e-12)
    hue = np.where(
        value == r, ((g - b) / safe) % 6.0, np.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    hue = np.where(chroma > 0, hue / 6.0, 0.0) % 1.0
    return hue, saturation, value


def _spread(values: np.ndarray) -> list[float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return [float(values.mean()), float(values.std()), float(p10), float(p50), float(p90)]


def colour_features(image: np.ndarray) -> np.ndarray:
    """The 65 colour/tone statistics of one uint8 (H, W, 3) RGB image."""
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0
    hue, sat, val = rgb_to_hsv(rgb)
    out: list[float] = []
    for channel in (rgb[:, 0], rgb[:, 1], rgb[:, 2], sat, val):
        out += _spread(channel)
    angle = 2.0 * np.pi * hue
    weight = sat / max(float(sat.sum()), 1e-12)
    cos_mean, sin_mean = float((weight * np.cos(angle)).sum()), float((weight * np.sin(angle)).sum())
    out += [cos_mean, sin_mean, float(np.hypot(cos_mean, sin_mean))]
    hue_hist = np.bincount(np.minimum((hue * HUE_BINS).astype(int), HUE_BINS - 1), weights=sat, minlength=HUE_BINS)
    out += list(hue_hist / max(float(hue_hist.sum()), 1e-12))
    out.append(float((sat < GREY_SATURATION).mean()))
    for channel, bins in ((sat, SAT_BINS), (val, VALUE_BINS)):
        out += list(np.histogram(channel, bins=bins, range=(0.0, 1.0))[0] / len(channel))
    rg = rgb[:, 0] - rgb[:, 1]
    yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    out += [float(colourfulness), float(rg.mean()), float(rg.std()), float(yb.mean()), float(yb.std())]
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    out += [float(luma.std()), float((val < 0.2).mean()), float((val > 0.8).mean())]
    return np.asarray(out, dtype=np.float64)


def feature_matrix(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 65) float64."""
    return np.stack([colour_features(image) for image in images]) if len(images) else np.zeros((0, 65))


@dataclass
class ColourLogReg:
    """Standardised colour statistics -> L2 logistic regression with balanced class weights.

    Needs no validation images: the decision threshold maximises balanced accuracy on the out-of-fold
    predictions of a grouped, stratified ``inner_folds``-fold cross-validation on the training images, then the
    model is refitted on all training images. The inverse regularisation strength is fixed, ``c=0.1`` (strong,
    for 65 correlated features and a few hundred images); with ``c=None`` it is picked from ``c_grid`` by that
    inner cross-validation's AUC instead (on oasis-dev this selection is noisy and does worse, see
    benchmarks/results/model_quality.md).
    """

    c_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    inner_folds: int = 4
    seed: int = 21
    c: float | None = 0.1
    threshold: float = 0.5

    def _pipeline(self, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000))

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "ColourLogReg":
        from sklearn.model_selection import StratifiedGroupKFold

        from .metrics import best_threshold, roc_auc

        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        n_splits = min(self.inner_folds, len(set(groups)), int(np.bincount(y, minlength=2).min()))
        if n_splits >= 2:
            splits = list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=self.seed).split(x, y, groups))
            grid = [self.c] if self.c is not None else list(self.c_grid)
            best = (-np.inf, grid[0], None)
            for c in grid:
                oof = np.zeros(len(y))
                aucs = []
                for tr, te in splits:
                    oof[te] = self._pipeline(c).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
                    aucs.append(roc_auc(y[te], oof[te]))
                score = float(np.nanmean(aucs))
                if score > best[0]:
                    best = (score, c, oof)
            self.c, self.threshold = best[1], best_threshold(y, best[2])
        elif self.c is None:
            self.c = 0.1  # too few groups to choose: the default
        self.model_ = self._pipeline(self.c).fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(x)[:, 1]
