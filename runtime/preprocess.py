"""The one image preprocessing of emotion-edge, shared by training, export checks, runtime and server.

Every image goes through :func:`preprocess`, so an exported model sees the very uint8 array Keras saw: opened with
Pillow (over :data:`MAX_PIXELS` refused from the header; JPEGs decoded at a reduced DCT scale that still leaves
twice the target size), decoded to 8-bit RGB (EXIF orientation applied, first frame of an animation, transparency
onto white, 16- and 32-bit greyscale by the high byte, float greyscale clipped to 0..255), resized to the model's
(height, width) with one filter, aspect ratio not kept (as the seed's ``load_img``). Scaling to [0, 1]
(:func:`scale`) is done by training and inside exported models, so every backend is fed uint8.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 64_000_000  # a 400x500 model needs nothing near it (Pillow's own guard is at 89 Mpx)
RESIZE_FILTERS = {name: Image.Resampling[name.upper()] for name in ("nearest", "bilinear", "bicubic", "lanczos", "box")}
DEFAULT_RESIZE_FILTER = "bilinear"
DEFAULT_INPUT_SIZE = (400, 500)  # (height, width), the seed's input
BACKGROUND_RGB = (255, 255, 255)  # what a viewer shows behind a transparent PNG on a page
OPEN_ERRORS = {FileNotFoundError: "file not found (or a broken symbolic link)", PermissionError: "permission denied",
               IsADirectoryError: "is a directory, not an image file",
               Image.UnidentifiedImageError: "not an image Pillow can identify"}

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ImageDecodeError(ValueError):
    """An input that is not a usable image, with a one-line reason fit for a per-file report."""


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model needs of its input: size and resize filter. Travels in the model's metadata."""

    height: int = DEFAULT_INPUT_SIZE[0]
    width: int = DEFAULT_INPUT_SIZE[1]
    resize_filter: str = DEFAULT_RESIZE_FILTER

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size must be at least 8x8, got {self.height}x{self.width}")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"unknown resize filter {self.resize_filter!r}; known: {', '.join(RESIZE_FILTERS)}")

    @property
    def size(self) -> tuple[int, int]:  # (height, width)
        return (self.height, self.width)


def open_image(source: ImageSource, spec: PreprocessSpec = PreprocessSpec()) -> Image.Image:
    """Open ``source`` lazily: header read, size checked, JPEG reduced-scale decoding set up.

    Its ``size`` is what decoding will produce, the decode work the server admits a request by.

    Raises:
        ImageDecodeError: not an image, unreadable, or over :data:`MAX_PIXELS`.
    """
    if isinstance(source, np.ndarray):
        return Image.fromarray(_rgb_array(source), "RGB")
    image = source if isinstance(source, Image.Image) else _open(source)
    _check_pixels(image.width, image.height)
    # Reduced-scale decoding for files opened here (a caller's own image is left as it is); a rotated image's
    # draft would be cut on the wrong side.
    if image is not source and image.format == "JPEG" and not _rotates(image):
        image.draft("RGB", (spec.width * 2, spec.height * 2))
    return image


def decode(source: ImageSource, spec: PreprocessSpec = PreprocessSpec()) -> Image.Image:
    """Decode ``source`` to an 8-bit RGB Pillow image of its own size (EXIF orientation applied)."""
    image = open_image(source, spec)
    try:
        image.load()
        return to_rgb8(ImageOps.exif_transpose(image))  # a new image: exif_transpose copies
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused before decoding (decompression-bomb guard): {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    finally:
        if image is not source:  # opened here, closed here (multi-frame files keep their file open otherwise)
            image.close()


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, as the module docstring describes."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":  # I;16* and I (16-bit PNGs arrive as I on some Pillow versions)
        grey = np.clip(np.asarray(image), 0, 255) if mode == "F" else np.clip(np.asarray(image), 0, 65535) >> 8
        return Image.fromarray(grey.astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize(image: Image.Image, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Resize an RGB image to the spec's size; the uint8 (height, width, 3) array."""
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), RESIZE_FILTERS[spec.resize_filter])
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def preprocess(source: ImageSource, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Decode and resize one image: the uint8 (height, width, 3) RGB array every model is fed.

    A path, bytes, a binary file, a PIL image or a uint8 array; an array already of the model's size is passed
    through untouched.

    Raises:
        ImageDecodeError: with a one-line reason, for anything that is not a usable image.
    """
    if isinstance(source, np.ndarray) and source.shape == (spec.height, spec.width, 3):
        return np.ascontiguousarray(_rgb_array(source))
    return resize(decode(source, spec), spec)


def scale(batch: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels to float32 in [0, 1], the seed's ``rescale=1./255``."""
    return batch.astype(np.float32) * np.float32(1.0 / 255.0)


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageDecodeError("empty data (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        if os.path.isfile(source) and os.path.getsize(source) == 0:
            raise ImageDecodeError("empty file (0 bytes)")
    elif not hasattr(source, "read"):
        raise ImageDecodeError(f"cannot read an image from {type(source).__name__}")
    try:
        return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused before decoding (decompression-bomb guard): {exc}") from None
    except OSError as exc:  # Pillow's UnidentifiedImageError, missing files, symlink loops (ELOOP), ...
        reason = next((text for kind, text in OPEN_ERRORS.items() if isinstance(exc, kind)), None)
        raise ImageDecodeError(reason or f"cannot read: {exc.strerror or exc}") from None
    except (SyntaxError, ValueError, TypeError, EOFError, IndexError, struct.error) as exc:  # a malformed header
        raise ImageDecodeError(f"not a readable image: {exc}") from None


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"refused before decoding: {width}x{height} = {width * height:,} pixels exceeds the "
                               f"limit of {MAX_PIXELS:,} (decompression-bomb guard)")
    if width < 1 or height < 1:
        raise ImageDecodeError(f"empty image ({width}x{height})")


def _rgb_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"arrays must be uint8 RGB, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageDecodeError(f"arrays must be HxWx3 (RGB), got shape {array.shape}")
    _check_pixels(array.shape[1], array.shape[0])
    return np.asarray(to_rgb8(Image.fromarray(array, "RGBA"))) if array.shape[2] == 4 else array


def _rotates(image: Image.Image) -> bool:
    try:
        return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap width and height
    except Exception:  # a broken EXIF block must not stop the decode; exif_transpose copes later
        return False
