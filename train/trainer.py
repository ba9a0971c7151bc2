"""Training a registered architecture on ``DATA/{Negative,Positive}`` and writing a complete run folder.

Input pipeline: every image is decoded and resized once (thread pool, shared preprocessing) into a uint8
array held in memory; ``tf.data`` then shuffles, scales and augments whole batches in parallel, so the
accelerator-less CPU spends its time in the model, not in JPEG decoding (the seed's generator re-decoded every
image every epoch). Memory: N x H x W x 3 bytes (448 photos at 400x500: 269 MB).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from emotion.train import atomic
from emotion.runtime.metadata import ModelInfo
from emotion.runtime.preprocess import DEFAULT_RESIZE_FILTER, PreprocessSpec

from . import data as data_mod
from . import metrics as metrics_mod
from . import models, plots
from .efficientnet_lite import MIN_INPUT_SIDE, VARIANTS, block_specs
from .model_io import MODEL_NAME, predict_proba, save_model
from .run_folder import HISTORY_JSON, METRICS_JSON, RUN_JSON
from .transfer import AUGMENTATIONS, fit_transfer
from .versions import TRAINING, library_versions

# Options of the transfer-learning stages (emotion.train.transfer), refused for architectures trained from scratch.
TRANSFER_OPTIONS = ("augment", "fine_tune", "fine_tune_epochs", "fine_tune_learning_rate", "refit")


@dataclass
class TrainConfig:
    data: Path
    out: Path
    arch: str = "seed"
    epochs: int | None = None  # None: the architecture's recipe
    batch_size: int | None = None
    image_size: tuple[int, int] | None = None
    seed: int = data_mod.DEFAULT_SEED
    validation_fraction: float = data_mod.DEFAULT_VALIDATION_FRACTION
    learning_rate: float | None = None
    class_weight: str | None = None
    threshold: str | None = None
    early_stopping: int | None = None
    early_stopping_start: int | None = None
    lr_schedule: str | None = None
    augment: str | None = None
    fine_tune: int | None = None
    fine_tune_epochs: int | None = None
    fine_tune_learning_rate: float | None = None
    refit: bool | None = None
    force: bool = False
    verbose: int = 1
    resolved: dict = field(default_factory=dict)

    def resolve(self) -> "TrainConfig":
        """A copy with the unset options taken from the architecture's recipe; this config is left as it is.

        Raises:
            ValueError: an option out of range, with the command-line flag to fix.
        """
        arch = models.get(self.arch)
        if arch.backbone is None:
            given = [key for key in TRANSFER_OPTIONS if getattr(self, key) is not None]
            if given:
                raise ValueError(f"--{given[0].replace('_', '-')} applies to architectures with a pretrained "
                                 f"backbone ({', '.join(models.pretrained())}); {self.arch} has none")
        unset = {key: value for key, value in asdict(arch.recipe).items()
                 if getattr(self, key) is None and (arch.backbone is not None or key not in TRANSFER_OPTIONS)}
        cfg = replace(self, **unset, image_size=self.image_size or arch.default_input_size)
        if arch.backbone is not None:
            cfg._check_transfer_options(arch.backbone)
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ValueError("--epochs and --batch-size must be at least 1")
        if not cfg.learning_rate > 0 or not (cfg.fine_tune_learning_rate or 1.0) > 0:
            raise ValueError("--learning-rate and --fine-tune-learning-rate must be greater than 0")
        if cfg.seed < 0 or not 0.0 < cfg.validation_fraction < 1.0:
            raise ValueError("--seed must be 0 or more and --validation-fraction between 0 and 1")
        if cfg.early_stopping < 0 or cfg.early_stopping_start < 0:
            raise ValueError("--early-stopping patience and its warm-up must be 0 or more")
        if cfg.class_weight not in ("none", "balanced"):
            raise ValueError(f"--class-weight must be none or balanced, got {cfg.class_weight!r}")
        if cfg.threshold not in ("fixed", "balanced"):
            raise ValueError(f"--threshold must be fixed or balanced, got {cfg.threshold!r}")
        if cfg.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"--lr-schedule must be constant or cosine, got {cfg.lr_schedule!r}")
        return cfg

    def _check_transfer_options(self, backbone: str) -> None:
        """The input size and transfer-learning options that a pretrained ``backbone`` accepts."""
        if min(self.image_size) < MIN_INPUT_SIDE:
            raise ValueError(f"--image-size {self.image_size[0]}x{self.image_size[1]} is too small for {self.arch}: "
                             f"at least {MIN_INPUT_SIDE}x{MIN_INPUT_SIDE} (its backbone downsamples 32 times)")
        blocks = len(block_specs(VARIANTS[backbone]))
        if not 0 <= self.fine_tune <= blocks:
            raise ValueError(f"--fine-tune must be 0 to {blocks} ({self.arch}'s blocks); got {self.fine_tune}")
        if self.fine_tune and self.fine_tune_epochs < 1:
            raise ValueError("--fine-tune needs --fine-tune-epochs of at least 1")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")


def _datasets(x_train, y_train, x_val, y_val, cfg: TrainConfig):
    import tensorflow as tf

    from .augment import random_affine

    autotune = tf.data.AUTOTUNE
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train.astype(np.float32)))
    train = train.shuffle(len(x_train), seed=cfg.seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
    train = tf.data.Dataset.zip((train, seeds)).map(
        lambda batch, s: (random_affine(tf.cast(batch[0], tf.float32) * (1.0 / 255.0), seed=s), batch[1]),
        num_parallel_calls=autotune,
    )
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val.astype(np.float32))).batch(cfg.batch_size)
    val = val.map(lambda x, y: (tf.cast(x, tf.float32) * (1.0 / 255.0), y), num_parallel_calls=autotune)
    return train.prefetch(autotune), val.cache().prefetch(autotune)


def class_weight(y: np.ndarray, mode: str) -> dict[int, float] | None:
    """Keras class weights: None, or with ``"balanced"`` each class weighted by n / (2 x its count)."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=2)
    return {i: float(len(y) / (2.0 * counts[i])) for i in range(2)}


