"""The dataset: ``DATA/Negative/*`` and ``DATA/Positive/*``, a deterministic stratified split, and its manifest.

The user's files are only read: never moved, renamed or deleted (the seed's script moved them into split
folders; we write a manifest instead).
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from emotion.train import atomic
from emotion.runtime.files import discover
from emotion.runtime.metadata import DEFAULT_LABELS
from emotion.runtime.preprocess import ImageDecodeError, PreprocessSpec, preprocess

MANIFEST_NAME = "split.csv"
DEFAULT_SEED = 21
DEFAULT_VALIDATION_FRACTION = 0.2


class DataError(ValueError):
    """The data folder cannot be used; the message says what to do."""


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (for example ``400x500``) into (height, width), each side 8 to 4096."""
    try:
        height, width = (int(p) for p in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"image size must look like HxW, for example 400x500; got {text!r}") from None
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise ValueError(f"image size must be between 8 and 4096 on each side; got {text!r}")
    return height, width


@dataclass(frozen=True)
class Sample:
    path: Path  # absolute
    label: int  # 0 = Negative, 1 = Positive

    def relative_to(self, root: Path) -> str:
        return self.path.relative_to(root).as_posix()


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    labels: tuple[str, str] = DEFAULT_LABELS

    @property
    def y(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        y = self.y
        return {name: int((y == i).sum()) for i, name in enumerate(self.labels)}

    def report(self) -> dict:
        """Class counts, imbalance and the naive majority-class accuracy (the floor to beat)."""
        counts = self.counts()
        total = sum(counts.values())
        majority = max(counts, key=counts.get)
        return {"root": str(self.root), "counts": counts, "total": total,
                "imbalance_ratio": round(max(counts.values()) / max(1, min(counts.values())), 3),
                "majority_class": majority, "majority_accuracy": round(counts[majority] / total, 4) if total else 0.0,
                "rejected": [{"path": str(p), "reason": r} for p, r in self.rejected]}


@dataclass
class Split:
    """A train/validation split of one dataset, as written in the run's manifest."""

    root: Path
    train: list[Sample]
    validation: list[Sample]
    seed: int
    validation_fraction: float
    labels: tuple[str, str] = DEFAULT_LABELS


def load_dataset(root: str | os.PathLike, labels: Sequence[str] = DEFAULT_LABELS) -> Dataset:
    """Scan ``root/<label>/`` recursively; files that are not images are listed with a reason, not used."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; give a folder with Negative/ and Positive/ inside")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with Negative/ and Positive/ inside")
    root = root.resolve()
    missing = [name for name in labels if not (root / name).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {' or '.join(n + '/' for n in missing)} folder; expected {root}/Negative/* and "
            f"{root}/Positive/* (create them, or run 'emotion-data synth --out DIR' for a demo dataset)"
        )
    found = [(index, candidate) for index, name in enumerate(labels) for candidate in discover([root / name])]
    samples = [Sample(candidate.path.absolute(), index) for index, candidate in found if not candidate.error]
    rejected = [(candidate.path, candidate.error) for _, candidate in found if candidate.error]
    dataset = Dataset(root, samples, rejected, tuple(labels))  # type: ignore[arg-type]
    empty = [name for name, n in dataset.counts().items() if n == 0]
    if empty:
        raise DataError(f"class folder {root}/{empty[0]}/ holds no readable images; add images to it")
    return dataset


def stratified_split(dataset: Dataset, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                     seed: int = DEFAULT_SEED) -> Split:
    """Deterministic stratified split: same files and seed, same split, whatever the scan order."""
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    key = lambda s: s.relative_to(dataset.root)  # noqa: E731
    samples = sorted(dataset.samples, key=key)
    train: list[Sample] = []
    validation: list[Sample] = []
    rng = np.random.default_rng(seed)
    for index, name in enumerate(dataset.labels):
        members = [s for s in samples if s.label == index]
        n_val = int(round(len(members) * validation_fraction))
        if n_val < 1 or len(members) - n_val < 1:
            raise DataError(
                f"class {name} has {len(members)} image(s): too few for a {validation_fraction:.0%} validation "
                f"split (each side needs at least one); add images to {dataset.root}/{name}/"
            )
        order = rng.permutation(len(members))
        validation += [members[i] for i in sorted(order[:n_val])]
        train += [members[i] for i in sorted(order[n_val:])]
    return Split(dataset.root, sorted(train, key=key), sorted(validation, key=key), seed, validation_fraction,
                 dataset.labels)


def csv_text(rows: Iterable[Sequence]) -> str:
    """Rows as CSV text, lines ending in a bare newline (the manifest, the evaluation's predictions)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def manifest_text(split: Split) -> str:
    return csv_text([("path", "label", "class_index", "subset")] + [
        (s.relative_to(split.root), split.labels[s.label], s.label, subset)
        for subset, samples in (("train", split.train), ("validation", split.validation)) for s in samples])


def write_manifest(split: Split, folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    atomic.write_text(path, manifest_text(split))
    return path


def read_manifest(path: str | os.PathLike, root: str | os.PathLike) -> Split:
    """Read a manifest written by :func:`write_manifest`; ``root`` is the data folder it is relative to."""
    root = Path(root)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    labels = {int(row["class_index"]): row["label"] for row in rows}
    train, validation = ([Sample((root / row["path"]).absolute(), int(row["class_index"])) for row in rows
                          if (row["subset"] == "train") == in_train] for in_train in (True, False))
    names = (labels.get(0, DEFAULT_LABELS[0]), labels.get(1, DEFAULT_LABELS[1]))
    fraction = len(validation) / max(1, len(train) + len(validation))
    return Split(root, train, validation, -1, fraction, names)


def load_images(
    samples: Iterable[Sample], spec: PreprocessSpec, workers: int | None = None, progress: str | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Decode and resize images once, in a thread pool, with the shared preprocessing.

    Returns (uint8 images N x H x W x 3, labels N, rejected) where rejected lists files that failed to decode,
    with the reason; those are left out rather than crashing the run.
    """
    from tqdm.auto import tqdm

    samples = list(samples)
    images = np.empty((len(samples), spec.height, spec.width, 3), dtype=np.uint8)  # workers fill their own rows

    def decode(i: int) -> str | None:
        try:
            images[i] = preprocess(samples[i].path, spec)
        except ImageDecodeError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        errors = list(tqdm(pool.map(decode, range(len(samples))), total=len(samples), desc=progress,
                           disable=progress is None, unit="img"))
    ok = np.array([error is None for error in errors], dtype=bool)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return images[ok], labels[ok], [(s.path, e) for s, e in zip(samples, errors) if e is not None]
