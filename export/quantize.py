"""INT8 by NNCF post-training quantization (full bias correction) of the FP32 IR, optionally under an AUC budget.

The IR already takes uint8 images and scales them itself, so NNCF is fed the very arrays the runtime feeds:
calibration statistics describe real inputs, with no transform that could drift from the runtime's.

``max_auc_drop`` switches to ``nncf.quantize_with_accuracy_control``: NNCF quantizes, measures ROC AUC on the
validation images, and reverts the layers that cost most until the drop is within budget (or reports that it
could not). AUC is a whole-set metric, so our validation function refuses single images (one class) and NNCF
falls back to ranking layers by how much they change the outputs, which is what it is documented to do.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from emotion.runtime.metadata import OUTPUT_PROBABILITY
from emotion.train.models import COLOUR_STATISTICS_NAME as FLOAT_LAYER  # edge's weight-free statistics layer

from .common import ExportError
from .data import ImageSet


def roc_auc(compiled_model: Any, items: Any) -> tuple[float, None]:
    """NNCF's validation function: ROC AUC of P(Positive) over (image, label) items, on the model NNCF compiled."""
    from emotion.train.metrics import roc_auc as auc

    items = list(items)
    probabilities = [float(np.asarray(compiled_model(image)[OUTPUT_PROBABILITY]).reshape(-1)[0]) for image, _ in items]
    value = auc(np.array([int(label) for _, label in items]), np.array(probabilities))
    if np.isnan(value):
        raise ValueError("ROC AUC needs both classes")
    return value, None


def _float_scope(nncf: Any, model: Any) -> Any:
    """Operations kept in float: the output unit (the MatMul feeding the sigmoid) and edge's colour statistics
    (every layer whose name contains FLOAT_LAYER) with everything after them. The unit is one dot product, so int8
    saves nothing there, and in float it lets bias correction fix the layers below it (benchmarks/results/
    model_quality.md); one 8-bit scale per tensor cannot hold the heavy-tailed hue histograms of edge."""
    names: set[str] = set()
    frontier = [op for op in model.get_ops() if FLOAT_LAYER in op.get_friendly_name()]
    while frontier:
        op = frontier.pop()
        if op.get_friendly_name() in names or op.get_type_name() == "Result":
            continue
        names.add(op.get_friendly_name())
        frontier += [target.get_node() for output in op.outputs() for target in output.get_target_inputs()]
    op = next(out.get_node() for out in model.outputs if OUTPUT_PROBABILITY in out.get_names())
    while op.get_type_name() not in ("MatMul", "Parameter"):  # up from the sigmoid, past its bias
        op = next(v.get_node() for v in op.input_values() if v.get_node().get_type_name() != "Constant")
    unit = {op.get_friendly_name()} if op.get_type_name() == "MatMul" else set()
    return nncf.IgnoredScope(names=sorted(names | unit), validate=False)


def quantize_int8(model: Any, calibration: ImageSet, validation: ImageSet | None = None,
                  max_auc_drop: float | None = None) -> tuple[Any, dict]:
    """(quantized ``openvino.Model``, details for the report).

    Raises:
        ExportError: NNCF failed, or accuracy control has no labelled validation images of both classes.
    """
    import nncf

    nncf.set_log_level(logging.WARNING)  # NNCF's progress bars stay (the progress of this slow step), its INFO goes
    if max_auc_drop is not None and (validation is None or validation.labels is None
                                     or len(set(validation.labels.tolist())) < 2):
        raise ExportError("--max-auc-drop needs labelled validation images of both classes (a run's validation "
                          "split or --data DATA)")
    details: dict = {"method": "nncf.quantize",
                     "calibration": {"source": calibration.description, "images": len(calibration)},
                     "subset_size": len(calibration), "preset": "performance (symmetric)", "bias_correction": "full",
                     "calibration_rejected": calibration.rejected}
    calibration_data = nncf.Dataset(list(calibration.images[:, None]))  # batches of one image
    options = {"subset_size": len(calibration), "ignored_scope": _float_scope(nncf, model),
               "fast_bias_correction": False}
    try:
        if max_auc_drop is None:
            return nncf.quantize(model, calibration_data, **options), details
        items = list(zip(validation.images[:, None], validation.labels.tolist()))
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration_data, nncf.Dataset(items, lambda item: item[0]), validation_fn=roc_auc,
            max_drop=float(max_auc_drop), drop_type=nncf.DropType.ABSOLUTE, **options)
    except Exception as exc:  # NNCF's own errors (nncf.ValidationError, InternalError, ...)
        raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {exc}") from None
    details.update(method="nncf.quantize_with_accuracy_control", max_auc_drop=float(max_auc_drop),
                   validation=validation.description)
    return quantized, details
