"""Tiny exported-model look-alikes, built without TensorFlow, for the runtime tests.

The graph: uint8 NHWC RGB "image" -> /255 (OpenVINO PrePostProcessor, as the exporter does) -> mean colour
per channel -> logit = 6*(R - B) + 0.1 -> "probability" (N, 1) = sigmoid(logit), "scores" (N, 2) = [1-p, p].
:func:`reference_probability` computes the same in numpy, so tests know the exact answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 32, 40
WEIGHTS = np.array([[6.0], [0.0], [-6.0]], np.float32)
BIAS = np.float32(0.1)


def tiny_info(**changes):
    from emotion.runtime.metadata import ModelInfo

    values = {"input_height": HEIGHT, "input_width": WIDTH, "precision": "fp32", **changes}
    return ModelInfo().replace(**values)


def reference_probability(batch: np.ndarray) -> np.ndarray:
    """What the tiny models compute, in float64 numpy: (N,) P(Positive)."""
    means = batch.astype(np.float64).mean(axis=(1, 2)) / 255.0
    logits = means @ WEIGHTS.astype(np.float64)[:, 0] + float(BIAS)
    return 1.0 / (1.0 + np.exp(-logits))


def build_ov_model(
    *,
    height: int = HEIGHT,
    width: int = WIDTH,
    batch: int = -1,
    metadata: dict[str, str] | None | bool = True,
    input_type: str = "u8",
    layout: str = "NHWC",
    input_name: str = "image",
    fragile: bool = False,
):
    """An ``openvino.Model``; ``metadata=True``: ModelInfo strings, ``None``/``False``: none, or a dict.

    ``fragile``: inference fails at run time unless pixel [0, 0, 0, 0] is 1 (a Reshape whose target size is
    computed from the data), to exercise per-item inference errors.
    """
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    shape = [batch, height, width, 3] if layout == "NHWC" else [batch, 3, height, width]
    param = ops.parameter(shape, np.float32, name=input_name)
    x = param if layout == "NHWC" else ops.transpose(param, np.array([0, 2, 3, 1], np.int64))
    if fragile:
        flat = ops.reshape(x, np.array([0, -1], np.int64), special_zero=True)
        first = ops.convert(ops.gather(flat, np.array([0], np.int64), np.int64(1)), ov.Type.i64)  # (N, 1)
        size = ops.add(ops.reduce_min(first, np.array([0, 1], np.int64), keep_dims=False), np.int64(height * width * 3 - 1))
        target = ops.concat([ops.constant(np.array([-1], np.int64)), ops.unsqueeze(size, np.int64(0))], 0)
        x = ops.reshape(ops.reshape(flat, target, special_zero=False), np.array([-1, height, width, 3], np.int64), False)
    means = ops.reduce_mean(x, np.array([1, 2], np.int64), keep_dims=False)
    logits = ops.add(ops.matmul(means, ops.constant(WEIGHTS), False, False), ops.constant(np.array([BIAS])))
    probability = ops.sigmoid(logits)
    scores = ops.concat([ops.subtract(ops.constant(np.ones((1, 1), np.float32)), probability), probability], 1)
    model = ov.Model([ops.result(probability), ops.result(scores)], [param], "tiny_emotion")
    model.output(0).get_tensor().set_names({"probability"})
    model.output(1).get_tensor().set_names({"scores"})
    ppp = PrePostProcessor(model)
    element = {"u8": ov.Type.u8, "f32": ov.Type.f32}[input_type]
    ppp.input().tensor().set_element_type(element).set_layout(ov.Layout(layout))
    ppp.input().model().set_layout(ov.Layout(layout))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    model = ppp.build()
    if metadata is True:
        metadata = tiny_info().to_strings()
    for key, value in (metadata or {}).items():
        model.set_rt_info(value, ["model_info", key])
    return model


def save_ir(folder: Path, model=None, name: str = "model", **build) -> Path:
    """Save an IR (fp32 weights, as the exporter's fp32 folder) and return the .xml path."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{name}.xml"
    ov.save_model(model if model is not None else build_ov_model(**build), xml, compress_to_fp16=False)
    return xml


def save_onnx(path: Path, *, metadata: dict[str, str] | None | bool = True, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """The same graph as ONNX (uint8 input, scaling inside), with ModelInfo in ``metadata_props``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels", "inv255"], ["scaled"]),
        helper.make_node("ReduceMean", ["scaled", "axes"], ["means"], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probability"]),
        helper.make_node("Sub", ["one", "probability"], ["negative"]),
        helper.make_node("Concat", ["negative", "probability"], ["scores"], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "inv255"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(WEIGHTS, "weights"),
        numpy_helper.from_array(np.array([BIAS], np.float32), "bias"),
        numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_emotion",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", height, width, 3])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata is True:
        metadata = tiny_info(input_height=height, input_width=width).to_strings()
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def make_export(folder: Path, name: str = "emotion", version: int = 1) -> Path:
    """An export folder as emotion-export writes it: fp32, fp16 and int8 repositories, ONNX, report.

    The variants are the same tiny graph; their metadata differ in ``precision`` so tests can tell them apart.
    """
    for suffix, precision in (("", "fp32"), ("-fp16", "fp16"), ("-int8", "int8")):
        strings = tiny_info(name=name, precision=precision).to_strings()
        save_ir(folder / f"{name}{suffix}" / str(version), build_ov_model(metadata=strings))
    save_onnx(folder / f"{name}.onnx")
    (folder / "export_report.json").write_text(json.dumps({"name": name, "tiny": True}))
    return folder