def epoch_timer():
    """A Keras callback that appends each epoch's wall time, in seconds, to its ``seconds`` list."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    return EpochTimer()


def early_stopping(cfg: TrainConfig, epochs: int) -> list:
    """[] or a Keras EarlyStopping on validation AUC that keeps the best weights, watching after the warm-up."""
    import keras

    if not cfg.early_stopping:
        return []
    return [keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=cfg.early_stopping, restore_best_weights=True,
        start_from_epoch=min(cfg.early_stopping_start, epochs - 1), verbose=1 if cfg.verbose else 0,
    )]


def optimizer(learning_rate: float, schedule: str, steps: int):
    """Adam at ``learning_rate``, constant or decaying over ``steps`` by a cosine to 5% of it."""
    import keras

    if schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps), alpha=0.05)
    return keras.optimizers.Adam(learning_rate=learning_rate)


@dataclass
class Fitted:
    """A trained model, its history, its P(Positive) and chosen threshold on the validation images, and the
    (0-based) epoch of the history whose weights it ended with."""

    model: object
    history: dict
    probability: np.ndarray
    threshold: float
    epoch_seconds: list
    best_epoch: int


def fit(cfg: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Fitted:
    """Build ``cfg.arch`` and train it on uint8 arrays with the resolved recipe; validation drives early stopping
    and the threshold. Shared by :func:`train` (one split, a run folder) and cross-validation (no files).
    Architectures with a pretrained backbone train by :func:`emotion.train.transfer.fit_transfer`."""
    cfg = cfg.resolve()
    if models.get(cfg.arch).backbone is not None:
        return fit_transfer(cfg, x_train, y_train, x_val, y_val)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = models.build(cfg.arch, tuple(cfg.image_size))
    compile_binary(model, cfg.learning_rate, cfg, cfg.epochs, len(x_train))
    train_ds, val_ds = _datasets(x_train, y_train, x_val, y_val, cfg)
    timer = epoch_timer()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        class_weight=class_weight(y_train, cfg.class_weight),
        callbacks=[timer, *early_stopping(cfg, cfg.epochs)],
        shuffle=False,  # tf.data shuffles already
        verbose=keras_verbosity(cfg),
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    probability = predict_proba(model, x_val, cfg.batch_size)
    threshold = decision_threshold(cfg, y_val, probability)
    return Fitted(model, hist, probability, threshold, list(timer.seconds), kept_epoch(hist.get("val_auc", []), cfg))


def compile_binary(model, learning_rate: float, cfg: TrainConfig, epochs: int, samples: int) -> None:
    """Compile ``model`` as every architecture trains: binary cross-entropy, accuracy and AUC (early stopping
    watches ``val_auc``), Adam on ``cfg``'s schedule over ``epochs`` of ``samples`` images."""
    import keras

    steps = int(np.ceil(samples / cfg.batch_size))
    model.compile(optimizer=optimizer(learning_rate, cfg.lr_schedule, epochs * steps),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])


