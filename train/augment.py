"""The seed's on-the-fly augmentation, as one random affine warp per image, run inside ``tf.data``.

The seed used Keras' ``ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")``. We draw the same random
parameters the same way and compose them into the same single affine matrix
(rotation @ shift @ shear @ zoom, about the image centre, then the flip), applied with one bilinear resample
(``ImageProjectiveTransformV3``, nearest fill) on whole batches in parallel: one interpolation per image, as
the seed, but without its per-image Python loop. Note that ``ImageDataGenerator``'s ``shear_range`` is an
angle in degrees, so the seed's shear of 0.2 is a 0.2-degree shear; we keep that meaning.

Augmentation lives only in the training input pipeline; it is never part of a saved model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    rotation_degrees: float = 40.0
    width_shift: float = 0.2  # fraction of width
    height_shift: float = 0.2  # fraction of height
    shear_degrees: float = 0.2
    zoom: float = 0.2  # zoom factors drawn independently per axis from [1 - zoom, 1 + zoom]
    horizontal_flip: bool = True
    fill_mode: str = "NEAREST"


SEED_AUGMENTATION = AugmentConfig()


def random_affine(images: tf.Tensor, config: AugmentConfig = SEED_AUGMENTATION, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Warp a float batch (N, H, W, C) with one random affine transform per image."""
    shape = tf.shape(images)
    n, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 7) if seed is not None else [None] * 7

    def uniform(i: int, low: float, high: float) -> tf.Tensor:
        if seeds[i] is None:
            return tf.random.uniform([n], low, high)
        return tf.random.stateless_uniform([n], seeds[i], low, high)

    # Drawn as ImageDataGenerator.get_random_transform draws them (tx along rows, ty along columns).
    theta = uniform(0, -config.rotation_degrees, config.rotation_degrees)
    tx = uniform(1, -config.height_shift, config.height_shift) * height
    ty = uniform(2, -config.width_shift, config.width_shift) * width
    shear = uniform(3, -config.shear_degrees, config.shear_degrees)
    zx = uniform(4, 1.0 - config.zoom, 1.0 + config.zoom)
    zy = uniform(5, 1.0 - config.zoom, 1.0 + config.zoom)
    flip = uniform(6, 0.0, 1.0) < 0.5 if config.horizontal_flip else tf.zeros([n], tf.bool)
    return apply_affine(images, theta, tx, ty, shear, zx, zy, flip, config.fill_mode)


def apply_affine(images, theta, tx, ty, shear, zx, zy, flip, fill_mode: str = "NEAREST") -> tf.Tensor:
    """``ImageDataGenerator.apply_transform`` for a batch: angles in degrees, shifts in pixels, one resample."""
    shape = tf.shape(images)
    n, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    theta = tf.cast(theta, tf.float32) * (math.pi / 180.0)
    shear = tf.cast(shear, tf.float32) * (math.pi / 180.0)
    tx, ty, zx, zy = (tf.cast(v, tf.float32) for v in (tx, ty, zx, zy))
    zeros, ones = tf.zeros([n]), tf.ones([n])

    def mat(rows: list[list[tf.Tensor]]) -> tf.Tensor:  # (n, 3, 3)
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)

    def shift(row: tf.Tensor, col: tf.Tensor) -> tf.Tensor:
        return mat([[ones, zeros, row * ones], [zeros, ones, col * ones], [zeros, zeros, ones]])

    rotation = mat([[tf.cos(theta), -tf.sin(theta), zeros], [tf.sin(theta), tf.cos(theta), zeros], [zeros, zeros, ones]])
    shearing = mat([[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros], [zeros, zeros, ones]])
    zooming = mat([[zx, zeros, zeros], [zeros, zy, zeros], [zeros, zeros, ones]])
    # (row, col) output -> input coordinates about the centre, as scipy.ndimage.affine_transform takes them.
    oy, ox = height / 2.0 - 0.5, width / 2.0 - 0.5
    # The horizontal flip comes after the warp in ImageDataGenerator: mirror the output columns.
    flip = tf.cast(flip, tf.bool)
    mirror, offset = tf.where(flip, -ones, ones), tf.where(flip, width - 1.0, zeros)
    flipping = mat([[ones, zeros, zeros], [zeros, mirror, offset], [zeros, zeros, ones]])
    m = shift(oy, ox) @ rotation @ shift(tx, ty) @ shearing @ zooming @ shift(-oy, -ox) @ flipping
    # ImageProjectiveTransformV3 works in (x = col, y = row): swap the axes of the matrix.
    swapped = [m[:, 1, 1], m[:, 1, 0], m[:, 1, 2], m[:, 0, 1], m[:, 0, 0], m[:, 0, 2], zeros, zeros]
    transforms = tf.stack(swapped, axis=-1)
    return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms, output_shape=shape[1:3],
                                                 fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode)
