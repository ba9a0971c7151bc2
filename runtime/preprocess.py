"""The one image preprocessing of emotion-edge, shared by training, export checks, runtime and server.

Training feeds its validation images through exactly these functions, and the runtime feeds files through
them again, so an exported model sees the same uint8 array, byte for byte, that Keras saw.

The contract, in order:

1. **Decode** with Pillow, from a path, bytes, a binary file object or an already opened ``PIL.Image``.
   Images larger than :data:`MAX_PIXELS` are refused from their header, before any pixel is decoded.
   The EXIF orientation tag is applied (a phone photo is classified the way it is displayed).
   Animated images use their first frame.
2. **Colour**: everything becomes 8-bit RGB:
   transparency (RGBA, LA, PA, P or L with a transparent colour) is composited onto white;
   16-bit and 32-bit integer greyscale (I;16, I) is mapped to 8 bits by taking the high byte
   (``value >> 8`` for 16-bit data); float greyscale (F) is clipped to 0..255; CMYK, YCbCr, LAB, HSV, 1, L
   are converted with Pillow's ``convert("RGB")``.
3. **Resize** to the model's input size (height x width, aspect ratio not kept, as the seed's Keras
   ``load_img(target_size=...)`` did) with one filter, :data:`DEFAULT_RESIZE_FILTER` (Pillow's bilinear, which
   is antialiased when shrinking). JPEGs are first decoded at a reduced DCT scale when that still leaves at
   least twice the target size (Pillow's ``draft``), which is faster and nearly lossless at that margin.
4. **Result**: a ``uint8`` array of shape ``(height, width, 3)`` in RGB order. Scaling to [0, 1]
   (``x / 255``, the seed's ``rescale=1./255``) is :func:`scale`, which training applies and which exported
   models carry inside their graph, so every backend is fed uint8.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

# Pillow's own guard warns at 89 Mpx and raises at twice that; we refuse anything above 64 Mpx from the
# header alone, before decoding (a 400x500 model needs nothing near that).
MAX_PIXELS = 64_000_000

RESIZE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
DEFAULT_RESIZE_FILTER = "bilinear"
DEFAULT_INPUT_SIZE = (400, 500)  # (height, width), the seed's input
# Composite transparent pixels onto white: what a viewer shows for a transparent PNG on a page.
BACKGROUND_RGB = (255, 255, 255)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ImageDecodeError(ValueError):
    """An input that is not a decodable image, with a one-line reason fit for a per-file report."""


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
            raise ValueError(
                f"unknown resize filter {self.resize_filter!r}; known: {', '.join(sorted(RESIZE_FILTERS))}"
            )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (for example ``400x500``) into (height, width), with a clear error."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"image size must look like HxW, for example 400x500; got {text!r}") from None
    if height < 8 or width < 8 or height > 4096 or width > 4096:
        raise ValueError(f"image size must be between 8 and 4096 on each side; got {text!r}")
    return height, width


def open_image(source: ImageSource) -> Image.Image:
    """Open ``source`` lazily (header only) and refuse oversized images before decoding."""
    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ImageDecodeError("empty data (0 bytes)")
            image = Image.open(io.BytesIO(bytes(source)))
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise ImageDecodeError("empty file (0 bytes)")
            image = Image.open(path)
        else:
            image = Image.open(source)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError("file not found (or a broken symbolic link)") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a directory, not an image file") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except OSError as exc:  # includes UnidentifiedImageError and symlink loops (ELOOP)
        if isinstance(exc, Image.UnidentifiedImageError):
            raise ImageDecodeError("not an image Pillow can identify") from None
        raise ImageDecodeError(f"cannot read: {exc.strerror or exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused before decoding (decompression-bomb guard): {exc}") from None
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        image.close()
        raise ImageDecodeError(
            f"refused before decoding: {image.width}x{image.height} = {pixels:,} pixels exceeds the "
            f"limit of {MAX_PIXELS:,} (decompression-bomb guard)"
        )
    return image


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, as documented in the module docstring."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(image)
        if mode == "I":
            # 32-bit container: 16-bit PNGs arrive as I on some Pillow versions; map 0..65535 like I;16.
            data = np.clip(data, 0, 65535)
        gray = (data.astype(np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode(source: ImageSource, spec: PreprocessSpec = PreprocessSpec()) -> Image.Image:
    """Decode ``source`` to an 8-bit RGB Pillow image of its own size (EXIF orientation applied)."""
    if isinstance(source, np.ndarray):
        return Image.fromarray(_as_rgb_array(source), "RGB")
    image = open_image(source)
    # An image we opened here is closed here: multi-frame files (GIF, TIFF) and failed decodes otherwise keep
    # their file open until garbage collection (one leaked descriptor per file in a long run).
    owned = image is not source
    try:
        if image.format == "JPEG" and not _has_rotating_exif(image):
            # Reduced-scale DCT decode, keeping at least twice the target size for the resize to work on.
            image.draft("RGB", (spec.width * 2, spec.height * 2))
        image.load()
        rgb = to_rgb8(ImageOps.exif_transpose(image))
    except ImageDecodeError:
        _close_if(owned, image)
        raise
    except Image.DecompressionBombError as exc:
        _close_if(owned, image)
        raise ImageDecodeError(f"refused before decoding (decompression-bomb guard): {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        _close_if(owned, image)
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    _close_if(owned and rgb is not image, image)
    return rgb


def _close_if(condition: bool, image: Image.Image) -> None:
    if condition:
        try:
            image.close()
        except Exception:  # closing is best effort; the decode result or error is what matters
            pass


def resize(image: Image.Image, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Resize an RGB image to the spec's size and return the uint8 HxWx3 array."""
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), RESIZE_FILTERS[spec.resize_filter])
    array = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(array)


def preprocess(source: ImageSource, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Decode and resize one image: the uint8 (height, width, 3) RGB array every model is fed.

    Raises :class:`ImageDecodeError` with a one-line reason for anything that is not a usable image.
    A ``uint8`` array of exactly the model's size is passed through untouched.
    """
    if isinstance(source, np.ndarray) and source.shape == (spec.height, spec.width, 3):
        if source.dtype != np.uint8:
            raise ImageDecodeError(f"arrays must be uint8 RGB, got {source.dtype}")
        return np.ascontiguousarray(source)
    return resize(decode(source, spec), spec)


def scale(batch: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels to float32 in [0, 1], the seed's ``rescale=1./255``."""
    return batch.astype(np.float32) * np.float32(1.0 / 255.0)


def _as_rgb_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"arrays must be uint8 RGB, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageDecodeError(f"arrays must be HxWx3 (RGB), got shape {array.shape}")
    if array.shape[2] == 4:
        return np.asarray(to_rgb8(Image.fromarray(array, "RGBA")))
    return array


def _has_rotating_exif(image: Image.Image) -> bool:
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block must not stop the decode; exif_transpose copes later
        return False

