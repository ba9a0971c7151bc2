"""ONNX -> OpenVINO IR: the shipped ONNX file converted as it is, its metadata in ``rt_info["model_info"]``.

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


def onnx_to_openvino(onnx_path: str | os.PathLike) -> Any:
    """The exported ONNX file as an ``openvino.Model``: uint8 NHWC RGB input (N dynamic), outputs scores, probability.

    Raises:
        ExportError: OpenVINO cannot convert the file, or the outputs are not ours.
    """
    import openvino as ov

    try:
        model = ov.convert_model(os.fspath(onnx_path))
    except Exception as exc:  # OpenVINO raises RuntimeError/OpConversionFailure with long messages
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"OpenVINO could not convert the ONNX model: {first}") from None
    ov.layout_helpers.set_layout(model.input(INPUT_NAME), ov.Layout("NHWC"))  # for tools that read it
    names = [sorted(o.get_names()) for o in model.outputs]
    if names != [[OUTPUT_SCORES], [OUTPUT_PROBABILITY]]:
        raise ExportError(f"the converted IR has unexpected outputs {names}")
    return model


def save_ir(model: Any, xml_path: Path, strings: Mapping[str, str], compress_to_fp16: bool) -> Path:
    """Save ``model`` as ``xml_path`` + ``.bin`` with ``strings`` as its ``rt_info["model_info"]``."""
    import openvino as ov

    for key, value in strings.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, os.fspath(xml_path), compress_to_fp16=compress_to_fp16)
    return xml_path


def _layers(xml_path: str | os.PathLike) -> list[ElementTree.Element]:
    return list(ElementTree.parse(os.fspath(xml_path)).getroot().iter("layer"))


def constant_types(xml_path: str | os.PathLike) -> Counter:
    """Element types of the IR's ``Const`` layers, read from the XML itself: f32 weights and no f16 in an FP32
    IR, f16 in an FP16-compressed one, i8/u8 in an INT8 one."""
    data = (layer.find("data") for layer in _layers(xml_path) if layer.get("type") == "Const")
    return Counter(d.get("element_type") for d in data if d is not None and d.get("element_type"))


def op_types(xml_path: str | os.PathLike) -> Counter:
    """Operation types of an IR, from its XML (e.g. FakeQuantize in an INT8 IR)."""
    return Counter(layer.get("type") for layer in _layers(xml_path))


def cpu_supports_bf16() -> bool:
    """True when OpenVINO's CPU plugin can compute in bf16 (AVX512_BF16 or AMX); it then does so by default."""
    from emotion.runtime.backends import shared_core

    try:
        return "BF16" in shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # no CPU plugin: nothing can compute in bf16 here
        return False