def keras_verbosity(cfg: TrainConfig) -> int:
    """Keras' ``verbose``: a progress bar on a terminal, a line per epoch in a log, nothing when quiet."""
    return (1 if sys.stderr.isatty() else 2) if cfg.verbose else 0


def decision_threshold(cfg: TrainConfig, y_val: np.ndarray, probability: np.ndarray) -> float:
    """0.5, or with ``--threshold balanced`` the one that maximises balanced accuracy on the validation images."""
    return metrics_mod.best_threshold(y_val, probability) if cfg.threshold == "balanced" else 0.5


def kept_epoch(val_auc: list[float], cfg: TrainConfig) -> int:
    """Index of the epoch whose weights the model ends with: the best validation AUC after the warm-up when early
    stopping restores the best weights, else the last epoch."""
    if not cfg.early_stopping:
        return len(val_auc) - 1
    start = min(cfg.early_stopping_start, len(val_auc) - 1)
    return start + int(np.argmax(val_auc[start:]))


def train(cfg: TrainConfig, log=print) -> dict:
    """Train, evaluate on the validation split and write the run folder atomically. Returns metrics."""
    cfg = cfg.resolve()
    dataset = data_mod.load_dataset(cfg.data)
    spec = PreprocessSpec(cfg.image_size[0], cfg.image_size[1], DEFAULT_RESIZE_FILTER)
    t0 = time.perf_counter()
    images, labels, undecodable = data_mod.load_images(dataset.samples, spec, progress="decode" if cfg.verbose else None)
    decode_seconds = time.perf_counter() - t0
    # Files that fail to decode are left out before splitting, so the manifest lists only usable images.
    bad_paths = {p for p, _ in undecodable}
    dataset.samples = [s for s in dataset.samples if s.path not in bad_paths]
    dataset.rejected += undecodable
    report = dataset.report()
    split = data_mod.stratified_split(dataset, cfg.validation_fraction, cfg.seed)
    log(_dataset_line(report, split))
    for item in report["rejected"]:
        log(f"  left out {item['path']}: {item['reason']}")
    row = {s.path: i for i, s in enumerate(dataset.samples)}
    train_rows = np.array([row[s.path] for s in split.train])
    val_rows = np.array([row[s.path] for s in split.validation])
    x_train, y_train = images[train_rows], labels[train_rows]
    x_val, y_val = images[val_rows], labels[val_rows]
    del images

    with atomic.atomic_directory(cfg.out, force=cfg.force) as run:
        fitted = fit(cfg, x_train, y_train, x_val, y_val)
        model, hist, probability, threshold = fitted.model, fitted.history, fitted.probability, fitted.threshold
        val_metrics = metrics_mod.classification_metrics(y_val, probability, threshold, split.labels)
        at_half = metrics_mod.classification_metrics(y_val, probability, 0.5, split.labels)
        epoch_seconds = fitted.epoch_seconds
        timing = {
            "decode_seconds": round(decode_seconds, 3),
            "decode_images_per_second": round((len(x_train) + len(x_val)) / max(decode_seconds, 1e-9), 1),
            "epoch_seconds": [round(s, 3) for s in epoch_seconds],
            "train_images_per_second_median": round(len(x_train) / float(np.median(epoch_seconds)), 1),
        }
        summary = {
            "roc_auc": val_metrics["roc_auc"], "accuracy": val_metrics["accuracy"],
            "balanced_accuracy": val_metrics["balanced_accuracy"], "threshold": threshold,
            "majority_accuracy": val_metrics["majority_accuracy"], "n_validation": int(len(y_val)),
            "threshold_chosen_on_validation": cfg.threshold == "balanced",  # then accuracy there is optimistic
        }
        info = ModelInfo(
            labels=split.labels, threshold=threshold, input_height=spec.height, input_width=spec.width,
            resize_filter=spec.resize_filter, architecture=cfg.arch, metrics=summary, versions=library_versions(TRAINING),
        )
        save_model(model, run / MODEL_NAME, info)
        data_mod.write_manifest(split, run)
        unused = () if models.get(cfg.arch).backbone else TRANSFER_OPTIONS
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                  if k != "resolved" and k not in unused}
        config["data_root"] = str(split.root)
        config["split_grouped"] = split.grouped  # whole labels.csv groups on each side
        config["parameters"] = int(model.count_params())
        config["image_size"] = list(cfg.image_size)
        atomic.write_text(run / RUN_JSON, json.dumps(config, indent=2))
        atomic.write_text(run / HISTORY_JSON, json.dumps(hist, indent=2))
        full = {
            "validation": val_metrics, "validation_at_0.5": at_half, "dataset": report,
            "timing": timing, "summary": summary,
        }
        atomic.write_text(run / METRICS_JSON, json.dumps(full, indent=2))
        write_evaluation_files(run, y_val, probability, val_metrics, split.labels, hist)
    log(f"wrote {cfg.out}: {MODEL_NAME}, {data_mod.MANIFEST_NAME}, {METRICS_JSON}, {HISTORY_JSON}, plots/")
    log(f"validation: {metrics_mod.summary_line(val_metrics)}")
    if cfg.threshold == "balanced":
        log(f"  (the threshold was chosen on these images, so accuracy is optimistic; at 0.5 it is "
            f"{at_half['accuracy']:.3f}, balanced {at_half['balanced_accuracy']:.3f})")
    log(f"epoch time median {np.median(epoch_seconds):.1f} s ({timing['train_images_per_second_median']} training images/s)")
    return full


