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

The model contract, identical for the ONNX file and every IR (they are one graph: the IRs are converted from the
shipped ONNX):

* input ``image``: uint8, NHWC, RGB, shape (N, H, W, 3) with N dynamic and H x W the model's input size.
  The scaling to [0, 1] (``x * (1/255)``, :func:`emotion.runtime.preprocess.scale`) is inside the model, so
  every backend is fed the very array :func:`emotion.runtime.preprocess.preprocess` returns.
* outputs, in this order: ``scores`` (N, 2) = [P(Negative), P(Positive)] and ``probability`` (N, 1) =
  P(Positive). ``scores`` comes first because OpenVINO Model API's ClassificationModel reads the *first*
  output; with ``probability`` first it softmaxes a single column and always answers class 0.
* metadata: :meth:`emotion.runtime.metadata.ModelInfo.to_strings` plus Model API's preprocessing keys
  (:data:`emotion.export.common.MODEL_API_PREPROCESSING`), in ``rt_info["model_info"]`` of each IR
  (``precision`` set per variant) and in the ONNX ``metadata_props`` (flat keys; the same pairs again under
  ``"model_info <key>"`` keys, the convention Model API reads ONNX metadata with).

OpenVINO Model API works on raw photos: ``Model.create_model("DIR/<name>/1/model.xml")`` gives a
ClassificationModel that takes a BGR image of any size (``cv2.imread``), resizes it with OpenCV-style bilinear
interpolation (not Pillow's antialiased filter, so probabilities differ a little from ``emotion-infer``'s) and
answers with our labels. Its answer is the argmax of ``scores``, i.e. a 0.5 threshold: it does not know our
``decision_threshold``.

Python API (importing :mod:`emotion.export` is cheap: TensorFlow, OpenVINO and NNCF load on first use)::

    from emotion.export import export_model
    report = export_model("runs/oasis-seed", "models/", precisions=("fp32", "int8"))
    report.ok, report.verification.checks, report.files
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExportError",
    "ExportReport",
    "Verification",
    "export_model",
    "keras_predict",
    "verify",
    "verify_directory",
]

_LAZY = {
    "ExportError": ("common", "ExportError"),
    "ExportReport": ("report", "ExportReport"),
    "Verification": ("verify", "Verification"),
    "export_model": ("pipeline", "export_model"),
    "keras_predict": ("source", "keras_predict"),
    "verify": ("verify", "verify"),
    "verify_directory": ("verify", "verify_directory"),
}


def __getattr__(name: str) -> Any:
    """Import the heavy parts only when asked for, so ``emotion-export --help`` and errors stay fast."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
