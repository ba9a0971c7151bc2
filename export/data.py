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
from dataclasses import dataclass
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
    rejected: int = 0  # files that could not be decoded

    def __len__(self) -> int:
        return int(len(self.images))

    def summary(self) -> dict:
        out: dict = {"source": self.description, "images": len(self)}
        if self.labels is not None:
            out.update(positives=int(self.labels.sum()), negatives=int(len(self.labels) - self.labels.sum()))
        return out | ({"rejected": self.rejected} if self.rejected else {})


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Every image below the calibration ``folder`` (by content), or a clear :class:`ExportError`. No decoding."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ExportError(f"calibration folder {folder} does not exist")
    if not folder.is_dir():
        raise ExportError(f"calibration path {folder} is not a folder of images")
    files = [c.path for c in discover([folder]) if c.error is None]
    if not files:
        raise ExportError(f"calibration folder {folder} holds no images (searched recursively)")
    return files


def _sample(items: list, size: int) -> list:
    """A deterministic subset (same inputs, same images), kept in a stable order."""
    if size <= 0 or len(items) <= size:
        return list(items)
    index = np.random.default_rng(SAMPLING_SEED).choice(len(items), size=size, replace=False)
    return [items[i] for i in sorted(index)]


def _load(samples: list, spec: PreprocessSpec, what: str, labelled: bool, progress: str | None) -> ImageSet:
    """The decoded ``samples``, described as "<count decoded> <what>".

    Raises:
        ExportError: none of them decodes (a gate over no images would pass without checking anything).
    """
    from emotion.train.data import load_images

    images, labels, rejected = load_images(samples, spec, progress=progress)
    if len(images) == 0:
        raise ExportError(f"none of the {len(samples)} {what} could be decoded")
    return ImageSet(images, labels if labelled else None, f"{len(images)} {what}", len(rejected))


def calibration_set(spec: PreprocessSpec, split=None, folder: str | os.PathLike | None = None, size: int = 300,
                    progress: bool = True) -> ImageSet:
    """Up to ``size`` calibration images from ``folder`` or else the split's training samples."""
    from emotion.train.data import Sample

    if folder is not None:
        found = image_files(folder)
        held_out = {Path(s.path).resolve() for s in split.validation} if split is not None else set()
        files = [p for p in found if p.resolve() not in held_out]  # validation images measure INT8 afterwards
        if not files:
            raise ExportError(f"every image of --calibration {folder} is in the run's validation split, which "
                              "measures the INT8 model: pass other images")
        samples = [Sample(p.absolute(), 0) for p in _sample(files, size)]
        left_out = f" ({len(found) - len(files)} validation-split images left out)" if len(files) < len(found) else ""
        what = f"images from {Path(folder).expanduser()}{left_out}"
    elif split is not None and split.train:
        samples = _sample(list(split.train), size)
        what = f"of {len(split.train)} training-split images from {split.root}"
    else:
        raise ExportError("INT8 needs calibration images and there is no training split to take them from (a bare "
                          ".keras file, or the run's data folder is missing): pass --calibration DATA")
    return _load(samples, spec, what, False, "calibration images" if progress else None)


def verification_set(spec: PreprocessSpec, split=None, data: str | os.PathLike | None = None,
                     calibration: str | os.PathLike | None = None, progress: bool = True) -> ImageSet:
    """Labelled images to compare the backends on; synthetic unlabelled ones when there are none."""
    from emotion.train.data import DataError, load_dataset

    label = "verification images" if progress else None
    if data is not None:
        try:
            dataset = load_dataset(data)
        except DataError as exc:
            raise ExportError(str(exc)) from None
        return _load(dataset.samples, spec, f"images from --data {dataset.root}", True, label)
    if split is not None and split.validation:
        return _load(split.validation, spec, f"validation-split images from {split.root}", True, label)
    try:
        dataset = load_dataset(calibration) if calibration is not None else None
    except DataError:  # not labelled: no verification images there
        dataset = None
    if dataset is not None:
        return _load(dataset.samples, spec, f"images from the --calibration folder {dataset.root} (no validation "
                     "split: INT8 is judged on its own calibration images, so its figures are optimistic)", True, label)
    return synthetic_set(spec)


def synthetic_set(spec: PreprocessSpec, count: int = SYNTHETIC_IMAGES) -> ImageSet:
    """Smooth random colour fields: enough to check numeric parity when no labelled images exist."""
    rng = np.random.default_rng(SAMPLING_SEED)
    ys = np.linspace(0.0, 1.0, spec.height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, spec.width, dtype=np.float32)[None, :, None]
    a, b, c = rng.random((3, count, 1, 1, 3), dtype=np.float32) * 255.0  # per image: three colours
    fields = a + (b - a) * ys + (c - a) * xs * ys + rng.normal(0.0, 12.0, (count, spec.height, spec.width, 3))
    description = (f"{count} synthetic images (no labelled images: pass --data DATA for accuracy figures; "
                   "numeric parity is still checked)")
    return ImageSet(np.clip(fields, 0, 255).astype(np.uint8), None, description)
