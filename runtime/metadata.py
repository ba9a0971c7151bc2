"""Model metadata: the one source of truth for labels, threshold, input size and preprocessing.

Training stores a :class:`ModelInfo` inside ``model.keras``; ``emotion-export`` copies it into the OpenVINO
IR's ``rt_info["model_info"]`` and the ONNX file's ``metadata_props``; the runtime and the server read it back
from there. Key names follow OpenVINO Model API / Training Extensions where one exists (``model_type``,
``labels``, ``resize_type``, ``reverse_input_channels``, ``mean_values``, ``scale_values``,
``embedded_processing``, ``task_type``); the rest are ours. All values are strings on the wire, as
``rt_info`` and ONNX metadata require.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .preprocess import DEFAULT_INPUT_SIZE, DEFAULT_RESIZE_FILTER, PreprocessSpec

DEFAULT_LABELS = ("Negative", "Positive")  # class index 0 and 1, the seed's folder names
FORMAT_VERSION = "1"
RT_INFO_SECTION = "model_info"
INPUT_NAME = "image"  # the stable input name of every exported model: uint8 NHWC RGB
OUTPUT_PROBABILITY = "probability"  # (N, 1) P(Positive)
OUTPUT_SCORES = "scores"  # (N, 2) [P(Negative), P(Positive)], for OpenVINO Model API


class MetadataError(ValueError):
    """The model carries no emotion-edge metadata, or metadata this runtime cannot use."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything a runtime needs to feed a model and read its answer."""

    labels: tuple[str, str] = DEFAULT_LABELS
    threshold: float = 0.5
    input_height: int = DEFAULT_INPUT_SIZE[0]
    input_width: int = DEFAULT_INPUT_SIZE[1]
    resize_filter: str = DEFAULT_RESIZE_FILTER
    architecture: str = "seed"
    name: str = "emotion"
    version: str = "1"
    precision: str = "fp32"
    source_sha256: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return PreprocessSpec(self.input_height, self.input_width, self.resize_filter)

    def label_for(self, probability: float) -> str:
        """Label of a P(Positive): index 1 when it reaches the threshold."""
        return self.labels[1] if probability >= self.threshold else self.labels[0]

    def replace(self, **changes: Any) -> "ModelInfo":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ModelInfo(**values)

    # -- wire format ---------------------------------------------------------------------------------
    def to_strings(self) -> dict[str, str]:
        """Flat string map for ``rt_info["model_info"]`` and ONNX ``metadata_props``."""
        return {
            "emotion_edge_format": FORMAT_VERSION,
            "model_type": "Classification",
            "task_type": "classification",
            "labels": " ".join(self.labels),
            "decision_threshold": repr(float(self.threshold)),
            "positive_index": "1",
            "input_name": INPUT_NAME,
            "input_height": str(self.input_height),
            "input_width": str(self.input_width),
            "orig_height": str(self.input_height),  # Model API's names for the input size
            "orig_width": str(self.input_width),
            "input_dtype": "uint8",
            "layout": "NHWC",
            "color_order": "RGB",
            "reverse_input_channels": "False",
            "resize_type": "standard",
            "resize_filter": self.resize_filter,
            "mean_values": "0 0 0",
            "scale_values": "255 255 255",
            "embedded_processing": "True",
            "output_raw_scores": "True",
            "architecture": self.architecture,
            "model_name": self.name,
            "model_version": self.version,
            "precision": self.precision,
            "source_sha256": self.source_sha256,
            "training_metrics": json.dumps(dict(self.metrics), sort_keys=True),
            "versions": json.dumps(dict(self.versions), sort_keys=True),
        }

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> "ModelInfo":
        """Parse what :meth:`to_strings` wrote; a clear :class:`MetadataError` if it is not ours."""
        if "emotion_edge_format" not in values:
            raise MetadataError(
                "the model has no emotion-edge metadata (rt_info 'model_info' / ONNX metadata_props); "
                "export it with emotion-export"
            )
        if values["emotion_edge_format"] != FORMAT_VERSION:
            raise MetadataError(
                f"metadata format {values['emotion_edge_format']!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            labels = tuple(values["labels"].split(" "))
            if len(labels) != 2:
                raise MetadataError(f"expected two labels, got {values['labels']!r}")
            if values.get("layout", "NHWC") != "NHWC" or values.get("input_dtype", "uint8") != "uint8":
                raise MetadataError("only uint8 NHWC inputs are supported")
            return cls(
                labels=labels,  # type: ignore[arg-type]
                threshold=float(values["decision_threshold"]),
                input_height=int(values["input_height"]),
                input_width=int(values["input_width"]),
                resize_filter=values.get("resize_filter", DEFAULT_RESIZE_FILTER),
                architecture=values.get("architecture", ""),
                name=values.get("model_name", "emotion"),
                version=values.get("model_version", "1"),
                precision=values.get("precision", ""),
                source_sha256=values.get("source_sha256", ""),
                metrics=json.loads(values.get("training_metrics", "{}")),
                versions=json.loads(values.get("versions", "{}")),
            )
        except MetadataError:
            raise
        except (KeyError, ValueError) as exc:
            raise MetadataError(f"model metadata is incomplete or malformed: {exc}") from None

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        data = json.loads(text)
        data["labels"] = tuple(data["labels"])
        return cls(**data)
