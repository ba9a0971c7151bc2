"""Finding the model file to load from whatever the user points at.

Accepted, for ``EmotionClassifier.load`` and ``emotion-infer --model``:

* a model file: ``model.xml`` (OpenVINO IR, with its ``.bin`` beside it) or ``model.onnx``;
* a version folder ``<name>/<version>/`` holding ``model.xml`` (or ``model.onnx``);
* a repository folder ``<name>/`` of numbered version folders: the highest version is taken;
* an export folder (what ``emotion-export`` writes): ``<name>/``, ``<name>-fp16/``, ``<name>-int8/``,
  ``<name>.onnx``, ``export_report.json``; the fp32 ``<name>/`` is taken unless ``variant`` says
  ``"fp16"`` or ``"int8"`` (without ``variant``, an export holding no fp32 model gives its fp16, else its
  int8 one), and ``<name>.onnx`` for the onnxruntime backend;
* a folder of export folders (``./exports/``): its most recent export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .backends import ModelLoadError

EXPORTS_DIR = "exports"
MODEL_ENV = "EMOTION_MODEL"
REPORT_NAME = "export_report.json"
VARIANTS = ("fp32", "fp16", "int8")
MODEL_SUFFIXES = (".xml", ".onnx")
HOW_TO_EXPORT = "export one with `emotion-export RUN --out exports/NAME`"


def normalize_variant(variant: str | None) -> str | None:
    if variant is None:
        return None
    value = str(variant).lower()
    if value not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return value


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    dirs = []
    for entry in entries:
        if entry.name.startswith("."):  # hidden, and atomic_directory's ".NAME.*.partial" work folders
            continue
        try:
            if entry.is_dir():
                dirs.append(Path(entry.path))
        except OSError:
            continue
    return dirs


def _model_in_version(folder: Path, backend: str) -> Path | None:
    """The model file of a version folder, preferring the backend's own format."""
    order = (".onnx",) if backend == "onnxruntime" else (".xml", ".onnx")
    for suffix in order:
        preferred = folder / f"model{suffix}"
        if preferred.is_file():
            return preferred
        found = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
        if len(found) == 1:
            return found[0]
    return None


def _versions(folder: Path) -> list[tuple[int, Path]]:
    """Numbered version folders holding a model file (xml or onnx), lowest first."""
    found = []
    for sub in _visible_dirs(folder):
        if sub.name.isdigit() and any((sub / f"model{s}").is_file() or any(sub.glob(f"*{s}")) for s in MODEL_SUFFIXES):
            found.append((int(sub.name), sub))
    return sorted(found)


def is_repository(folder: Path) -> bool:
    return bool(_versions(folder))


def is_export(folder: Path) -> bool:
    """An export folder: it has a report, or model repositories (``<name>/<version>/``) inside."""
    if (folder / REPORT_NAME).is_file():
        return True
    return any(is_repository(sub) for sub in _visible_dirs(folder))


def _latest_version(folder: Path, backend: str) -> Path:
    versions = _versions(folder)
    for _, version in reversed(versions):
        model = _model_in_version(version, backend)
        if model is not None:
            return model
    kind = "an .onnx model" if backend == "onnxruntime" else "a model"
    raise ModelLoadError(f"{folder}: no version folder holds {kind}")


def _report_name(folder: Path) -> str | None:
    try:
        data = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict):
        for key in ("name", "model_name"):
            if isinstance(data.get(key), str):
                return data[key]
    return None


def _split_variant(name: str) -> tuple[str, str]:
    for variant in VARIANTS[1:]:
        if name.endswith(f"-{variant}"):
            return name[: -len(variant) - 1], variant
    return name, "fp32"


def _from_export(folder: Path, backend: str, variant: str | None) -> Path:
    wanted = variant or "fp32"
    repositories = {sub.name: sub for sub in _visible_dirs(folder) if is_repository(sub)}
    onnx_files = {p.stem: p for p in folder.glob("*.onnx") if p.is_file() and not p.name.startswith(".")}
    names = sorted({_split_variant(n)[0] for n in list(repositories) + list(onnx_files)})
    if not names:
        raise ModelLoadError(f"{folder}: the export folder holds no model; {HOW_TO_EXPORT}")
    if len(names) > 1:
        reported = _report_name(folder)
        if reported in names:
            names = [reported]
        else:
            raise ModelLoadError(
                f"{folder}: the export folder holds several models ({', '.join(names)}); pass one of their folders"
            )
    name = names[0]
    key = name if wanted == "fp32" else f"{name}-{wanted}"
    available = sorted(_split_variant(n)[1] for n in repositories if _split_variant(n)[0] == name)
    if backend == "onnxruntime":
        if key in onnx_files:
            return onnx_files[key]
        if key in repositories:  # a repository of ONNX versions (Triton layout)
            try:
                return _latest_version(repositories[key], backend)
            except ModelLoadError:
                pass
        have = sorted(_split_variant(n)[1] for n in onnx_files if _split_variant(n)[0] == name)
        raise ModelLoadError(
            f"{folder}: no {wanted} ONNX model ({name}.onnx) in the export"
            + (f"; ONNX variants here: {', '.join(have)}" if have else "")
        )
    if key in repositories:
        return _latest_version(repositories[key], backend)
    if variant is None:  # no fp32 exported (emotion-export --precision int8): the most precise one there is
        for other in VARIANTS[1:]:
            if f"{name}-{other}" in repositories:
                return _latest_version(repositories[f"{name}-{other}"], backend)
    if wanted == "fp32" and not repositories and key in onnx_files:
        return onnx_files[key]  # an export with only the ONNX file: OpenVINO reads ONNX too
    raise ModelLoadError(
        f"{folder}: no {wanted} model {key}/ in the export"
        + (f"; variants here: {', '.join(available)}" if available else "")
    )


def latest_export(root: str | os.PathLike) -> Path | None:
    """The most recent export folder in ``root`` (by its report's time, else the folder's), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    best: tuple[float, str, Path] | None = None
    for sub in _visible_dirs(root):
        if not is_export(sub) or is_repository(sub):
            continue
        report = sub / REPORT_NAME
        try:
            stamp = (report if report.is_file() else sub).stat().st_mtime
        except OSError:
            continue
        if best is None or (stamp, sub.name) > best[:2]:
            best = (stamp, sub.name, sub)
    return best[2] if best else None


def resolve_model(path: str | os.PathLike, backend: str = "openvino", variant: str | None = None) -> Path:
    """The model file (.xml or .onnx) that ``path`` designates, for ``backend``; see the module docstring."""
    path = Path(os.fsdecode(path)) if isinstance(path, bytes) else Path(path)
    variant = normalize_variant(variant)
    if not path.exists():
        if path.is_symlink():
            raise ModelLoadError(f"model {path} is a broken symbolic link")
        raise ModelLoadError(f"model {path} does not exist")
    if path.is_file():
        if variant not in (None, "fp32"):
            raise ModelLoadError(f"variant={variant} selects among an export's models, and {path} is a model file")
        suffix = path.suffix.lower()
        if suffix == ".bin" and path.with_suffix(".xml").is_file():
            path, suffix = path.with_suffix(".xml"), ".xml"
        if suffix not in MODEL_SUFFIXES:
            raise ModelLoadError(f"{path} is not a model file: expected an OpenVINO .xml or an .onnx file")
        if backend == "onnxruntime" and suffix != ".onnx":
            raise ModelLoadError(f"{path} is an OpenVINO IR; the onnxruntime backend needs an .onnx model")
        return path
    if not path.is_dir():
        raise ModelLoadError(f"{path} is neither a model file nor a folder")
    single = f"variant={variant} selects among an export's models, and {path} holds a single model"
    if is_repository(path):
        if variant not in (None, "fp32"):
            raise ModelLoadError(single)
        return _latest_version(path, backend)
    if is_export(path):
        return _from_export(path, backend, variant)
    direct = _model_in_version(path, backend)
    if direct is not None:
        if variant not in (None, "fp32"):
            raise ModelLoadError(single)
        return direct
    if backend == "onnxruntime" and _model_in_version(path, "openvino") is not None:
        raise ModelLoadError(f"{path} holds an OpenVINO IR; the onnxruntime backend needs an .onnx model")
    newest = latest_export(path)
    if newest is not None:
        return _from_export(newest, backend, variant)
    raise ModelLoadError(f"{path} holds no model (no .xml/.onnx, version folder or export); {HOW_TO_EXPORT}")


def default_model(environ: dict[str, str] | None = None, cwd: str | os.PathLike | None = None) -> Path:
    """``$EMOTION_MODEL``, else the most recent export under ``./exports/``; a how-to error if neither."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(MODEL_ENV)
    if explicit:
        return Path(explicit)
    root = Path(cwd or ".") / EXPORTS_DIR
    newest = latest_export(root)
    if newest is None:
        raise ModelLoadError(
            f"no model given and no export under {root}/: pass --model PATH, set {MODEL_ENV}, or {HOW_TO_EXPORT}"
        )
    return newest
