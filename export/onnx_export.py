"""Keras -> ONNX with tf2onnx: the one graph every exported file is made from.

The converted function takes the uint8 image and scales it itself (``cast`` then ``* float32(1/255)``, bit for
bit :func:`emotion.runtime.preprocess.scale`), so the IRs, converted from this same file, need no preprocessing.

``from_function``, not ``from_keras``: the latter fails on Keras 3 models loaded from ``.keras`` files
(tensorflow-onnx issue 2448). A ``tf.function`` calling the model with ``training=False`` (as Keras' own ONNX
export does) gives an inference-only graph: dropout gone, batch normalisation on its moving statistics.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from emotion.runtime.metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, ModelInfo

from .common import ExportError

OUTPUT_ORDER = (OUTPUT_SCORES, OUTPUT_PROBABILITY)  # Model API classifies with the first output
MODEL_API_PREFIX = "model_info"  # Model API reads ONNX metadata from keys "model_info <name>"


def _import_tf2onnx() -> Any:
    """tf2onnx, patched for NumPy 2 and without its INFO chatter (it logs every rewrite)."""
    import warnings

    # tf2onnx 1.17 uses ``np.object`` and friends, removed in NumPy 2; Keras ships the fix it applies itself
    # (a Keras without it: tf2onnx may still work on this NumPy).
    with contextlib.suppress(ImportError), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    import tf2onnx
    from tf2onnx import verbose_logging

    verbose_logging.set_level(logging.ERROR)  # the "tf2onnx" logger, and TensorFlow's
    return tf2onnx


def keras_to_onnx(model: Any, info: ModelInfo, opset: int, strings: Mapping[str, str], path: Path) -> Path:
    """Save ``model`` as the ONNX graph ``path``, ``strings`` as its metadata: input ``image`` uint8 (N, H, W, 3)
    RGB; outputs ``scores`` (N, 2) and ``probability`` (N, 1).

    Raises:
        ExportError: tf2onnx cannot convert the model, or its result does not have our tensor names.
    """
    import onnx
    import tensorflow as tf

    tf2onnx = _import_tf2onnx()
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
    inputs, outputs = [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    if sorted(outputs) != sorted(OUTPUT_ORDER) or inputs != [INPUT_NAME]:
        raise ExportError(f"tf2onnx produced unexpected tensor names: inputs {inputs}, outputs {outputs}")
    proto.graph.output.sort(key=lambda o: OUTPUT_ORDER.index(o.name))
    for value in list(proto.graph.input) + list(proto.graph.output):  # tf2onnx calls the batch ``unk__N``
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    proto.doc_string = (f"emotion-edge {info.name} v{info.version}: input '{INPUT_NAME}' uint8 NHWC RGB "
                        f"{info.input_height}x{info.input_width}; outputs '{OUTPUT_SCORES}' [P(Negative), "
                        f"P(Positive)] and '{OUTPUT_PROBABILITY}' P(Positive)")
    # Ours as flat keys, and again as ``model_info <key>``: the keys OpenVINO Model API reads ONNX metadata from.
    onnx.helper.set_model_props(proto, {**strings, **{f"{MODEL_API_PREFIX} {k}": v for k, v in strings.items()}})
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, os.fspath(path))
    return path

