"""Atomic run folders and reports: absent or complete, never half-written (Ctrl-C and SIGTERM included)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from emotion.runtime.atomic import atomic_open, sibling


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def check_output_folder(out: str | os.PathLike, *inputs: str | os.PathLike | None,
                        own: tuple[str, str] | None = None) -> None:
    """Refuse, before any slow work, an output folder that cannot be made or that is, or holds, one of a command's
    inputs (replacing it would delete them). ``None`` and missing inputs are skipped.

    Args:
        own: for a command that always replaces ``out``: (the file its output folders hold, what they are called);
            an existing ``out`` must then be empty or hold that file.

    Raises:
        OSError: with the reason and the fix.
    """
    out = Path(out).expanduser().resolve()
    for item in filter(None, inputs):
        path = Path(item).expanduser()
        if path.exists() and path.resolve().is_relative_to(out):
            raise FileExistsError(f"--out {out} contains {item}; replacing it would delete that: choose another folder")
    if own and out.exists() and not (out / own[0]).is_file() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"--out {out} is not {own[1]} (no {own[0]} in it); choose another folder")
    parent = next(folder for folder in out.parents if folder.exists())
    if not parent.is_dir():
        raise NotADirectoryError(f"--out {out} cannot be made: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out} cannot be made: {parent} is not writable")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``path`` when the block succeeds.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false. With ``force`` it is replaced only once the new
            folder is complete, so an interrupted run leaves the old one intact.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; choose another folder or pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path, ".partial")
    tmp.mkdir()  # the permissions mkdir gives, umask applied
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
