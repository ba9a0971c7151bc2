"""The shared preprocessing: every colour mode to 8-bit RGB, one resize filter, guards, same result for every
kind of source."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from emotion.runtime.preprocess import (
    ImageDecodeError,
    PreprocessSpec,
    decode,
    preprocess,
    scale,
    to_rgb8,
)
from emotion.train.data import parse_image_size

SPEC = PreprocessSpec(40, 50)


def _gradient(w=60, h=48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 90.0)], 2)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _png_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_sources_agree(tmp_path):
    image = _gradient()
    path = tmp_path / "a.png"
    image.save(path)
    data = path.read_bytes()
    expected = preprocess(path, SPEC)
    assert expected.shape == (40, 50, 3) and expected.dtype == np.uint8
    np.testing.assert_array_equal(preprocess(str(path), SPEC), expected)
    np.testing.assert_array_equal(preprocess(data, SPEC), expected)
    np.testing.assert_array_equal(preprocess(io.BytesIO(data), SPEC), expected)
    np.testing.assert_array_equal(preprocess(Image.open(path), SPEC), expected)
    np.testing.assert_array_equal(preprocess(np.asarray(image), SPEC), expected)


def test_resize_is_pillow_bilinear_of_full_size_image():
    image = _gradient()
    expected = np.asarray(image.resize((50, 40), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(preprocess(_png_bytes(image), SPEC), expected)


def test_model_sized_uint8_array_passes_untouched():
    array = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess(array, SPEC), array)
    with pytest.raises(ImageDecodeError):
        preprocess(array.astype(np.float32), SPEC)


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    out = np.asarray(to_rgb8(rgba))
    assert tuple(out[5, 5]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (0, 0, 255)
    la = Image.new("LA", (4, 4), (0, 0))
    assert tuple(np.asarray(to_rgb8(la))[1, 1]) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0
    out = np.asarray(to_rgb8(Image.open(io.BytesIO(_png_bytes(palette, transparency=0)))))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (10, 20, 30)


def test_grey_cmyk_and_16_bit():
    grey = Image.new("L", (4, 4), 77)
    assert tuple(np.asarray(to_rgb8(grey))[0, 0]) == (77, 77, 77)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    red = decode(buf.getvalue(), SPEC)
    assert red.mode == "RGB"
    r, g, b = np.asarray(red)[2, 2].astype(int)
    assert r > 200 and g < 60 and b < 60
    sixteen = Image.fromarray(np.full((4, 4), 0xABCD, dtype=np.uint16))
    decoded = np.asarray(decode(_png_bytes(sixteen), SPEC))
    assert tuple(decoded[0, 0]) == (0xAB, 0xAB, 0xAB)  # high byte, not clipped to 255


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # left third red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif, quality=95)
    shown = decode(buf.getvalue(), SPEC)
    assert shown.size == (20, 30)  # portrait once rotated
    top = np.asarray(shown)[2, 10]
    assert top[0] > 200 and top[1] < 60  # the red band is now on top


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((250, 0, 0), (0, 250, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    first = np.asarray(decode(buf.getvalue(), SPEC))[4, 4]
    assert first[0] > 200 and first[1] < 60


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A few hundred bytes that claim 10 gigapixels: it must be refused from the header alone.
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (b"P2 is the second phase", "not a readable image"),  # Pillow's PNM reader raises ValueError
        (_png_header_only(100_000, 100_000), "refused before decoding"),
    ],
)
def test_bad_inputs_raise_one_line_reasons(data, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        preprocess(data, SPEC)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_an_error_not_a_crash(tmp_path):
    buf = io.BytesIO()
    _gradient(200, 150).save(buf, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        preprocess(path, SPEC)
    with pytest.raises(ImageDecodeError, match="not found"):
        preprocess(tmp_path / "missing.jpg", SPEC)


def test_scale_is_the_seeds_rescale():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(scale(x), [[0.0, 0.2, 1.0]], rtol=1e-6)
    assert scale(x).dtype == np.float32


@pytest.mark.parametrize("text", ["400", "0x10", "axb", "5000x10", "10x-3"])
def test_bad_image_sizes(text):
    with pytest.raises(ValueError, match="HxW|between"):
        parse_image_size(text)
    assert parse_image_size("400x500") == (400, 500)


def test_twitter_photos_all_decode(twitter_dir):
    files = sorted(p for p in twitter_dir.rglob("*.jpg") if p.is_file())
    arrays = [preprocess(p, SPEC) for p in files]
    assert len(arrays) == 52 and all(a.shape == (40, 50, 3) for a in arrays)
    rgba_png = [p for p in files if p.read_bytes()[:4] == b"\x89PNG" and Image.open(p).mode == "RGBA"]
    assert rgba_png, "the sample holds an RGBA PNG named .jpg"


def test_a_callers_pil_image_is_left_as_it_was(tmp_path):
    """Reduced-scale JPEG decoding applies to files opened here, never to an image the caller opened."""
    path = tmp_path / "big.jpg"
    _gradient(1600, 1200).save(path, "JPEG")
    with Image.open(path) as image:
        decode(image, SPEC)
        assert image.size == (1600, 1200)
