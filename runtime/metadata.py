"""Model metadata: the one source of truth for labels, threshold, input size and preprocessing.

Stored in ``model.keras``, the IR's ``rt_info["model_info"]`` and the ONNX ``metadata_props``, all values as
strings. As OpenVINO Model API does, the reader walks one typed list of parameters (the fields, each with its
wire key, named after Model API's where one exists, and default), ignores unknown keys, names a missing required one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from .preprocess import DEFAULT_INPUT_SIZE, DEFAULT_RESIZE_FILTER, PreprocessSpec

DEFAULT_LABELS = ("Negative", "Positive")  # class index 0 and 1, the seed's folder names
FORMAT_VERSION = "1"
FORMAT_KEY = "emotion_edge_format"
RT_INFO_SECTION = "model_info"
INPUT_NAME = "image"  # the input of every exported model: uint8 NHWC RGB
OUTPUT_PROBABILITY = "probability"  # (N, 1) P(Positive)
OUTPUT_SCORES = "scores"  # (N, 2) [P(Negative), P(Positive)], what OpenVINO Model API reads
# Constant for every emotion-edge model. With ``embedded_processing`` false, Model API adds in memory at load its own
# preprocessing: a BGR photo of any size resized (bilinear, aspect not kept, as ours) and turned to RGB; no mean,
# no scale (the graph divides by 255). The files are unchanged, so emotion.runtime feeds them as before.
FIXED = {
    "model_type": "Classification", "task_type": "classification", "positive_index": "1", "input_name": INPUT_NAME,
    "input_dtype": "uint8", "layout": "NHWC", "color_order": "RGB", "output_raw_scores": "True",
    "embedded_processing": "False", "reverse_input_channels": "True", "resize_type": "standard",
    "interpolation_mode": "LINEAR", "mean_values": "", "scale_values": "",
}


def shortest(value: float) -> float:
    """A float32 as the shortest decimal that reads back to the same float32 (0.93, not 0.9300000071525574)."""
    return float(str(np.float32(value)))


class ModelLoadError(ValueError):
    """The model cannot be used (missing, corrupt, no metadata, wrong input, ...); the message says why."""


def _param(key: str, default: Any, *, parse=str, dump=str, required: bool = False) -> Any:
    """A metadata parameter: its wire key, default, string conversions, and whether a model must carry it."""
    meta = {"key": key, "parse": parse, "dump": dump, "required": required}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True)


def _labels(text: str) -> tuple[str, str]:
    labels = tuple(text.split(" "))
    if len(labels) != 2:
        raise ValueError(f"expected two labels, got {text!r}")
    return labels  # type: ignore[return-value]


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:  # NaN too: every image would be labelled the first label
        raise ValueError(f"expected a probability from 0 to 1, got {text!r}")
    return value


@dataclass(frozen=True)
class ModelInfo:
    """Everything a runtime needs to feed a model and read its answer."""

    labels: tuple[str, str] = _param("labels", DEFAULT_LABELS, parse=_labels, dump=" ".join, required=True)
    threshold: float = _param("decision_threshold", 0.5, parse=_probability, dump=lambda v: repr(float(v)))
    input_height: int = _param("orig_height", DEFAULT_INPUT_SIZE[0], parse=int, required=True)
    input_width: int = _param("orig_width", DEFAULT_INPUT_SIZE[1], parse=int, required=True)
    resize_filter: str = _param("resize_filter", DEFAULT_RESIZE_FILTER)
    architecture: str = _param("architecture", "seed")
    name: str = _param("model_name", "emotion")
    version: str = _param("model_version", "1")
    precision: str = _param("precision", "fp32")
    source_sha256: str = _param("source_sha256", "")
    metrics: Mapping[str, Any] = _param("training_metrics", {}, parse=json.loads, dump=_json)
    versions: Mapping[str, str] = _param("versions", {}, parse=json.loads, dump=_json)

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return PreprocessSpec(self.input_height, self.input_width, self.resize_filter)

    def label_for(self, probability: float) -> str:
        """The label of a P(Positive): index 1 when it reaches the threshold."""
        return self.labels[1] if probability >= self.threshold else self.labels[0]

    def replace(self, **changes: Any) -> "ModelInfo":
        return replace(self, **changes)

    def to_strings(self) -> dict[str, str]:
        """The flat string map for ``rt_info["model_info"]`` and ONNX ``metadata_props``."""
        values = {f.metadata["key"]: f.metadata["dump"](getattr(self, f.name)) for f in fields(self)}
        size = {"input_height": values["orig_height"], "input_width": values["orig_width"]}
        return {FORMAT_KEY: FORMAT_VERSION, **FIXED, **size, **values}

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> "ModelInfo":
        """Read what :meth:`to_strings` wrote; :class:`ModelLoadError` if a required key is missing or malformed."""
        if FORMAT_KEY not in values:
            raise ModelLoadError("the model has no emotion-edge metadata (rt_info 'model_info' / ONNX "
                                 "metadata_props); export it with emotion-export")
        if values[FORMAT_KEY] != FORMAT_VERSION or values.get("layout", "NHWC") != "NHWC":
            raise ModelLoadError(f"metadata format {values[FORMAT_KEY]!r} is not supported "
                                 f"(expected {FORMAT_VERSION}, NHWC)")
        parsed = {}
        for f in fields(cls):
            key = f.metadata["key"]
            if key not in values:
                if f.metadata["required"]:
                    raise ModelLoadError(f"the model's metadata has no {key!r}; re-export it with emotion-export")
                continue
            try:
                parsed[f.name] = f.metadata["parse"](values[key])
            except ValueError as exc:
                raise ModelLoadError(f"the model's metadata {key!r} is malformed: {exc}") from None
        info = cls(**parsed)
        try:
            info.preprocess_spec  # input size and resize filter, checked together
        except ValueError as exc:
            raise ModelLoadError(f"the model's metadata is malformed: {exc}") from None
        return info