def write_evaluation_files(folder: Path, y_true, probability, m: dict, labels, history: dict | None = None) -> None:
    """The seed's evaluation artefacts: classification report, and PNG plots."""
    text = metrics_mod.report_text(y_true, probability, m["threshold"], labels)
    text += f"\nROC AUC {m['roc_auc']:.4f}\naccuracy {m['accuracy']:.4f}\nbalanced accuracy {m['balanced_accuracy']:.4f}\n"
    text += f"majority-class baseline accuracy {m['majority_accuracy']:.4f}\nthreshold {m['threshold']:.4f}\n"
    text += f"confusion matrix (rows true {labels[0]}, {labels[1]}; columns predicted):\n{np.array(m['confusion_matrix'])}\n"
    atomic.write_text(folder / "classification_report.txt", text)
    if history:
        plots.training_curves(history, folder / "plots" / "training_curves.png")
    plots.roc_curve(y_true, probability, folder / "plots" / "roc_curve.png")
    plots.confusion_matrix(m["confusion_matrix"], folder / "plots" / "confusion_matrix.png", labels)


def _dataset_line(report: dict, split: data_mod.Split) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    extra = f"; left out {len(report['rejected'])} non-image file(s)" if report["rejected"] else ""
    return (
        f"data {report['root']}: {report['total']} images ({counts}; imbalance {report['imbalance_ratio']}:1; "
        f"majority baseline {report['majority_accuracy']:.1%}){extra}; split seed {split.seed}: "
        f"{len(split.train)} train / {len(split.validation)} validation"
        + (f" (groups of {data_mod.GROUPS_FILE} kept whole)" if split.grouped else "")
    )
