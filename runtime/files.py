"""Finding image files in folders: recursive, robust to broken links, loops and odd names.

Files are recognised by content (their first bytes), not by extension, so a PNG named ``.jpg`` is found and
a text file named ``.jpg`` is reported, not silently skipped. Paths are yielded in a stable sorted order.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Magic numbers of the formats Pillow decodes that people keep photos in.
_SIGNATURES: tuple[bytes, ...] = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"RIFF",  # WebP (RIFF....WEBP)
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"P1", b"P2", b"P3", b"P4", b"P5", b"P6",  # PNM
)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pgm", ".pbm"}
)


@dataclass(frozen=True)
class Candidate:
    """A file to classify, or the reason it cannot be (``error`` set); ``path`` is as found."""

    path: Path
    error: str | None = None


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes carry an image signature Pillow can decode."""
    return any(head.startswith(sig) for sig in _SIGNATURES)


def sniff(path: Path) -> str | None:
    """Return None when ``path`` looks like an image file, else a one-line reason."""
    try:
        # Only regular files are opened: opening a FIFO would block until something writes to it.
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "not a regular file (a FIFO, socket or device)"
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return "broken symbolic link or file vanished"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not head:
        return "empty file (0 bytes)"
    if not looks_like_image(head):
        return "not an image (content is not a known image format)"
    return None


def iter_files(root: Path, recursive: bool = True) -> Iterator[Path]:
    """Every non-directory entry below ``root``, sorted, following directory links once (no loops)."""
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path) -> Iterator[Path]:
        try:
            stat = folder.stat()
        except OSError:
            return
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:  # symlink loop (ELOOP) and the like: report as a file that cannot be read
                is_dir = False
            if is_dir:
                if recursive:
                    yield from walk(path)
            else:
                yield path

    yield from walk(root)


def discover(paths: Iterable[str | os.PathLike], recursive: bool = True, by_content: bool = True) -> Iterator[Candidate]:
    """Expand files and folders into candidates; files that are not images come with a reason.

    Inside folders, files whose content is not an image are reported only when their extension claims to be
    an image (a folder's ``notes.txt`` is not an error); files named explicitly are always reported.
    """
    for raw in paths:
        root = Path(os.fsdecode(raw))
        if root.is_dir():
            for path in iter_files(root, recursive):
                reason = sniff(path) if by_content else None
                if reason is None:
                    yield Candidate(path)
                elif path.suffix.lower() in IMAGE_EXTENSIONS or path.is_symlink():
                    yield Candidate(path, reason)
        elif root.exists() or root.is_symlink():
            yield Candidate(root, sniff(root))
        else:
            yield Candidate(root, "no such file or folder")
