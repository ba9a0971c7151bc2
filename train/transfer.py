"""Transfer learning on a pretrained backbone: a small head on frozen features, then, optionally, fine-tuning of
the backbone's top blocks.

Both stages train on activations computed once, not on images: the frozen part of the network gives the same
output every epoch, so it runs once per training image (and once more per augmented view), and each epoch only
runs what is trained. On two CPU cores this turns minutes an epoch into seconds.

1. **Head**: the global-average-pooled features of the frozen backbone, standardised (a frozen batch norm set to
   the training features' mean and variance, as a logistic-regression probe would), dropout, one L2-regularised
   unit; class weights; a fixed number of epochs (the problem is convex apart from dropout, and the ~70
   validation images of a small dataset are too few to pick an epoch by).
2. **Fine-tuning** (``fine_tune`` > 0 blocks): the last ``fine_tune`` MBConv blocks and the head convolution train
   together with the head at a low learning rate; their batch norms stay frozen, so they run in inference mode
   with ImageNet statistics (a few hundred images cannot re-estimate them); early stopping on validation AUC
   keeps the best epoch.
3. **Refit** (``refit``): both stages again, from the start, on training and validation images together, for
   the epochs chosen in 1 and 2 (see :func:`fit_transfer`).

The result is the registry's ordinary Keras model, image to probability, whose layers were trained in place.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

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


def _fit(model: "keras.Model", x, y: np.ndarray, validation: tuple | None, epochs: int, learning_rate: float,
         cfg: "TrainConfig", callbacks: list) -> dict[str, list[float]]:
    """Compile ``model`` with binary cross-entropy, accuracy and AUC, fit it on cached inputs with the recipe's
    batch size, class weights and schedule; the history as plain floats."""
    from .trainer import class_weight, compile_binary, keras_verbosity

    compile_binary(model, learning_rate, cfg, epochs, len(y))
    history = model.fit(x, y.astype(np.float32), epochs=epochs, batch_size=cfg.batch_size,
                        validation_data=validation and (validation[0], validation[1].astype(np.float32)),
                        class_weight=class_weight(y, cfg.class_weight), shuffle=True, callbacks=callbacks,
                        verbose=keras_verbosity(cfg))
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def _train(cfg: "TrainConfig", x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None,
           timer) -> tuple["keras.Model", dict, np.ndarray | None]:
    """A new ``cfg.arch`` model trained by the two stages; with validation images, early stopping watches them.

    Returns:
        (the model, its history, P(Positive) of the validation images or None).
    """
    import keras

    from .trainer import early_stopping

    keras.utils.set_random_seed(cfg.seed)
    model = models.build(cfg.arch, tuple(cfg.image_size))
    cut = fine_tune_inputs(model, cfg.fine_tune)  # the trained part's inputs, computed once
    frozen = keras.Model(model.input, cut)
    x_views, y_views = views(x, y, cfg.augment)
    a_train = _activations(frozen, x_views, cfg.batch_size)
    a_val = None if x_val is None else _activations(frozen, x_val, cfg.batch_size)
    features = model.get_layer(FEATURES_LAYER).output
    pool = keras.Model(cut, features) if cfg.fine_tune else None

    def head_inputs(a: list[np.ndarray] | None) -> np.ndarray | None:
        if a is None:
            return None
        return a[0] if pool is None else pool.predict(a, batch_size=256, verbose=0)

    f_train, f_val = head_inputs(a_train), head_inputs(a_val)
    head = keras.Model(features, model.output)
    head.get_layer(NORMALIZATION_LAYER).set_weights([f_train.mean(axis=0), f_train.var(axis=0)])
    validation = None if x_val is None else (f_val, y_val)
    history = _fit(head, f_train, y_views, validation, cfg.epochs, cfg.learning_rate, cfg, [timer])
    history["stage"] = ["head"] * cfg.epochs
    last, val_inputs = head, f_val

    if cfg.fine_tune:
        trained = keras.Model(cut, model.output)
        for layer in trained.layers:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        validation = None if x_val is None else (a_val, y_val)
        stopping = [] if x_val is None else early_stopping(cfg, cfg.fine_tune_epochs)
        more = _fit(trained, a_train, y_views, validation, cfg.fine_tune_epochs, cfg.fine_tune_learning_rate, cfg,
                    [timer, *stopping])
        for key, values in more.items():
            history[key].extend(values)
        history["stage"] += ["fine-tune"] * len(more["loss"])
        last, val_inputs = trained, a_val
    probability = None if x_val is None else (
        last.predict(val_inputs, batch_size=cfg.batch_size, verbose=0).reshape(-1).astype(np.float32))
    return model, history, probability


def fit_transfer(cfg: "TrainConfig", x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray) -> "Fitted":
    """Train ``cfg.arch`` (a registry entry with a pretrained backbone) by the two stages above, watching the
    validation images; then, with ``cfg.refit``, train it again from the start on the training and validation
    images together for the epochs validation chose.

    Why refit: on a few hundred photos, the fifth held out for validation is data the model is short of
    (grouped CV in benchmarks/results/model_quality.md); once validation has chosen the epochs and the
    threshold, it can be trained on too. The validation probabilities, threshold and history returned stay
    those of the first fit, so the figures a run reports are on held-out images; the returned model is the refit
    one, which has seen the validation images.
    """
    from .trainer import Fitted, decision_threshold, epoch_timer, kept_epoch

    timer = epoch_timer()
    model, history, probability = _train(cfg, x_train, y_train, x_val, y_val, timer)
    best_epoch = cfg.epochs - 1
    if cfg.fine_tune:
        best_epoch = cfg.epochs + kept_epoch(history["val_auc"][cfg.epochs:], cfg)
    threshold = decision_threshold(cfg, y_val, probability)
    if cfg.refit:
        chosen = replace(cfg, fine_tune_epochs=best_epoch + 1 - cfg.epochs)
        model, _, _ = _train(chosen, np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), None,
                             None, epoch_timer())
    return Fitted(model, history, probability, threshold, list(timer.seconds), best_epoch)
