"""Model metadata: the one source of truth for labels, threshold, input size and preprocessing.

Training stores a :class:`ModelInfo` inside ``model.keras``; ``emotion-export`` writes it into the OpenVINO IR's
``rt_info["model_info"]`` and the ONNX file's ``metadata_props``; the runtime and the server read it back. As
OpenVINO Model API does, the reader walks one typed list of parameters (the dataclass fields, each with its
wire key and default), ignores keys it does not know and names a missing required one. Key names follow Model
API where one exists (``labels``, ``orig_height``, ``resize_type``, ``scale_values``, ...). All values are
strings on the wire, as ``rt_info`` and ONNX metadata require.
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
# Constant for every emotion-edge model. With ``embedded_processing`` false, OpenVINO Model API adds, in memory at
# load, its own preprocessing in front of the uint8 input: a BGR photo of any size (what cv2.imread gives) resized
# (OpenCV-style bilinear, aspect ratio not kept, as ours) and turned to RGB; no mean and no scale, the graph
# divides by 255 itself. The files are unchanged, so emotion.runtime feeds them as before.
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


def _labels(text: str) -> tuple[str, str]:
    labels = tuple(text.split(" "))
    if len(labels) != 2:
        raise ValueError(f"expected two labels, got {text!r}")
    return labels  # type: ignore[return-value]


def _json_dump(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True)


@dataclass(frozen=True)
class ModelInfo:
    """Everything a runtime needs to feed a model and read its answer.

    Example:
        >>> info = ModelInfo(threshold=0.4)
        >>> ModelInfo.from_strings(info.to_strings()) == info
        True
    """

    labels: tuple[str, str] = _param("labels", DEFAULT_LABELS, parse=_labels, dump=" ".join, required=True)
    threshold: float = _param("decision_threshold", 0.5, parse=float, dump=lambda v: repr(float(v)))
    input_height: int = _param("orig_height", DEFAULT_INPUT_SIZE[0], parse=int, required=True)
    input_width: int = _param("orig_width", DEFAULT_INPUT_SIZE[1], parse=int, required=True)
    resize_filter: str = _param("resize_filter", DEFAULT_RESIZE_FILTER)
    architecture: str = _param("architecture", "seed")
    name: str = _param("model_name", "emotion")
    version: str = _param("model_version", "1")
    precision: str = _param("precision", "fp32")
    source_sha256: str = _param("source_sha256", "")
    metrics: Mapping[str, Any] = _param("training_metrics", {}, parse=json.loads, dump=_json_dump)
    versions: Mapping[str, str] = _param("versions", {}, parse=json.loads, dump=_json_dump)

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
        """Read what :meth:`to_strings` wrote; unknown keys are ignored.

        Raises:
            ModelLoadError: not emotion-edge metadata, a required key missing, or a value that does not parse.
        """
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
        return cls(**parsed)
