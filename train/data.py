"""The dataset: ``DATA/Negative/*`` and ``DATA/Positive/*``, its groups, a deterministic split, and its manifest.

The user's files are only read: never moved, renamed or deleted (the seed's script moved them into split
folders; we write a manifest instead).
"""

from __future__ import annotations

import csv
import io
import os
import re
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
GROUPS_FILE = "labels.csv"  # optional: a group (or OASIS theme) per file; pictures of one group stay together


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
    grouped: bool = False  # whole groups of labels.csv on each side


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


def group_from_theme(theme: str) -> str:
    """"Dog 12" -> "Dog"; "Garbage dump 3" -> "Garbage dump"; a theme without a number is its own group."""
    theme = theme.strip()
    return re.sub(r"\s*\d+$", "", theme) or theme


def read_groups(dataset: Dataset) -> tuple[np.ndarray, str]:
    """One group name per sample of ``dataset`` and a description of where the groups came from."""
    path = dataset.root / GROUPS_FILE
    files = [s.relative_to(dataset.root) for s in dataset.samples]
    if not path.is_file():
        return np.array([f"file:{f}" for f in files], dtype=object), f"no {GROUPS_FILE}: each file is its own group"
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "file" not in columns or not ({"group", "theme"} & set(columns)):
            raise DataError(f"{path} needs a 'file' column and a 'group' or 'theme' column; found {columns}")
        column = "group" if "group" in columns else "theme"
        rows = [(row["file"], (row.get(column) or "").strip()) for row in reader]
    group_of = str if column == "group" else group_from_theme
    mapping = {Path(file.strip().replace("\\", "/")).as_posix(): group_of(name) for file, name in rows if name}
    groups = np.array([mapping.get(f, f"file:{f}") for f in files], dtype=object)
    how = "group column" if column == "group" else "theme without its trailing number"
    listed = sum(f in mapping for f in files)
    return groups, f"{GROUPS_FILE} {how} ({listed} of {len(files)} files listed; others are their own group)"


def grouped_split(y: np.ndarray, groups: np.ndarray, seed: int = DEFAULT_SEED,
                  fraction: float = DEFAULT_VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """A grouped, stratified (train, validation) split of positions 0..len(y)-1 (about ``fraction`` validation):
    the first candidate with both classes on both sides, or failing that the first candidate (callers that need
    both classes check)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    n_splits = min(max(2, int(round(1.0 / fraction))), n_groups)
    if n_splits < 2:
        raise DataError("too few groups in the training folds for an inner validation split")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    candidates = list(splitter.split(np.zeros(len(y)), y, groups))
    tr, val = next((c for c in candidates if all(len(np.unique(y[part])) == 2 for part in c)), candidates[0])
    return np.sort(tr), np.sort(val)


def stratified_split(dataset: Dataset, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                     seed: int = DEFAULT_SEED) -> Split:
    """Deterministic stratified split: same files and seed, same split, whatever the scan order.

    With a ``labels.csv`` (see :func:`read_groups`), whole groups go to one side, as in cross-validation: early
    stopping, the threshold and the reported validation figures then come from subjects the model has not trained
    on. Without one, or when no grouped split holds both classes on both sides, each class is split at random.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    key = lambda s: s.relative_to(dataset.root)  # noqa: E731
    samples = sorted(dataset.samples, key=key)
    if (dataset.root / GROUPS_FILE).is_file():
        y, (groups, _) = np.array([s.label for s in samples]), read_groups(Dataset(dataset.root, samples))
        sides = grouped_split(y, groups, seed, validation_fraction) if len(set(groups)) > 1 else ()
        if sides and all(len(set(y[side])) == 2 for side in sides):
            train_side, validation_side = ([samples[i] for i in side] for side in sides)
            return Split(dataset.root, train_side, validation_side, seed, validation_fraction, dataset.labels,
                         grouped=True)
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
