"""The export's input: a training run folder or a bare ``.keras`` file, checked before any slow work.

A run folder (``model.keras`` + ``split.csv`` + ``run.json``) also gives the training split (calibration images)
and the validation split (verification images). A ``.keras`` file inside a run folder is treated as that run,
so ``RUN`` and ``RUN/model.keras`` export the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion.runtime.metadata import ModelInfo
from emotion.train.model_io import MODEL_NAME, ModelFileError, predict_proba, resolve_model_path

from .common import ExportError

RUN_JSON = "run.json"
MANIFEST = "split.csv"


@dataclass
class Source:
    """A loaded Keras model with its metadata and, when it came from a run, that run's split."""

    model_path: Path
    run_dir: Path | None
    model: Any  # keras.Model
    info: ModelInfo
    split: Any | None  # emotion.train.data.Split
    notes: list[str]


def locate(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(the .keras file, the run folder or None), with a one-line :class:`ExportError` otherwise. No TensorFlow."""
    raw = Path(path).expanduser()
    if not raw.exists() and not raw.is_symlink():
        raise ExportError(f"{raw} does not exist; give a training run folder or a .keras model file")
    try:
        model_path = resolve_model_path(raw)
    except ModelFileError as exc:
        raise ExportError(str(exc)) from None
    folder = model_path.parent
    is_run = model_path.name == MODEL_NAME and (folder / MANIFEST).is_file() and (folder / RUN_JSON).is_file()
    return model_path, folder if is_run else None


def read_run_split(run_dir: Path) -> tuple[Any | None, str | None]:
    """The run's split from ``split.csv`` + ``run.json["data_root"]``, or (None, why not)."""
    from emotion.train.data import read_manifest

    try:
        run = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
        data_root = Path(run["data_root"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{run_dir / RUN_JSON} gives no usable data_root ({exc}); the run's split is not used"
    if not data_root.is_dir():
        return None, f"the run's data folder {data_root} is missing; the run's split is not used"
    try:
        split = read_manifest(run_dir / MANIFEST, data_root)
    except (OSError, ValueError, KeyError) as exc:
        return None, f"{run_dir / MANIFEST} could not be read ({exc}); the run's split is not used"
    return split, None


def load_source(path: str | os.PathLike) -> Source:
    """Load the model (inference only) and its ModelInfo; refuse anything but one sigmoid output."""
    from emotion.train.model_io import load_model

    model_path, run_dir = locate(path)
    try:
        model, info = load_model(model_path)
    except ModelFileError as exc:
        raise ExportError(str(exc)) from None
    check_single_sigmoid(model, model_path)
    notes: list[str] = []
    split = None
    if run_dir is not None:
        split, why = read_run_split(run_dir)
        if why:
            notes.append(why)
    return Source(model_path, run_dir, model, info, split, notes)


def _final_activation(model: Any) -> str | None:
    """Name of the activation producing the model's output, or None when it cannot be told."""
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    if isinstance(layer, keras.Model) and len(getattr(layer, "outputs", []) or []) == 1:
        return _final_activation(layer)
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def check_single_sigmoid(model: Any, where: Path | str = "the model") -> None:
    """Export promises P(Positive) in [0, 1]: one image input (N, H, W, 3) and one sigmoid unit (N, 1)."""
    inputs = list(getattr(model, "inputs", None) or [])
    outputs = list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(tuple(inputs[0].shape)) != 4 or tuple(inputs[0].shape)[-1] != 3:
        shapes = ", ".join(str(tuple(i.shape)) for i in inputs) or "none"
        raise ExportError(f"{where}: expected one image input (N, H, W, 3), found {shapes}")
    if len(outputs) != 1 or tuple(outputs[0].shape)[1:] != (1,):
        shapes = ", ".join(str(tuple(o.shape)) for o in outputs) or "none"
        raise ExportError(
            f"{where}: output is {shapes}; emotion-export needs one sigmoid unit (N, 1) giving P(Positive)"
        )
    activation = _final_activation(model)
    if activation is not None and activation != "sigmoid":
        raise ExportError(
            f"{where}: the output unit's activation is {activation!r}; emotion-export needs a sigmoid giving "
            "P(Positive)"
        )
    if activation is None:  # a custom last layer: check the range instead of trusting it
        height, width = int(inputs[0].shape[1]), int(inputs[0].shape[2])
        probe = np.random.default_rng(0).random((2, height, width, 3), dtype=np.float32)
        values = np.asarray(model(probe, training=False))
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ExportError(f"{where}: the output is not a probability in [0, 1]; a sigmoid unit is needed")


# The Keras reference every exported model is held to lives with the model I/O it belongs to.
keras_predict = predict_proba
