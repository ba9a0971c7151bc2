"""``emotion-bench model-api EXPORT DATA ...``: OpenVINO Model API on raw photos against ``emotion-infer``.

Model API is used as a new user would: ``Model.create_model(xml)`` then ``model(cv2.imread(photo))``; it resizes
with OpenCV-style bilinear interpolation inside the model, ours with Pillow's antialiased bilinear. Its label is
the argmax of ``scores`` (a 0.5 threshold), ours uses the model's decision threshold, so agreement is given both
ways: with each tool's own label, and with both probabilities cut at 0.5 (the preprocessing's share alone).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion.runtime.console import UsageError

from .report import num, page, row_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", metavar="EXPORT", help="export folder (its FP32 IR is used), or a model .xml")
    parser.add_argument("data", nargs="+", metavar="DATA", help="folders of photos (searched recursively)")


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Both tools on every photo of each DATA folder; agreement and |dP| per folder.

    Raises:
        UsageError, ModelLoadError, ImageDecodeError: no model, or a folder without a photo both tools read.
    """
    import cv2  # both from the dev extra; without it, guard's one-line error names it
    from model_api.models import Model

    from emotion.runtime import EmotionClassifier, discover, resolve_model

    xml = resolve_model(args.export, backend="openvino", variant="fp32")
    model_api = Model.create_model(str(xml))
    folders = []
    with EmotionClassifier.load(xml, cache_dir=None) as ours:
        for folder in map(Path, args.data):
            progress(f"{folder}")
            paths = [c.path for c in discover([folder]) if c.error is None]
            pairs, unread = [], []
            for path in paths:
                image = cv2.imread(str(path))
                if image is None:  # a format OpenCV does not read (GIF, ...): Model API cannot be fed it
                    unread.append(path.name)
                    continue
                pairs.append((float(model_api(image).raw_scores[1]), ours.predict(path).probability))
            folders.append(_compare(str(folder), np.array(pairs).reshape(-1, 2), ours.info.threshold, unread))
    return {"model": str(xml), "threshold": ours.info.threshold, "folders": folders,
            "model_api_device": str(model_api.inference_adapter.compiled_model.get_property("EXECUTION_DEVICES"))}


def _compare(folder: str, pairs: np.ndarray, threshold: float, unread: list[str]) -> dict[str, Any]:
    if not len(pairs):
        raise UsageError(f"{folder}: OpenCV reads none of its {len(unread)} photos (first: {unread[0]})" if unread
                         else f"no photos in {folder}")
    theirs, ours = pairs[:, 0], pairs[:, 1]
    dp = np.abs(theirs - ours)
    return {"folder": folder, "photos": len(pairs), "not_read_by_opencv": unread,
            "label_agreement": 100.0 * float(np.mean((theirs >= 0.5) == (ours >= threshold))),
            "agreement_at_0_5": 100.0 * float(np.mean((theirs >= 0.5) == (ours >= 0.5))),
            "max_abs_dp": float(dp.max()), "median_abs_dp": float(np.median(dp))}


def markdown(doc: dict[str, Any]) -> str:
    rows = [[f"`{f['folder']}`", str(f["photos"]), num(f["label_agreement"], 1), num(f["agreement_at_0_5"], 1),
             num(f["max_abs_dp"], 4), num(f["median_abs_dp"], 4), ", ".join(f["not_read_by_opencv"]) or "none"]
            for f in doc["folders"]]
    return page("OpenVINO Model API on raw photos against emotion-infer", doc, [
        __doc__.split("\n\n")[1].replace("\n", " "), "",
        f"Model `{doc['model']}`, decision threshold {doc['threshold']:g}. Model API as created by default: device "
        f"AUTO, running on {doc['model_api_device']} with its default inference precision; ours: CPU, f32.", "",
        row_table(["Photos", "n", "Label agreement % (own labels)", "Agreement % at 0.5", "max |dP|", "median |dP|",
                   "Not read by OpenCV"], rows)])


def summary(doc: dict[str, Any]) -> str:
    return "\n".join(f"{f['folder']}: {f['photos']} photos, label agreement {f['label_agreement']:.1f}% "
                     f"({f['agreement_at_0_5']:.1f}% at 0.5), max |dP| {f['max_abs_dp']:.4f}" for f in doc["folders"])
