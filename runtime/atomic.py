"""Atomic output files: absent or complete, never half-written (Ctrl-C and SIGTERM included)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator


def sibling(path: Path, suffix: str) -> Path:
    """A hidden, unused name beside ``path`` for its temporary copy (``.NAME.RANDOM.SUFFIX``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path, ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the permissions open() gives, umask applied
    # Text mode writes file names that are not valid UTF-8 back as the bytes they were.
    text = {} if "b" in mode else {"encoding": encoding, "errors": "surrogateescape"}
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
