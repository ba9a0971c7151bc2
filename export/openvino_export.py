"""ONNX -> OpenVINO IR: uint8 input and scaling by PrePostProcessor, named outputs, metadata in rt_info.

Why PrePostProcessor rather than Convert/Multiply nodes: it is OpenVINO's declared way to say "this input
arrives as u8 NHWC and is divided by 255", which the CPU plugin fuses into the first convolution, and tools
that read the IR (Model API, Model Server) see the input layout.

Why ``compress_to_fp16=False`` for FP32: ``openvino.save_model`` compresses weights to f16 *by default*, so
an IR saved naively is silently an FP16 one. :func:`constant_types` reads the saved XML to prove what it holds.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from emotion.runtime.metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, RT_INFO_SECTION

from .common import ExportError


def onnx_to_openvino(core_onnx: str | os.PathLike, height: int, width: int) -> Any:
    """The float core ONNX as an ``openvino.Model`` taking uint8 NHWC RGB (N dynamic, H x W fixed)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    try:
        model = ov.convert_model(os.fspath(core_onnx))
    except Exception as exc:  # OpenVINO raises RuntimeError/OpConversionFailure with long messages
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"OpenVINO could not convert the ONNX model: {first}") from None
    ppp = PrePostProcessor(model)
    tensor = ppp.input(INPUT_NAME).tensor()
    tensor.set_element_type(ov.Type.u8)
    tensor.set_layout(ov.Layout("NHWC"))
    ppp.input(INPUT_NAME).preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    ppp.input(INPUT_NAME).model().set_layout(ov.Layout("NHWC"))
    model = ppp.build()
    model.reshape({INPUT_NAME: ov.PartialShape([-1, height, width, 3])})
    names = [sorted(o.get_names()) for o in model.outputs]
    if names != [[OUTPUT_SCORES], [OUTPUT_PROBABILITY]]:
        raise ExportError(f"the converted IR has unexpected outputs {names}")
    return model


def set_model_info(model: Any, strings: Mapping[str, str]) -> None:
    """Write (replacing) every ``rt_info["model_info"][key]``; values are strings, as Model API expects."""
    for key, value in strings.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, key])


def read_model_info(model_or_path: Any) -> dict[str, str]:
    """``rt_info["model_info"]`` of an IR (path or ``openvino.Model``) as a flat string map."""
    import openvino as ov

    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        model = ov.Core().read_model(os.fspath(model_or_path))
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info()[RT_INFO_SECTION]
    return {key: section[key].astype(str) for key in section.keys()}


def save_ir(model: Any, xml_path: Path, strings: Mapping[str, str], compress_to_fp16: bool) -> Path:
    """Save ``model`` with its metadata as ``xml_path`` + ``.bin``."""
    import openvino as ov

    set_model_info(model, strings)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, os.fspath(xml_path), compress_to_fp16=compress_to_fp16)
    return xml_path


def constant_types(xml_path: str | os.PathLike) -> Counter:
    """Element types of the IR's float/int constants (``Const`` layers), read from the XML itself.

    An FP32 IR has f32 weights and no f16; an FP16-compressed IR has f16 weights; an INT8 IR has i8/u8 ones.
    """
    counts: Counter = Counter()
    for layer in ElementTree.parse(os.fspath(xml_path)).getroot().iter("layer"):
        if layer.get("type") == "Const":
            data = layer.find("data")
            if data is not None and data.get("element_type"):
                counts[data.get("element_type")] += 1
    return counts


def op_types(xml_path: str | os.PathLike) -> Counter:
    """Operation types of an IR, from its XML (e.g. FakeQuantize in an INT8 IR)."""
    return Counter(layer.get("type") for layer in ElementTree.parse(os.fspath(xml_path)).getroot().iter("layer"))


def cpu_supports_bf16(core: Any | None = None) -> bool:
    """True when the CPU plugin can compute in bf16 (AVX512_BF16 / AMX): then it does so by default."""
    import openvino as ov

    core = core or ov.Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an OpenVINO without the property: assume not
        return False
