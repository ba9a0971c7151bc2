"""A training run folder as ``emotion-train`` writes it: the one reader that export, evaluation and benchmarks use.

The paths in ``split.csv`` are relative to the data folder that ``run.json`` names (``data_root``). A ``.keras``
file inside a run folder stands for that run, so ``RUN`` and ``RUN/model.keras`` mean the same everywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import MANIFEST_NAME, DataError, Split, read_manifest
from .model_io import MODEL_NAME, resolve_model_path

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
HISTORY_JSON = "history.json"


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run, named once; an unusable run.json or split.csv raises DataError."""

    path: Path

    @property
    def split_path(self) -> Path:
        return self.path / MANIFEST_NAME

    @property
    def config_path(self) -> Path:
        return self.path / RUN_JSON

    def is_run(self) -> bool:
        """Whether the folder holds a run's split and configuration (not just any folder or a bare model)."""
        return self.split_path.is_file() and self.config_path.is_file()

    def config(self) -> dict[str, Any]:
        """``run.json``: the resolved training options, ``data_root`` and the parameter count."""
        try:
            return dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{self.config_path} cannot be read ({exc})") from None

    @property
    def refit(self) -> bool:
        """Whether the model trained again on training + validation images: figures on its split are in-sample."""
        return bool(self.config().get("refit"))

    def recorded_data_root(self) -> str | None:
        """``run.json["data_root"]`` as recorded, whether or not the folder is still there."""
        root = self.config().get("data_root")
        return root if isinstance(root, str) and root else None

    def data_root(self) -> Path:
        """The data folder the run was trained on (``run.json["data_root"]``), which must still exist."""
        root = self.recorded_data_root()
        if root is None:
            raise DataError(f"{self.config_path} names no data_root; pass the data folder itself")
        if not Path(root).is_dir():
            raise DataError(f"the run's data folder {root} is missing; pass the data folder itself")
        return Path(root)

    def split(self, data_root: str | os.PathLike | None = None) -> Split:
        """The run's train/validation split, its paths under ``data_root`` (default: the run's own data folder)."""
        root = Path(data_root) if data_root is not None else self.data_root()
        try:
            return read_manifest(self.split_path, root)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{self.split_path} cannot be read ({exc})") from None

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``: validation metrics, dataset report and timings of the training run."""
        return json.loads((self.path / METRICS_JSON).read_text(encoding="utf-8"))


def locate(path: str | os.PathLike) -> tuple[Path, RunFolder | None]:
    """The ``.keras`` file that ``path`` (a run folder or a model file) names, and its run folder if it has one.

    Raises:
        ModelFileError: ``path`` is neither a run folder nor a Keras model file.
    """
    model_path = resolve_model_path(Path(path).expanduser())
    run = RunFolder(model_path.parent)
    return model_path, run if model_path.name == MODEL_NAME and run.is_run() else None
