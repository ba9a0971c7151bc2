"""The model registry: ``--arch NAME`` picks a builder here, so new architectures need no pipeline change.

Every model takes float32 RGB in [0, 1] of shape (height, width, 3) and ends in one sigmoid unit giving
P(Positive). Augmentation and scaling are never part of a model (export adds uint8 scaling itself).
"""

from __future__ import annotations

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
    lr_schedule: str = "constant"  # "constant" or "cosine"


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[tuple[int, int]], "keras.Model"]
    description: str
    default_input_size: tuple[int, int] = (400, 500)
    recipe: Recipe = Recipe()


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


REGISTRY: dict[str, Architecture] = {
    "seed": Architecture("seed", build_seed, "the seed tutorial's VGG-style baseline (faithful default)"),
}


def known() -> str:
    return ", ".join(f"{a.name} ({a.description})" for a in REGISTRY.values())


def get(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {known()}") from None


def build(name: str, input_size: tuple[int, int] | None = None) -> "keras.Model":
    arch = get(name)
    return arch.build(input_size or arch.default_input_size)


def custom_objects() -> dict:
    """Custom layers a saved model may need to load (none yet)."""
    return {}
