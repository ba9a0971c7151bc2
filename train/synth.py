"""A deterministic synthetic dataset in the seed's layout: the demo's embedded default and the tests' data.

Each picture is a smooth colour gradient with a few shapes. The class shifts the odds, not the rules:
Positive pictures lean warm, bright and round; Negative ones lean cool, dark and angular; the two
distributions overlap and a fraction of labels is flipped, so a model can learn it (validation AUC well
above 0.5) but cannot be perfect (well below 1.0), like real affective labels.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from emotion.train import atomic
from emotion.runtime.metadata import DEFAULT_LABELS


@dataclass(frozen=True)
class SynthConfig:
    n: int = 240
    seed: int = 21
    height: int = 400
    width: int = 500
    positive_fraction: float = 0.55
    label_noise: float = 0.12
    overlap: float = 0.5  # 0 = classes fully separated by colour, 1 = identical colour distributions


def _picture(rng: np.random.Generator, positive: bool, cfg: SynthConfig) -> Image.Image:
    sign = 1.0 if positive else -1.0
    shift = (1.0 - cfg.overlap) * sign
    # Warm hues (red-yellow, ~0.05-0.15) against cool ones (blue-violet, ~0.55-0.7), blurred by noise.
    hue = (0.1 if positive else 0.62) + rng.normal(0, 0.08 + 0.25 * cfg.overlap)
    value = float(np.clip(0.55 + 0.2 * shift + rng.normal(0, 0.18), 0.1, 1.0))
    saturation = float(np.clip(0.55 + 0.15 * shift + rng.normal(0, 0.2), 0.05, 1.0))
    top = np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))
    bottom = np.array(colorsys.hsv_to_rgb((hue + rng.normal(0, 0.1)) % 1.0, saturation, value * rng.uniform(0.5, 1.0)))
    t = np.linspace(0.0, 1.0, cfg.height)[:, None, None]
    gradient = (top * (1 - t) + bottom * t) * 255.0
    canvas = np.broadcast_to(gradient, (cfg.height, cfg.width, 3)).copy()
    canvas += rng.normal(0, 6, canvas.shape)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    p_round = 0.5 + 0.25 * shift
    for _ in range(int(rng.integers(2, 7))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, cfg.width), rng.uniform(0, cfg.height)
        r = rng.uniform(0.04, 0.18) * min(cfg.width, cfg.height)
        if rng.random() < p_round:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            points = [(x + r * np.cos(a), y + r * np.sin(a)) for a in rng.uniform(0, 2 * np.pi, 3)]
            draw.polygon(points, fill=colour)
            draw.line([(x - r, y - r), (x + r, y + r)], fill=colour, width=max(1, int(r / 8)))
    return image.filter(ImageFilter.GaussianBlur(radius=1.0))


def generate(out: str | Path, cfg: SynthConfig = SynthConfig(), force: bool = False) -> dict[str, int]:
    """Write ``out/Negative/*.jpg`` and ``out/Positive/*.jpg``; the same config always gives the same files."""
    if cfg.n < 10:
        raise ValueError(f"--n must be at least 10 (5 per class for a split), got {cfg.n}")
    counts = {name: 0 for name in DEFAULT_LABELS}
    with atomic.atomic_directory(out, force=force) as tmp:
        for name in DEFAULT_LABELS:
            (tmp / name).mkdir()
        n_pos = int(round(cfg.n * cfg.positive_fraction))
        for index in range(cfg.n):
            rng = np.random.default_rng([cfg.seed, index])
            true_positive = index < n_pos
            image = _picture(rng, true_positive, cfg)
            name = DEFAULT_LABELS[int(true_positive ^ (rng.random() < cfg.label_noise))]  # a few labels flipped
            image.save(tmp / name / f"synth_{index:05d}.jpg", quality=90)
            counts[name] += 1
    return counts
