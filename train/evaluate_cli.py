"""``emotion-evaluate MODEL DATA_OR_RUN``: the seed's evaluation (report, AUC, confusion matrix, plots) for a
saved model, on a run's validation split or on every image of a labelled folder.

``emotion-evaluate --cv K DATA [--archs seed edge] [--epochs N]``: grouped K-fold cross-validation of
architectures (trained from scratch on each fold) and of the colour-statistics baseline, on the same folds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emotion.train import atomic
from emotion.runtime.console import UsageError, guard, print_json

from . import models
from .cv import CVConfig, run_cv, table
from .data import DEFAULT_SEED, DataError, csv_text, load_dataset, load_images
from .model_io import ModelFileError, load_model, predict_proba, resolve_model_path
from .run_folder import RunFolder

EVALUATION_MARK = "predictions.csv"  # the file that tells an evaluation folder, which --out may replace
USAGE = """emotion-evaluate [options] MODEL DATA
       emotion-evaluate --cv K [--archs ARCH ...] [--epochs N] [options] DATA"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-evaluate", usage=USAGE, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"architectures: {models.known()}")
    p.add_argument("paths", nargs="*", metavar="MODEL DATA",
                   help="MODEL: a training run folder or a .keras file; DATA: a run folder (its validation split) "
                   "or a folder with Negative/ and Positive/. With --cv, only DATA (groups from its labels.csv, "
                   "if any)")
    p.add_argument("--out", help="folder for the report and plots (default: <model folder>/evaluation); an earlier "
                   "evaluation there is replaced, any other folder refused. With --cv: a file for the JSON results")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the one stored in the model)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    cv = p.add_argument_group("cross-validation")
    cv.add_argument("--cv", type=int, metavar="K", help="grouped K-fold cross-validation of --archs on DATA")
    cv.add_argument("--archs", nargs="+", metavar="ARCH",
                    help=f"architectures to cross-validate (default: {' '.join(CVConfig.archs)}); the colour "
                    "baseline always runs")
    cv.add_argument("--epochs", type=int, help="maximum epochs per fold (default: each architecture's recipe)")
    cv.add_argument("--seed", type=int, help="fold and training seed (default 21)")
    return p


def _cv_main(args: argparse.Namespace) -> int:
    """``--cv K DATA``: cross-validation; the table (or JSON) on stdout, progress on stderr."""
    if len(args.paths) > 1:
        raise UsageError("--cv takes one folder, DATA (no MODEL): emotion-evaluate --cv K DATA")
    if not args.paths:
        raise UsageError("--cv needs the data folder: emotion-evaluate --cv K DATA")
    if args.threshold is not None:
        raise UsageError("--threshold does not apply to --cv (each fold sets its threshold on its inner validation)")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    archs = tuple(args.archs) if args.archs else CVConfig.archs
    for arch in archs:
        models.require_weights(arch)  # unknown names list the known ones; missing weights give the pip command
    data = Path(args.paths[0])
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder; with --cv, --out names a file for the JSON results")
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    result = run_cv(CVConfig(data=data, k=args.cv, archs=archs, epochs=args.epochs,
                             seed=DEFAULT_SEED if args.seed is None else args.seed), log=log)
    if out is not None:
        atomic.write_text(out, json.dumps(result, indent=2))
    if args.json:
        print_json({k: v for k, v in result.items() if k != "predictions"})
    else:
        print(table(result))
        if out is not None:
            print(f"wrote {out}")
    return 0


def samples_for(data: Path, model: Path):
    """(samples, files left out, description) for a run folder's validation split or a labelled data folder."""
    run = RunFolder(data)
    if run.is_run():
        refit = run.refit and model.resolve().is_relative_to(run.path.resolve())
        return run.split().validation, [], f"validation split of {data}" + (
            " (in-sample: the model was refit on these images)" if refit else "")
    dataset = load_dataset(data)
    return dataset.samples, dataset.rejected, f"all images of {dataset.root}"


@guard(DataError, ModelFileError, ValueError)
def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cv is not None:
        return _cv_main(args)
    if args.archs is not None or args.epochs is not None or args.seed is not None:
        parser.error("--archs, --epochs and --seed go with --cv K")
    if len(args.paths) != 2:
        parser.error("give MODEL and DATA (or --cv K DATA for cross-validation)")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold is a probability from 0 to 1, got {args.threshold}")
    model_path, data = map(Path, args.paths)
    if not data.exists():
        raise DataError(f"{data} does not exist; give a run folder or a folder with Negative/ and Positive/")
    from . import metrics
    from .trainer import write_evaluation_files

    resolve_model_path(model_path)
    out = Path(args.out) if args.out else (model_path if model_path.is_dir() else model_path.parent) / "evaluation"
    run = RunFolder(data)  # --out is replaced: never an input, never a folder an evaluation did not write
    atomic.check_output_folder(out, model_path, data, run.recorded_data_root() if run.is_run() else None,
                               own=(EVALUATION_MARK, "an earlier evaluation"))
    samples, rejected, description = samples_for(data, model_path)
    model, info = load_model(model_path)
    images, y_true, undecodable = load_images(samples, info.preprocess_spec, progress=None if args.quiet else "decode")
    rejected = list(rejected) + undecodable
    if len(images) == 0:
        raise DataError(f"no readable images in {description}")
    probability = predict_proba(model, images)
    threshold = info.threshold if args.threshold is None else args.threshold
    m = metrics.classification_metrics(y_true, probability, threshold, info.labels)
    m.update(data=description, model=str(model_path),
             left_out=[{"path": str(p), "reason": r} for p, r in rejected])
    with atomic.atomic_directory(out, force=True) as tmp:
        atomic.write_text(tmp / "metrics.json", json.dumps(m, indent=2))
        write_evaluation_files(tmp, y_true, probability, m, info.labels)
        kept = [s for s in samples if s.path not in {path for path, _ in undecodable}]
        atomic.write_text(tmp / EVALUATION_MARK, csv_text(
            [("path", "true_label", "predicted_label", "probability_positive")]
            + [(s.path, info.labels[int(y)], info.label_for(float(p)), f"{p:.6f}")
               for s, y, p in zip(kept, y_true, probability)]))
    if args.json:
        print_json(m)
    else:
        print(f"{description}: {metrics.summary_line(m)}")
        for item in m["left_out"]:
            print(f"  left out {item['path']}: {item['reason']}")
        print(f"wrote {out}/ (metrics.json, classification_report.txt, predictions.csv, plots/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
