"""Shared command-line conventions: one-line errors on stderr, exit status 2 for usage/model/data errors."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Callable, NoReturn

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def fail(message: str, prog: str | None = None) -> NoReturn:
    print(f"{prog or _prog()}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def guard(*expected: type[BaseException]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Turn the ``expected`` exceptions (and missing files) into one-line errors with exit status 2."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> int:
            safe_stdio()
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{_prog()}: interrupted; nothing half-written was left behind", file=sys.stderr)
                raise SystemExit(EXIT_INTERRUPTED) from None
            except (UsageError, FileExistsError, FileNotFoundError, *expected) as exc:
                fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

        return run

    return wrap


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def safe_stdio() -> None:
    """Never crash on printing a file name that is not valid UTF-8: show its odd bytes escaped."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def _prog() -> str:
    import os

    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "emotion"
