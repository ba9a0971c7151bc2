"""The export's input: a training run folder or a bare ``.keras`` file, checked before any slow work.

A run (:class:`emotion.train.run_folder.RunFolder`) also gives the training split (calibration images) and the
validation split (verification images); a ``.keras`` file inside a run folder stands for that run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion.runtime.metadata import ModelInfo
from emotion.train.data import DataError
from emotion.train.model_io import ModelFileError
from emotion.train.run_folder import RunFolder, locate as locate_run

from .common import ExportError


@dataclass
class Source:
    """A loaded Keras model with its metadata and, when it came from a run, that run's split."""

    model: Any  # keras.Model
    info: ModelInfo
    split: Any | None  # emotion.train.data.Split
    notes: list[str]
    refit: bool = False  # the model also trained on the split's validation images


def locate(path: str | os.PathLike) -> tuple[Path, RunFolder | None]:
    """(the .keras file, its run or None), with a one-line :class:`ExportError` otherwise. No TensorFlow."""
    raw = Path(path).expanduser()
    if not raw.exists() and not raw.is_symlink():
        raise ExportError(f"{raw} does not exist; give a training run folder or a .keras model file")
    try:
        return locate_run(raw)
    except ModelFileError as exc:
        raise ExportError(str(exc)) from None


def load_source(path: str | os.PathLike) -> Source:
    """Load the model (inference only) and its ModelInfo; refuse anything but one sigmoid output."""
    from emotion.train.model_io import load_model

    model_path, run = locate(path)
    try:
        model, info = load_model(model_path)
    except ModelFileError as exc:
        raise ExportError(str(exc)) from None
    check_single_sigmoid(model, model_path)
    try:
        split = run.split() if run else None
    except DataError as exc:
        return Source(model, info, None, [f"{exc}; the run's split is not used"])
    return Source(model, info, split, [], bool(run and run.refit))


def _final_activation(model: Any) -> str | None:
    """Name of the activation producing the model's output, or None when it cannot be told."""
    import keras

    layer = getattr(getattr(model.outputs[0], "_keras_history", None), "operation", None)
    if isinstance(layer, keras.Model) and len(layer.outputs or []) == 1:
        return _final_activation(layer)
    return getattr(getattr(layer, "activation", None), "__name__", None)


def check_single_sigmoid(model: Any, where: Path | str = "the model") -> None:
    """Export promises P(Positive) in [0, 1]: one image input (N, H, W, 3) and one sigmoid unit (N, 1)."""
    inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or tuple(inputs[0].shape)[-1] != 3:
        shapes = ", ".join(str(tuple(i.shape)) for i in inputs) or "none"
        raise ExportError(f"{where}: expected one image input (N, H, W, 3), found {shapes}")
    if len(outputs) != 1 or tuple(outputs[0].shape)[1:] != (1,):
        shapes = ", ".join(str(tuple(o.shape)) for o in outputs) or "none"
        raise ExportError(f"{where}: output is {shapes}; emotion-export needs one sigmoid unit (N, 1) giving "
                          "P(Positive)")
    activation = _final_activation(model)
    if activation not in (None, "sigmoid"):
        raise ExportError(f"{where}: the output unit's activation is {activation!r}; emotion-export needs a sigmoid "
                          "giving P(Positive)")
    if activation is None:  # a custom last layer: check the range instead of trusting it
        probe = np.random.default_rng(0).random((2, *tuple(inputs[0].shape)[1:3], 3), dtype=np.float32)
        values = np.asarray(model(probe, training=False))
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ExportError(f"{where}: the output is not a probability in [0, 1]; a sigmoid unit is needed")
