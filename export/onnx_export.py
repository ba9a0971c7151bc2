"""Keras -> ONNX with tf2onnx: the one graph every exported file is made from.

The converted function takes the uint8 image and scales it itself (``cast`` then ``* float32(1/255)``, bit for
bit :func:`emotion.runtime.preprocess.scale`), so the shipped ONNX needs no editing and the IRs, converted from
this same file, need no preprocessing of their own.

Why ``from_function``: ``tf2onnx.convert.from_keras`` needs an explicit signature and fails on Keras 3 models
loaded from ``.keras`` files (tensorflow-onnx issue 2448). Wrapping the model in a ``tf.function`` that calls
it with ``training=False`` (what Keras' own ``model.export(format="onnx")`` does) gives an inference-only graph:
dropout gone, batch normalisation on its moving statistics.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from emotion.runtime.metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, ModelInfo

from .common import ExportError

OUTPUT_ORDER = (OUTPUT_SCORES, OUTPUT_PROBABILITY)  # Model API classifies with the first output
MODEL_API_PREFIX = "model_info"  # Model API reads ONNX metadata from keys "model_info <name>"


def _quiet_tf2onnx() -> None:
    """tf2onnx logs every rewrite at INFO; keep its warnings, drop the chatter."""
    from tf2onnx import verbose_logging

    verbose_logging.set_level(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def _patch_numpy2() -> None:
    """tf2onnx 1.17 uses ``np.object`` and friends, removed in NumPy 2; Keras ships the fix it applies itself."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # a Keras without the patch: tf2onnx may still work on this NumPy
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()


def convert(model: Any, info: ModelInfo, opset: int) -> Any:
    """The ONNX graph: input ``image`` uint8 (N, H, W, 3) RGB; outputs ``scores`` (N, 2) and ``probability`` (N, 1).

    Raises:
        ExportError: tf2onnx cannot convert the model, or its result does not have our tensor names.
    """
    import tensorflow as tf

    _patch_numpy2()
    import tf2onnx

    _quiet_tf2onnx()
    spec = (tf.TensorSpec((None, info.input_height, info.input_width, 3), tf.uint8, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image):
        pixels = tf.cast(image, tf.float32) * tf.constant(np.float32(1.0 / 255.0))
        probability = tf.reshape(tf.cast(model(pixels, training=False), tf.float32), (-1, 1))
        scores = tf.concat([1.0 - probability, probability], axis=1)
        return {OUTPUT_SCORES: scores, OUTPUT_PROBABILITY: probability}

    try:
        proto, _ = tf2onnx.convert.from_function(serve, spec, opset=opset)
    except Exception as exc:  # tf2onnx raises bare exceptions for unsupported ops
        raise ExportError(f"tf2onnx could not convert the model: {type(exc).__name__}: {exc}") from None
    names = [o.name for o in proto.graph.output]
    if sorted(names) != sorted(OUTPUT_ORDER) or [i.name for i in proto.graph.input] != [INPUT_NAME]:
        raise ExportError(f"tf2onnx produced unexpected tensor names: inputs "
                          f"{[i.name for i in proto.graph.input]}, outputs {names}")
    _order_outputs(proto)
    _name_batch_dimension(proto)
    return proto


def _order_outputs(proto: Any) -> None:
    by_name = {o.name: copy.deepcopy(o) for o in proto.graph.output}
    del proto.graph.output[:]
    proto.graph.output.extend(by_name[name] for name in OUTPUT_ORDER)


def _name_batch_dimension(proto: Any) -> None:
    """tf2onnx names the dynamic batch ``unk__N``; call it ``batch`` everywhere for readers of the graph."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def set_metadata(proto: Any, strings: Mapping[str, str]) -> None:
    """ModelInfo strings as flat ``metadata_props`` (ours) and as ``model_info <key>`` (OpenVINO Model API)."""
    del proto.metadata_props[:]
    for key, value in strings.items():
        proto.metadata_props.add(key=key, value=value)
        proto.metadata_props.add(key=f"{MODEL_API_PREFIX} {key}", value=value)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The flat ``metadata_props`` of an ONNX file (what :meth:`ModelInfo.from_strings` reads)."""
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if " " not in p.key}


def keras_to_onnx(model: Any, info: ModelInfo, opset: int, strings: Mapping[str, str], path: Path) -> Path:
    """Convert ``model``, describe it, attach ``strings`` as metadata, check it and save it as ``path``."""
    import onnx

    proto = convert(model, info, opset)
    proto.doc_string = (
        f"emotion-edge {info.name} v{info.version}: input '{INPUT_NAME}' uint8 NHWC RGB "
        f"{info.input_height}x{info.input_width}; outputs '{OUTPUT_SCORES}' [P(Negative), P(Positive)] and "
        f"'{OUTPUT_PROBABILITY}' P(Positive)"
    )
    set_metadata(proto, strings)
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, os.fspath(path))
    return path
