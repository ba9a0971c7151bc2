"""Transfer learning on a pretrained backbone: a small head on frozen features, then, optionally, fine-tuning of
the backbone's top blocks.

Both stages train on activations computed once, not on images: the frozen part of the network gives the same
output every epoch, so it runs once per training image (and once more per augmented view), and each epoch only
runs what is trained. On two CPU cores this turns minutes an epoch into seconds.

1. **Head**: the global-average-pooled features of the frozen backbone, standardised (a frozen batch norm set to
   the training features' mean and variance, as a logistic-regression probe would), dropout, one L2-regularised sigmoid
   unit; class weights; a fixed number of epochs (the problem is convex apart from dropout, and the ~70 validation
   images of a small dataset are too few to pick an epoch by).
2. **Fine-tuning** (``fine_tune`` > 0 blocks): the last ``fine_tune`` MBConv blocks and the head convolution train
   together with the head at a low learning rate; their batch norms stay frozen, so they run in inference mode
   with ImageNet statistics (a few hundred images cannot re-estimate them); early stopping on validation AUC
   keeps the best epoch.

The result is the registry's ordinary Keras model, image to probability, whose layers were trained in place (the
layers frozen while training, batch norms among them, stay marked ``trainable=False`` in the saved model).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from . import metrics as metrics_mod
from . import models
from .efficientnet_lite import FEATURES_LAYER, NORMALIZATION_LAYER, fine_tune_inputs

if TYPE_CHECKING:
    import keras

    from .trainer import Fitted, TrainConfig

AUGMENTATIONS = ("none", "flip")


def views(images: np.ndarray, labels: np.ndarray, augment: str) -> tuple[np.ndarray, np.ndarray]:
    """The training images as the frozen part sees them: as they are, and mirrored left-right with ``"flip"``
    (what a photo shows does not change its emotion when mirrored)."""
    if augment == "flip":
        return np.concatenate([images, images[:, :, ::-1]]), np.concatenate([labels, labels])
    return images, labels


def _activations(model: "keras.Model", images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``model``'s outputs (a list, one array per output) for uint8 images, scaled in chunks of 256."""
    from emotion.runtime.preprocess import scale

    chunks = [model.predict(scale(images[i : i + 256]), batch_size=batch_size, verbose=0)
              for i in range(0, len(images), 256)]
    chunks = [chunk if isinstance(chunk, list) else [chunk] for chunk in chunks]
    return [np.concatenate(parts).astype(np.float32) for parts in zip(*chunks)]


def _fit(model: "keras.Model", x, y: np.ndarray, validation: tuple, epochs: int, learning_rate: float,
         cfg: "TrainConfig", callbacks: list) -> dict[str, list[float]]:
    """Compile ``model`` with binary cross-entropy, accuracy and AUC, fit it on cached inputs with the recipe's
    batch size, class weights and schedule; the history as plain floats."""
    import keras

    from .trainer import class_weight, optimizer

    steps = int(np.ceil(len(y) / cfg.batch_size))
    model.compile(optimizer=optimizer(learning_rate, cfg.lr_schedule, epochs * steps),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])
    history = model.fit(x, y.astype(np.float32), validation_data=(validation[0], validation[1].astype(np.float32)),
                        epochs=epochs, batch_size=cfg.batch_size, class_weight=class_weight(y, cfg.class_weight),
                        shuffle=True, callbacks=callbacks,
                        verbose=(1 if sys.stderr.isatty() else 2) if cfg.verbose else 0)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def fit_transfer(cfg: "TrainConfig", x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray) -> "Fitted":
    """Train ``cfg.arch`` (a registry entry with a pretrained backbone) by the two stages above."""
    import keras

    from .trainer import Fitted, early_stopping, epoch_timer, kept_epoch

    keras.utils.set_random_seed(cfg.seed)
    model = models.build(cfg.arch, tuple(cfg.image_size))
    cut = fine_tune_inputs(model, cfg.fine_tune)
    x_views, y_views = views(x_train, y_train, cfg.augment)
    frozen = keras.Model(model.input, cut)
    a_train, a_val = _activations(frozen, x_views, cfg.batch_size), _activations(frozen, x_val, cfg.batch_size)
    features = model.get_layer(FEATURES_LAYER).output
    if cfg.fine_tune:
        pool = keras.Model(cut, features)
        f_train, f_val = pool.predict(a_train, batch_size=256, verbose=0), pool.predict(a_val, batch_size=256, verbose=0)
    else:
        (f_train,), (f_val,) = a_train, a_val
    timer = epoch_timer()

    head = keras.Model(features, model.output)
    head.get_layer(NORMALIZATION_LAYER).set_weights([f_train.mean(axis=0), f_train.var(axis=0)])
    history = _fit(head, f_train, y_views, (f_val, y_val), cfg.epochs, cfg.learning_rate, cfg, [timer])
    history["stage"] = ["head"] * cfg.epochs
    best_epoch, last, val_inputs = cfg.epochs - 1, head, f_val

    if cfg.fine_tune:
        trained = keras.Model(cut, model.output)
        for layer in trained.layers:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        more = _fit(trained, a_train, y_views, (a_val, y_val), cfg.fine_tune_epochs, cfg.fine_tune_learning_rate,
                    cfg, [timer, *early_stopping(cfg, cfg.fine_tune_epochs)])
        for key, values in more.items():
            history[key].extend(values)
        history["stage"] += ["fine-tune"] * len(more["loss"])
        best_epoch, last, val_inputs = cfg.epochs + kept_epoch(more["val_auc"], cfg), trained, a_val
    probability = last.predict(val_inputs, batch_size=cfg.batch_size, verbose=0).reshape(-1).astype(np.float32)
    threshold = metrics_mod.best_threshold(y_val, probability) if cfg.threshold == "balanced" else 0.5
    return Fitted(model, history, probability, threshold, list(timer.seconds), best_epoch)
