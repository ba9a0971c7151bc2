"""Keras -> ONNX with tf2onnx: one float-input core graph, and the shipped uint8-input graph built from it.

Why ``from_function``: ``tf2onnx.convert.from_keras`` needs an explicit signature and fails on Keras 3 models
loaded from ``.keras`` files (tensorflow-onnx issue 2448). Wrapping the model in a ``tf.function`` that calls
it with ``training=False`` (what Keras' own ``model.export(format="onnx")`` does) gives an inference-only
graph: dropout gone, batch normalisation on its moving statistics.

Why the uint8 input is added by editing the ONNX graph rather than converting a second function: the IR is
converted from the float core (its uint8 input and scaling come from OpenVINO's PrePostProcessor), so editing
the core keeps the shipped ONNX and the IRs on one and the same converted graph. The prepended ``Cast`` +
``Mul(float32(1/255))`` is bit for bit :func:`emotion.runtime.preprocess.scale`.
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
_SCALED = f"{INPUT_NAME}_scaled"


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


def convert_core(model: Any, info: ModelInfo, opset: int) -> Any:
    """The float32-input ONNX graph: input ``image`` (N, H, W, 3) in [0, 1]; outputs scores, probability."""
    import tensorflow as tf

    _patch_numpy2()
    import tf2onnx

    _quiet_tf2onnx()
    spec = (tf.TensorSpec((None, info.input_height, info.input_width, 3), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image):
        probability = tf.reshape(tf.cast(model(image, training=False), tf.float32), (-1, 1))
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


def with_uint8_input(core: Any) -> Any:
    """A copy of ``core`` whose input ``image`` is uint8 and scaled inside: Cast -> Mul(float32(1/255))."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = copy.deepcopy(core)
    graph = proto.graph
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == INPUT_NAME:
                node.input[i] = _SCALED
    for output in graph.output:
        if output.name == INPUT_NAME:  # never the case for our models; kept for correctness
            raise ExportError("the model's output is its input")
    graph.input[0].type.tensor_type.elem_type = TensorProto.UINT8
    graph.initializer.append(numpy_helper.from_array(np.array(np.float32(1.0 / 255.0)), f"{INPUT_NAME}_scale"))
    cast = helper.make_node("Cast", [INPUT_NAME], [f"{INPUT_NAME}_f32"], to=TensorProto.FLOAT,
                            name=f"{INPUT_NAME}/cast")
    mul = helper.make_node("Mul", [f"{INPUT_NAME}_f32", f"{INPUT_NAME}_scale"], [_SCALED], name=f"{INPUT_NAME}/scale")
    nodes = [cast, mul] + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def set_metadata(proto: Any, strings: Mapping[str, str]) -> None:
    """ModelInfo strings as flat ``metadata_props`` (ours) and as ``model_info <key>`` (OpenVINO Model API)."""
    del proto.metadata_props[:]
    for key, value in strings.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    for key, value in strings.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"{MODEL_API_PREFIX} {key}", value


def read_metadata(path_or_proto: Any) -> dict[str, str]:
    """The flat ``metadata_props`` of an ONNX file (what :meth:`ModelInfo.from_strings` reads)."""
    import onnx

    proto = path_or_proto
    if isinstance(path_or_proto, (str, os.PathLike)):
        proto = onnx.load(os.fspath(path_or_proto), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if " " not in p.key}


def keras_to_onnx(model: Any, info: ModelInfo, opset: int, strings: Mapping[str, str]) -> tuple[Any, Any]:
    """(core float-input proto for the IR, shipped uint8-input proto with metadata), both checked."""
    import onnx

    core = convert_core(model, info, opset)
    onnx.checker.check_model(core, full_check=True)
    shipped = with_uint8_input(core)
    shipped.doc_string = (
        f"emotion-edge {info.name} v{info.version}: input '{INPUT_NAME}' uint8 NHWC RGB "
        f"{info.input_height}x{info.input_width}; outputs '{OUTPUT_SCORES}' [P(Negative), P(Positive)] and "
        f"'{OUTPUT_PROBABILITY}' P(Positive)"
    )
    set_metadata(shipped, strings)
    onnx.checker.check_model(shipped)
    return core, shipped


def save(proto: Any, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, os.fspath(path))
