"""The images export needs: calibration images for INT8, labelled verification images for the parity table.

Both go through the shared preprocessing (:func:`emotion.train.data.load_images`), so NNCF calibrates on, and
the checks compare, exactly the uint8 arrays the runtime will feed.

* Calibration: ``--calibration DATA`` (any folder of images, searched recursively, labels not needed), else
  the run's *training* split. Never validation images: they measure the INT8 model afterwards.
* Verification: ``--data DATA`` (``Negative/`` + ``Positive/``), else the run's validation split, else a
  labelled ``--calibration`` folder (noted in the report: then INT8 is judged on its own calibration images),
  else a few synthetic images: FP32 parity is still checked, accuracy figures are not computed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion.runtime.files import discover
from emotion.runtime.preprocess import PreprocessSpec

from .common import ExportError

SAMPLING_SEED = 0
SYNTHETIC_IMAGES = 16


@dataclass
class ImageSet:
    """uint8 (N, H, W, 3) images, their labels when known, and where they came from (for the report)."""

    images: np.ndarray
    labels: np.ndarray | None
    description: str
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(len(self.images))

    def summary(self) -> dict:
        out: dict = {"source": self.description, "images": len(self)}
        if self.labels is not None:
            out["positives"] = int(self.labels.sum())
            out["negatives"] = int(len(self.labels) - self.labels.sum())
        if self.rejected:
            out["rejected"] = [{"path": p, "reason": r} for p, r in self.rejected]
        return out


def image_files(folder: str | os.PathLike, what: str = "calibration") -> list[Path]:
    """Every image below ``folder`` (by content), or a clear :class:`ExportError`. Cheap: no decoding."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ExportError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise ExportError(f"{what} path {folder} is not a folder of images")
    files = [c.path for c in discover([folder]) if c.error is None]
    if not files:
        raise ExportError(f"{what} folder {folder} holds no images (searched recursively)")
    return files


def _sample(items: list, size: int) -> list:
    """A deterministic subset (same inputs, same images), kept in a stable order."""
    if size <= 0 or len(items) <= size:
        return list(items)
    index = np.random.default_rng(SAMPLING_SEED).choice(len(items), size=size, replace=False)
    return [items[i] for i in sorted(index)]


def _load(samples: list, spec: PreprocessSpec, description: str, labelled: bool, progress: str | None) -> ImageSet:
    from emotion.train.data import load_images

    images, labels, rejected = load_images(samples, spec, progress=progress)
    return ImageSet(images, labels if labelled else None, description, [(str(p), r) for p, r in rejected])


def calibration_set(
    spec: PreprocessSpec,
    split=None,
    folder: str | os.PathLike | None = None,
    size: int = 300,
    progress: bool = True,
) -> ImageSet:
    """Up to ``size`` calibration images from ``folder`` or else the split's training samples."""
    from emotion.train.data import Sample

    if folder is not None:
        files = _sample(image_files(folder), size)
        samples = [Sample(p.absolute(), 0) for p in files]
        description = f"{len(samples)} images from {Path(folder).expanduser()}"
    elif split is not None and split.train:
        samples = _sample(list(split.train), size)
        description = f"{len(samples)} of {len(split.train)} training-split images from {split.root}"
    else:
        raise ExportError(
            "INT8 needs calibration images and there is no training split to take them from "
            "(a bare .keras file, or the run's data folder is missing): pass --calibration DATA"
        )
    result = _load(samples, spec, description, False, "calibration images" if progress else None)
    if len(result) == 0:
        raise ExportError(f"none of the calibration images could be decoded ({description})")
    return result


def verification_set(
    spec: PreprocessSpec,
    split=None,
    data: str | os.PathLike | None = None,
    calibration: str | os.PathLike | None = None,
    progress: bool = True,
) -> ImageSet:
    """Labelled images to compare the backends on; synthetic unlabelled ones when there are none."""
    from emotion.train.data import DataError, load_dataset

    label = "verification images" if progress else None
    if data is not None:
        try:
            dataset = load_dataset(data)
        except DataError as exc:
            raise ExportError(str(exc)) from None
        samples = dataset.samples
        return _load(samples, spec, f"{len(samples)} images from --data {dataset.root}", True, label)
    if split is not None and split.validation:
        samples = split.validation
        return _load(samples, spec, f"{len(samples)} validation-split images from {split.root}", True, label)
    if calibration is not None:
        try:
            dataset = load_dataset(calibration)
        except DataError:
            dataset = None
        if dataset is not None:
            samples = dataset.samples
            return _load(
                samples, spec,
                f"{len(samples)} images from the --calibration folder {dataset.root} (no validation split: "
                "INT8 is judged on its own calibration images, so its figures are optimistic)",
                True, label,
            )
    return synthetic_set(spec)


def synthetic_set(spec: PreprocessSpec, count: int = SYNTHETIC_IMAGES) -> ImageSet:
    """Smooth random colour fields: enough to check numeric parity when no labelled images exist."""
    rng = np.random.default_rng(SAMPLING_SEED)
    ys = np.linspace(0.0, 1.0, spec.height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, spec.width, dtype=np.float32)[None, :, None]
    images = np.empty((count, spec.height, spec.width, 3), dtype=np.uint8)
    for i in range(count):
        a, b, c = (rng.random((3, 3), dtype=np.float32) * 255.0)
        field_ = a + (b - a) * ys + (c - a) * xs * ys
        noise = rng.normal(0.0, 12.0, field_.shape[:2] + (3,)).astype(np.float32)
        images[i] = np.clip(field_ + noise, 0, 255).astype(np.uint8)
    return ImageSet(
        images, None,
        f"{count} synthetic images (no labelled images: pass --data DATA for accuracy figures; numeric parity "
        "is still checked)",
    )
