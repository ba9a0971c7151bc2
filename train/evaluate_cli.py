"""``emotion-evaluate MODEL DATA_OR_RUN``: the seed's evaluation (report, AUC, confusion matrix, plots) for a
saved model, on a run's validation split or on every image of a labelled folder."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from emotion.runtime import atomic
from emotion.runtime.console import guard, print_json

from .data import MANIFEST_NAME, DataError, load_dataset, load_images, read_manifest
from .model_io import ModelFileError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-evaluate", description=__doc__)
    p.add_argument("model", help="a training run folder or a .keras file")
    p.add_argument("data", help="a run folder (its validation split) or a folder with Negative/ and Positive/")
    p.add_argument("--out", help="folder for the report and plots (default: <model folder>/evaluation); replaced")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the one stored in the model)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def samples_for(data: Path):
    """(samples, data root, description) for a run folder's validation split or a labelled data folder."""
    if (data / MANIFEST_NAME).is_file() and (data / "run.json").is_file():
        root = Path(json.loads((data / "run.json").read_text())["data_root"])
        if not root.is_dir():
            raise DataError(f"the run's data folder {root} is gone; pass the data folder itself")
        split = read_manifest(data / MANIFEST_NAME, root)
        return split.validation, [], f"validation split of {data}"
    dataset = load_dataset(data)
    return dataset.samples, dataset.rejected, f"all images of {dataset.root}"


@guard(DataError, ModelFileError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    model_path, data = Path(args.model), Path(args.data)
    if not data.exists():
        raise DataError(f"{data} does not exist; give a run folder or a folder with Negative/ and Positive/")
    from . import metrics
    from .model_io import load_model, predict_proba, resolve_model_path
    from .trainer import write_evaluation_files

    resolve_model_path(model_path)
    samples, rejected, description = samples_for(data)
    model, info = load_model(model_path)
    images, y_true, undecodable = load_images(samples, info.preprocess_spec, progress=None if args.quiet else "decode")
    rejected = list(rejected) + undecodable
    if len(images) == 0:
        raise DataError(f"no readable images in {description}")
    probability = predict_proba(model, images)
    threshold = info.threshold if args.threshold is None else args.threshold
    m = metrics.classification_metrics(y_true, probability, threshold, info.labels)
    m["data"] = description
    m["model"] = str(model_path)
    m["left_out"] = [{"path": str(p), "reason": r} for p, r in rejected]
    out = Path(args.out) if args.out else (model_path if model_path.is_dir() else model_path.parent) / "evaluation"
    with atomic.atomic_directory(out, force=True) as tmp:
        atomic.write_text(tmp / "metrics.json", json.dumps(m, indent=2))
        write_evaluation_files(tmp, y_true, probability, m, info.labels)
        kept = [s for s in samples if s.path not in {r[0] for r in undecodable}]
        atomic.write_text(tmp / "predictions.csv", _predictions_csv(kept, y_true, probability, info))
    if args.json:
        print_json(m)
    else:
        print(f"{description}: {metrics.summary_line(m)}")
        for item in m["left_out"]:
            print(f"  left out {item['path']}: {item['reason']}")
        print(f"wrote {out}/ (metrics.json, classification_report.txt, predictions.csv, plots/)")
    return 0


def _predictions_csv(samples, y_true, probability, info) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "true_label", "predicted_label", "probability_positive"])
    for sample, y, p in zip(samples, y_true, probability):
        writer.writerow([sample.path, info.labels[int(y)], info.label_for(float(p)), f"{p:.6f}"])
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
