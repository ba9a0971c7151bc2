"""Finding image files: recognised by content (a PNG named ``.jpg`` is found, a text file named ``.jpg`` reported),
robust to broken links, loops, odd names and very deep trees, in a stable, sorted, depth-first order."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Magic numbers of the formats Pillow decodes that people keep photos in: JPEG, PNG, GIF, TIFF, JP2; BMP, WebP
# and PNM have short or shared ones, checked further by :func:`looks_like_image`.
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*",
              b"\x00\x00\x00\x0cjP  ")
BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)  # the DIB headers that follow a BMP's "BM" and file header
IMAGE_EXTENSIONS = set(".jpg .jpeg .jpe .png .gif .bmp .tif .tiff .webp .jp2 .ppm .pgm .pbm".split())


@dataclass(frozen=True)
class Candidate:
    """A file to classify, or the reason it cannot be (``error`` set); ``path`` as found."""

    path: Path
    error: str | None = None


def sniff(path: Path) -> str | None:
    """None when ``path`` looks like an image file, else a one-line reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: a FIFO must not wait for a writer
    except FileNotFoundError:
        return "broken symbolic link or file vanished"
    except OSError as exc:
        return "permission denied" if isinstance(exc, PermissionError) else f"cannot read: {exc.strerror or exc}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not a regular file (a FIFO, socket or device)"
        head = os.read(fd, 32)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if not head:
        return "empty file (0 bytes)"
    return None if looks_like_image(head) else "not an image (content is not a known image format)"


def looks_like_image(head: bytes) -> bool:
    """Whether a file's first bytes are those of an image format (a WAV is RIFF too, a text may start "BM")."""
    if head.startswith(b"RIFF"):
        return head[8:12] == b"WEBP"
    if head.startswith(b"BM"):
        return int.from_bytes(head[14:18], "little") in BMP_HEADER_SIZES
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
        return head[2:3].isspace()
    return head.startswith(SIGNATURES)


def walk(root: Path, recursive: bool = True) -> Iterator[Candidate]:
    """Every non-hidden file below ``root``, sorted, depth first, without recursion (any depth).

    Folder links are followed once (no loops); a folder that cannot be listed is a candidate with its reason.
    """
    seen: set[tuple[int, int]] = set()
    stack: list[Iterator[os.DirEntry]] = []
    folder: Path | None = root  # a folder to enter next
    while folder is not None or stack:
        if folder is not None:
            try:
                info = folder.stat()
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    stack.append(iter(sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))))
            except OSError as exc:
                yield Candidate(folder, f"cannot list folder: {exc.strerror or exc}")
            folder = None
        elif (entry := next(stack[-1], None)) is None:
            stack.pop()
        elif not entry.name.startswith("."):
            try:
                is_dir = entry.is_dir()
            except OSError:  # a symlink loop (ELOOP) and the like: reported when read, as a file
                is_dir = False
            if not is_dir:
                yield Candidate(Path(entry.path))
            elif recursive:
                folder = Path(entry.path)


def discover(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Candidate]:
    """Expand files and folders into candidates; what is not an image comes with a reason.

    In folders, a file whose content is not an image is reported only when its extension or a symbolic link
    claims it is one (a folder's ``notes.txt`` is not an error); files named explicitly always are.
    """
    for raw in paths:
        root = Path(os.fsdecode(raw))
        if root.is_dir():
            for found in walk(root, recursive):
                reason = found.error or sniff(found.path)
                if reason is None:
                    yield found
                elif found.error or found.path.suffix.lower() in IMAGE_EXTENSIONS or found.path.is_symlink():
                    yield Candidate(found.path, reason)
        else:
            yield Candidate(root, sniff(root) if root.exists() or root.is_symlink() else "no such file or folder")
