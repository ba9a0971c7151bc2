"""A folder of real, awkward image files made with Pillow, for the runtime and CLI tests.

Each entry of :func:`make_corpus`'s result says whether the runtime must classify the file (``ok``) or
report it with a reason (``error``); files it must silently skip (a folder's ``notes.txt``) are listed apart.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

NON_UTF8_NAME = b"caf\xe9-\xff.jpg"  # Latin-1 bytes: not valid UTF-8


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    ok: bool  # True: must be classified; False: must be reported with a reason
    note: str = ""


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # Some structure, so JPEG files are not all noise and colours differ from file to file.
    base[: height // 2, :, 0] = np.uint8(200 + seed % 50)
    return base


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose PNG header claims ``width`` x ``height`` RGB pixels (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def exif_rotated_jpeg() -> tuple[bytes, Image.Image]:
    """A JPEG stored 60x40 with EXIF orientation 6 (rotate 90° clockwise to display): displayed 40x60."""
    stored = Image.fromarray(_noise(40, 60, seed=7), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_bytes(stored, exif=exif.tobytes())
    displayed = Image.open(io.BytesIO(data))
    displayed.load()
    return data, displayed.transpose(Image.Transpose.ROTATE_270)


def make_corpus(folder: Path) -> tuple[list[CorpusFile], list[Path]]:
    """Write the corpus into ``folder``; return (files the runtime must report, files it must skip)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[CorpusFile] = []

    def add(name: str, data: bytes, ok: bool, note: str = "") -> Path:
        path = folder / name
        path.write_bytes(data)
        files.append(CorpusFile(path, ok, note))
        return path

    rgb = Image.fromarray(_noise(48, 64, seed=1), "RGB")
    add("ok_rgb.jpg", jpeg_bytes(rgb), True, "plain RGB JPEG")
    add("zero.jpg", b"", False, "zero bytes")
    big = jpeg_bytes(Image.fromarray(_noise(256, 256, seed=2), "RGB"))
    add("truncated.jpg", big[: len(big) * 6 // 10], False, "truncated JPEG")
    add("text.jpg", b"this is not an image\n", False, "text named .jpg")
    add("png_named.jpg", png_bytes(Image.fromarray(_noise(30, 50, seed=3), "RGB")), True, "PNG named .jpg")
    add("cmyk.jpg", jpeg_bytes(rgb.convert("CMYK")), True, "CMYK JPEG")
    add("gray.jpg", jpeg_bytes(rgb.convert("L")), True, "greyscale JPEG")
    gray16 = Image.fromarray((np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30).astype(np.uint16))
    add("gray16.png", png_bytes(gray16), True, "16-bit PNG")
    rgba = np.dstack([_noise(32, 32, seed=4), np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))])
    add("rgba.png", png_bytes(Image.fromarray(rgba, "RGBA")), True, "RGBA PNG")
    palette = Image.fromarray(_noise(32, 32, seed=5), "RGB").quantize(16)
    add("palette.png", png_bytes(palette, transparency=0), True, "P with transparency")
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", buffer.getvalue(), True, "animated GIF (first frame)")
    add("rotated.jpg", exif_rotated_jpeg()[0], True, "EXIF orientation 6")
    for kind in ("BMP", "PPM", "WEBP"):  # formats whose signatures are short or shared with other files
        buffer = io.BytesIO()
        rgb.save(buffer, kind)
        add(f"ok.{kind.lower()}", buffer.getvalue(), True, f"a {kind} file")
    add("bad_header.pgm", b"P2 is the second phase\n", False, "PNM signature, malformed header")
    add("huge.png", huge_png_header(), False, "header claims 100000x100000")
    # Names that are not valid UTF-8 (the file system stores bytes).
    odd = os.path.join(os.fsencode(folder), NON_UTF8_NAME)
    with open(odd, "wb") as handle:
        handle.write(jpeg_bytes(Image.fromarray(_noise(20, 30, seed=6), "RGB")))
    files.append(CorpusFile(Path(os.fsdecode(odd)), True, "non-UTF-8 file name"))
    broken = folder / "broken_link.jpg"
    broken.symlink_to("does-not-exist.jpg")  # relative to the link's folder
    files.append(CorpusFile(broken, False, "broken symbolic link"))
    loop_a, loop_b = folder / "loop_a.jpg", folder / "loop_b.jpg"
    loop_a.symlink_to(loop_b.name)
    loop_b.symlink_to(loop_a.name)
    files.append(CorpusFile(loop_a, False, "symbolic link loop"))
    files.append(CorpusFile(loop_b, False, "symbolic link loop"))
    if os.geteuid() != 0:  # root reads a chmod 000 file anyway
        locked = add("unreadable.jpg", jpeg_bytes(rgb), False, "chmod 000")
        locked.chmod(0)
    skipped = [folder / "notes.txt", folder / "trip.txt", folder / "memo.wav"]
    skipped[0].write_text("a folder's notes are not images and are not errors\n")
    skipped[1].write_text("BMW trip, day one: notes on what we saw\n")  # starts like a BMP ("BM")
    skipped[2].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28))  # RIFF, as WebP is
    return files, skipped
