"""Saving and loading Keras models with their :class:`ModelInfo` inside the ``.keras`` file.

A ``.keras`` file is a zip archive; we add one member, :data:`INFO_MEMBER`, which Keras ignores on load.
So the labels, threshold and preprocessing travel with the model file itself, and ``emotion-export`` finds
them whether it is given a run folder or a bare ``.keras`` file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from emotion.train import atomic
from emotion.runtime.metadata import FORMAT_KEY, ModelInfo
from emotion.runtime.preprocess import scale

INFO_MEMBER = "emotion_model_info.json"
MODEL_NAME = "model.keras"


class ModelFileError(ValueError):
    """The path is not a usable Keras model; the message says why."""


def save_model(model, path: str | os.PathLike, info: ModelInfo) -> Path:
    """Save ``model`` with ``info`` embedded, atomically: the file is absent or complete."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch) / MODEL_NAME  # Keras names the format by the file's suffix
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(INFO_MEMBER, json.dumps(info.to_strings(), indent=2))
        atomic.write_bytes(path, tmp.read_bytes())
    return Path(path)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run folder or a ``.keras`` file -> the ``.keras`` file, with a clear error otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_NAME
        if not path.is_file():
            raise ModelFileError(f"{path.parent} is not a training run folder: it has no {MODEL_NAME}")
    if not path.exists():
        raise ModelFileError(f"model {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model (.keras zip archive)")
    return path


def read_info(path: str | os.PathLike) -> ModelInfo:
    """The embedded :class:`ModelInfo`; defaults from the model's own input shape when it has none."""
    path = resolve_model_path(path)
    with zipfile.ZipFile(path) as archive:
        if INFO_MEMBER in archive.namelist():
            data = json.loads(archive.read(INFO_MEMBER))
            # The wire format of exported models; runs saved before it was used here hold the dataclass's fields.
            if FORMAT_KEY in data:
                return ModelInfo.from_strings(data)
            return ModelInfo(**{**data, "labels": tuple(data["labels"])})
    return ModelInfo()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: str | os.PathLike):
    """Load (keras.Model, ModelInfo) from a run folder or ``.keras`` file, for inference (no compile)."""
    import keras

    from . import models  # registers custom objects, if any

    path = resolve_model_path(path)
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=models.custom_objects())
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path} could not be loaded as a Keras model: {exc}") from None
    info = read_info(path).replace(source_sha256=file_sha256(path))
    shape = tuple(model.input_shape[1:])
    if shape != (info.input_height, info.input_width, 3):
        if INFO_MEMBER in zipfile.ZipFile(path).namelist():
            raise ModelFileError(f"{path}: model input {shape} does not match its metadata")
        info = info.replace(input_height=int(shape[0]), input_width=int(shape[1]))
    return model, info


def predict_proba(model, images, batch_size: int = 32):
    """P(Positive) for a uint8 (N, H, W, 3) RGB batch: the Keras reference every exported model is held to.

    Scales with :func:`emotion.runtime.preprocess.scale` (what training fed the model) in chunks, so a large
    batch does not need a float32 copy of itself in memory.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (N, H, W, 3) batch, got {images.dtype} {images.shape}")
    chunk = max(batch_size, 256)
    chunks = [np.asarray(model.predict(scale(images[start:start + chunk]), batch_size=batch_size, verbose=0))
              for start in range(0, len(images), chunk)]
    return np.concatenate(chunks).reshape(-1).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
