"""The model file to load, from what the user points at.

The documented forms: a ``.xml`` (OpenVINO IR, its ``.bin`` beside it) or ``.onnx`` file; a version folder
``NAME/1/`` holding ``model.xml`` or ``model.onnx``; a repository folder ``NAME/`` of numbered versions (the
highest wins); and an export folder as ``emotion-export`` writes it (``NAME/``, ``NAME-fp16/``,
``NAME-int8/``, ``NAME.onnx``), where ``variant`` picks fp32 (the default; failing that the most precise one
exported), fp16 or int8. Without a path, :func:`default_model` gives ``$EMOTION_MODEL`` or the newest export
under ``./exports/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .metadata import ModelLoadError

VARIANTS = ("fp32", "fp16", "int8")
MODEL_ENV = "EMOTION_MODEL"
REPORT_NAME = "export_report.json"
HOW_TO_EXPORT = "export one with `emotion-export RUN --out exports/NAME`"


def resolve_model(path: str | os.PathLike, backend: str | None = None, variant: str | None = None) -> Path:
    """The ``.xml`` or ``.onnx`` file that ``path`` designates (see the module docstring).

    ``backend="onnxruntime"`` looks for ``.onnx`` files only, otherwise ``.xml`` comes first. Raises
    :class:`ModelLoadError` when nothing usable is there, saying what was found instead.
    """
    path = Path(os.fsdecode(path))
    suffixes = (".onnx",) if backend == "onnxruntime" else (".xml", ".onnx")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if not path.exists():
        raise ModelLoadError(f"model {path} {'is a broken symbolic link' if path.is_symlink() else 'does not exist'}")
    if path.is_file():
        if path.suffix.lower() == ".bin" and path.with_suffix(".xml").is_file():
            path = path.with_suffix(".xml")
        if path.suffix.lower() not in suffixes:
            raise ModelLoadError(f"{path} is not a model file: expected {' or '.join(suffixes)}")
    model = path if path.is_file() else _model_in(path, suffixes)
    if model is None:  # not a version folder nor a repository of versions: an export folder
        return _from_export(path, suffixes, variant)
    if variant not in (None, "fp32"):
        raise ModelLoadError(f"variant {variant} chooses among an export folder's models, and {path} is one model")
    return model


def default_model(environ: dict[str, str] | None = None, cwd: str | os.PathLike = ".") -> Path:
    """``$EMOTION_MODEL``, else the newest export (by its report's time) under ``./exports/``."""
    explicit = (os.environ if environ is None else environ).get(MODEL_ENV)
    if explicit:
        return Path(explicit)
    root = Path(cwd) / "exports"
    exports = [d for d in _folders(root) if (d / REPORT_NAME).is_file()]
    if not exports:
        raise ModelLoadError(f"no model given and no export under {root}/: pass --model PATH, set {MODEL_ENV}, "
                             f"or {HOW_TO_EXPORT}")
    return max(exports, key=lambda d: ((d / REPORT_NAME).stat().st_mtime, d.name))


def _model_in(folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    """``folder``'s own ``model.xml`` or ``model.onnx``, else the one of its highest numbered version folder."""
    versions = sorted((int(d.name), d) for d in _folders(folder) if d.name.isdigit())
    for where in [folder] + [d for _, d in reversed(versions)]:
        if model := next((where / f"model{s}" for s in suffixes if (where / f"model{s}").is_file()), None):
            return model
    return None


def _from_export(folder: Path, suffixes: tuple[str, ...], variant: str | None) -> Path:
    names = {d.name for d in _folders(folder) if _model_in(d, (".xml", ".onnx"))}
    names |= {p.stem for p in folder.glob("*.onnx") if not p.name.startswith(".")}
    bases = {n.rsplit("-", 1)[0] if n.endswith(("-fp16", "-int8")) else n for n in names}
    if len(bases) != 1:
        found = f"holds several models ({', '.join(sorted(bases))}); pass one of their folders" if bases else (
            f"holds no model (no .xml/.onnx, version folder or export); {HOW_TO_EXPORT}")
        raise ModelLoadError(f"{folder} {found}")
    base = bases.pop()
    for wanted in [variant] if variant else VARIANTS:
        key = base if wanted == "fp32" else f"{base}-{wanted}"
        model = _model_in(folder / key, suffixes) or ((folder / f"{key}.onnx") if ".onnx" in suffixes else None)
        if model and model.is_file():
            return model
    kind = "ONNX model" if suffixes == (".onnx",) else "model"
    have = ", ".join(sorted(n.removeprefix(base).lstrip("-") or "fp32" for n in names))
    raise ModelLoadError(f"{folder}: no {variant or 'fp32'} {kind} in the export; variants here: {have}")


def _folders(folder: Path) -> list[Path]:
    """Visible sub-folders (not ``.NAME.*.partial`` work folders of an export being written)."""
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []
