"""The versions of the libraries that shaped a result: one reporter for training runs, exports and benchmarks."""

from __future__ import annotations

import platform
from importlib import metadata

# Report name -> the distributions that provide it (the first one installed wins).
LIBRARIES = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-intel"),
    "keras": ("keras",),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
    "numpy": ("numpy",),
    "pillow": ("pillow",),
}
TRAINING = ("tensorflow", "keras", "numpy")


def library_versions(names: tuple[str, ...] = tuple(LIBRARIES)) -> dict[str, str]:
    """Python's version and each named library's (keys of :data:`LIBRARIES`), or "not installed"; read from the
    installed package metadata, so nothing is imported."""
    versions = {"python": platform.python_version()}
    for name in names:
        versions[name] = next((_version(d) for d in LIBRARIES[name] if _version(d)), "not installed")
    return versions


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
