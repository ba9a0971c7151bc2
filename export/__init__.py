"""emotion-export: a trained Keras model -> ONNX + OpenVINO IR (FP32, FP16, INT8), verified every time.

Usage::

    emotion-export RUN_OR_MODEL --out DIR [--precision fp32 fp16 int8] [--calibration DATA] [--data DATA]
                   [--max-auc-drop X] [--opset N] [--name emotion] [--version 1] [--force] [--json]

What ``DIR`` holds (an OpenVINO Model Server / KServe model repository, one model per precision: serve one
with ``ovms --model_path DIR/<name> --model_name <name>``, or several with a ``config.json`` whose
``base_path`` entries point at the ``DIR/<name>*`` folders; nothing needs renaming)::

    DIR/
      <name>/<version>/model.xml, model.bin          FP32 IR (weights really f32: compress_to_fp16=False)
      <name>-fp16/<version>/model.xml, model.bin     FP16-compressed IR (weights f16, computed in f32/bf16)
      <name>-int8/<version>/model.xml, model.bin     INT8 IR (NNCF post-training quantization)
      <name>.onnx                                    ONNX, opset >= 17
      export_report.json                             parity table, timings, sizes, library versions

``DIR`` appears complete or not at all (built in a hidden sibling, renamed at the end); an existing ``DIR``
is refused unless ``--force``, and then replaced only once the new one is complete.

The model contract, identical for the ONNX file and every IR:

* input ``image``: uint8, NHWC, RGB, shape (N, H, W, 3) with N dynamic and H x W the model's input size.
  The scaling to [0, 1] (``x * (1/255)``, :func:`emotion.runtime.preprocess.scale`) is inside the model, so
  every backend is fed the very array :func:`emotion.runtime.preprocess.preprocess` returns.
* outputs, in this order: ``scores`` (N, 2) = [P(Negative), P(Positive)] and ``probability`` (N, 1) =
  P(Positive). ``scores`` comes first because OpenVINO Model API's ClassificationModel reads the *first*
  output; with ``probability`` first it softmaxes a single column and always answers class 0.
* metadata: :meth:`emotion.runtime.metadata.ModelInfo.to_strings`, in ``rt_info["model_info"]`` of each IR
  (``precision`` set per variant) and in the ONNX ``metadata_props`` (flat keys; the same pairs again under
  ``"model_info <key>"`` keys, the convention Model API reads ONNX metadata with).

How the graphs are built (why two ONNX graphs): the Keras model is converted once by tf2onnx (from a
``tf.function`` that calls the model with ``training=False``; ``tf2onnx.convert.from_keras`` breaks on Keras 3
models loaded from ``.keras`` files) into a float-input *core* graph. The shipped ONNX is that core with a
``Cast`` + ``Mul(1/255)`` prepended; the IRs are converted from the core and get the uint8 input and scaling
from OpenVINO's ``PrePostProcessor``, which OpenVINO fuses into the first layer. Both ends therefore share
one converted graph and one input contract.

OpenVINO Model API: ``Model.create_model("DIR/<name>/1/model.xml")`` gives a ClassificationModel that
classifies correctly when fed the uint8 RGB array of the model's size (``embedded_processing`` is true, so
Model API neither resizes nor normalises). Its answer is the argmax of ``scores``, i.e. a 0.5 threshold: it
does not know our ``decision_threshold``. To let Model API resize raw images itself (OpenCV-style bilinear,
not Pillow's antialiased filter, so results may differ slightly), create it with
``configuration={"embedded_processing": False, "mean_values": [], "scale_values": []}`` and feed RGB.

Python API (importing :mod:`emotion.export` is cheap: TensorFlow, OpenVINO and NNCF load on first use)::

    from emotion.export import export_model, verify, keras_predict
    report = export_model("runs/oasis-seed", "models/", precisions=("fp32", "int8"))
    report.ok, report.verification.rows, report.files
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExportError",
    "ExportReport",
    "Verification",
    "export_model",
    "keras_predict",
    "onnx_predict",
    "openvino_predict",
    "verify",
]

_LAZY = {
    "ExportError": ("common", "ExportError"),
    "ExportReport": ("report", "ExportReport"),
    "Verification": ("verify", "Verification"),
    "export_model": ("pipeline", "export_model"),
    "keras_predict": ("source", "keras_predict"),
    "onnx_predict": ("verify", "onnx_predict"),
    "openvino_predict": ("verify", "openvino_predict"),
    "verify": ("verify", "verify"),
}


def __getattr__(name: str) -> Any:
    """Import the heavy parts only when asked for, so ``emotion-export --help`` and errors stay fast."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
