"""``emotion-train DATA --out RUN``: train a registered architecture with the seed's recipe, evaluate, plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotion.runtime.console import guard

from . import models
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
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


@guard(DataError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    models.get(args.arch)  # unknown names fail before any work
    image_size = parse_image_size(args.image_size) if args.image_size else None
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"run folder {out} already exists; choose another --out or pass --force")
    load_dataset(args.data)  # a bad data folder fails here, before TensorFlow loads
    from .trainer import TrainConfig, train

    train(
        TrainConfig(
            data=Path(args.data), out=out, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
            image_size=image_size, seed=args.seed, validation_fraction=args.validation_fraction,
            learning_rate=args.learning_rate, class_weight=args.class_weight, threshold=args.threshold,
            early_stopping=args.early_stopping, early_stopping_start=args.early_stopping_start,
            lr_schedule=args.lr_schedule, force=args.force, verbose=0 if args.quiet else 1,
        ),
        log=lambda msg: print(msg, file=sys.stderr if args.quiet else sys.stdout),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
