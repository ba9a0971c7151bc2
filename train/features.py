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
from matplotlib.colors import rgb_to_hsv
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .metrics import best_threshold

HUE_BINS = 12
SAT_BINS = 8
VALUE_BINS = 8
GREY_SATURATION = 0.1
FEATURE_SIZE = (100, 125)  # (height, width) the images are decoded at for the baseline: statistics need few pixels


def colour_features(image: np.ndarray) -> np.ndarray:
    """The 65 colour/tone statistics of one uint8 (H, W, 3) RGB image."""
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0
    hue, sat, val = rgb_to_hsv(rgb).T
    out: list[float] = []
    for channel in (rgb[:, 0], rgb[:, 1], rgb[:, 2], sat, val):
        out += [channel.mean(), channel.std(), *np.percentile(channel, [10, 50, 90])]
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
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000))

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "ColourLogReg":
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        n_splits = min(self.inner_folds, len(set(groups)), int(np.bincount(y, minlength=2).min()))
        if n_splits >= 2:
            splits = list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=self.seed).split(x, y, groups))
            if self.c is None:
                self.c = max(self.c_grid, key=lambda c: np.nanmean(
                    cross_val_score(self._pipeline(c), x, y, cv=splits, scoring="roc_auc")))
            oof = cross_val_predict(self._pipeline(self.c), x, y, cv=splits, method="predict_proba")[:, 1]
            self.threshold = best_threshold(y, oof)
        elif self.c is None:
            self.c = 0.1  # too few groups to choose: the default
        self.model_ = self._pipeline(self.c).fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(x)[:, 1]
