"""``emotion-train DATA --out RUN``: train a registered architecture with the seed's recipe, evaluate, plot."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from emotion.runtime.console import guard, print_json

from . import atomic, models
from .data import DEFAULT_SEED, DataError, load_dataset, parse_image_size


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emotion-train",
        description="Train a positive/negative image-emotion classifier on DATA/Negative and DATA/Positive.",
        epilog=f"architectures: {models.known()}",
    )
    p.add_argument("data", help="folder with Negative/ and Positive/ sub-folders of images")
    p.add_argument("--out", required=True, help="run folder to create (refused if it exists, unless --force)")
    p.add_argument("--arch", default="seed", help="architecture from the registry (default %(default)s)")
    p.add_argument("--epochs", type=int, help="maximum number of epochs (default: the architecture's recipe, 10 for seed)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--image-size", help="input size HxW (default: the architecture's, 400x500 for seed)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split and training seed (default %(default)s)")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="default %(default)s")
    p.add_argument("--learning-rate", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--class-weight", choices=["none", "balanced"], help="handle class imbalance by loss weights")
    p.add_argument("--threshold", choices=["fixed", "balanced"],
                   help="decision threshold: 0.5, or the one maximising balanced accuracy on validation")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation AUC, keep the best (0 = off)")
    p.add_argument("--early-stopping-start", type=int, metavar="EPOCHS",
                   help="warm-up: epochs before early stopping watches (and may keep) any weights")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], help="learning-rate schedule")
    tl = p.add_argument_group("pretrained backbones (--arch lite0, lite1, lite2)",
                              "--epochs and --learning-rate train the head on frozen features; then, with "
                              "--fine-tune, the top blocks train with it, --early-stopping watching that stage")
    tl.add_argument("--augment", choices=["none", "flip"], help="views of each training image (default flip)")
    tl.add_argument("--fine-tune", type=int, metavar="BLOCKS", help="blocks to fine-tune, from the top (0 = head only)")
    tl.add_argument("--fine-tune-epochs", type=int, metavar="N", help="maximum epochs of fine-tuning")
    tl.add_argument("--fine-tune-learning-rate", type=float, metavar="LR", help="Adam learning rate of fine-tuning")
    tl.add_argument("--refit", action=argparse.BooleanOptionalAction,
                    help="then train again on training + validation images for the epochs validation chose; "
                         "the reported validation figures stay those of the first fit (default on)")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true",
                   help="print the run's metrics (its metrics.json) on stdout; progress goes to stderr")
    return p


@guard(DataError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    models.get(args.arch)  # unknown names fail before any work
    image_size = parse_image_size(args.image_size) if args.image_size else None
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"run folder {out} already exists; choose another --out or pass --force")
    atomic.check_output_folder(out, args.data)
    from .trainer import TrainConfig, train

    cfg = TrainConfig(
        data=Path(args.data), out=out, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
        image_size=image_size, seed=args.seed, validation_fraction=args.validation_fraction,
        learning_rate=args.learning_rate, class_weight=args.class_weight, threshold=args.threshold,
        early_stopping=args.early_stopping, early_stopping_start=args.early_stopping_start,
        lr_schedule=args.lr_schedule, augment=args.augment, fine_tune=args.fine_tune,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_learning_rate=args.fine_tune_learning_rate,
        refit=args.refit, force=args.force, verbose=0 if args.quiet else 1,
    ).resolve()  # bad options fail here, before any data is read
    models.require_weights(args.arch)
    load_dataset(args.data)  # a bad data folder fails here, before TensorFlow loads
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():  # Keras' too
        metrics = train(cfg, log=lambda msg: print(msg, file=sys.stderr if args.quiet else sys.stdout))
    if args.json:
        print_json(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
