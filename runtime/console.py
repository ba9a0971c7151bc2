"""The command-line conventions every ``emotion-*`` command shares: one error path and one set of model options.

Errors are one line on stderr (``PROG: error: ...``), exit status 2. Ctrl-C exits 130 and SIGTERM 143 after the
same clean-up (atomic outputs removed, models closed): both arrive as :class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # argparse is imported by the commands, not by the runtime's library path
    import argparse

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
# The extra of pyproject.toml that installs each optional library: a command missing one names the pip command.
EXTRAS = {"tensorflow": "train", "keras": "train", "sklearn": "train", "matplotlib": "train", "tf2onnx": "export",
          "onnx": "export", "onnxruntime": "export", "nncf": "export", "fastapi": "serve", "uvicorn": "serve",
          "multipart": "serve", "ray": "ray", "pyarrow": "ray", "model_api": "dev", "cv2": "dev"}
Main = Callable[..., int]  # a command's main: arguments in, exit status out


class UsageError(ValueError):
    """A problem with what the user asked for; printed as one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, systemd, docker stop), raised in the main thread as Ctrl-C is."""


def one_line(exc: BaseException) -> str:
    """An exception as one informative line (OpenVINO's multi-line 'Exception from src/...' reduced)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from ", "Check '", "[ "))]
    return (useful or lines or [type(exc).__name__])[-1].rstrip(".")


def display_path(path: Any) -> str:
    """A path for people: bytes that are not UTF-8 shown as ``\\xe9`` escapes (never an encoding error)."""
    return "-" if path is None else os.fsencode(path).decode("utf-8", "backslashreplace")


def model_line(model: dict[str, Any]) -> str:
    """How every command announces its model, from :meth:`EmotionClassifier.describe`."""
    return ("model {name} v{version} ({model_precision}) from {where}: {backend} {device} {precision}, {mode}, "
            "{workers} workers").format(where=display_path(model["path"]), **model)


def attempt(step: Callable[[Any], Any], value: Any) -> tuple[Any, str | None]:
    """``(step(value), None)``, or ``(None, why it failed)``: one item's failure never stops a stream of them."""
    try:
        return step(value), None
    except MemoryError:
        return None, "out of memory while decoding"
    except Exception as exc:
        return None, one_line(exc)


def guard(*expected: type[BaseException], prog: str | None = None) -> Callable[[Main], Main]:
    """Run a command's ``main`` on the shared error path.

    ``expected`` are the exception types that mean bad input for this command, besides :class:`UsageError`, the
    runtime's model and image errors, file-system errors (a missing file, an existing folder, a read-only disk)
    and an optional library that is not installed (:data:`EXTRAS`); ``prog`` names the command (default: the
    program file).
    """
    from .metadata import ModelLoadError
    from .preprocess import ImageDecodeError

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> int:
            name = prog or os.path.basename(sys.argv[0] or "emotion")
            for stream in (sys.stdout, sys.stderr):  # print any file name, valid UTF-8 or not
                if hasattr(stream, "reconfigure"):
                    stream.reconfigure(errors="backslashreplace")
            previous = signal.signal(signal.SIGTERM, _terminate)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt as exc:
                print(f"{name}: interrupted; nothing half-written was left behind", file=sys.stderr)
                return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
            except ModuleNotFoundError as exc:
                library = (exc.name or "").split(".")[0]
                if library not in EXTRAS:  # not an optional library: a bug, with its traceback
                    raise
                print(f"{name}: error: {library} is not installed: pip install 'emotion-edge[{EXTRAS[library]}]'",
                      file=sys.stderr, flush=True)
                return EXIT_USAGE
            except (UsageError, ModelLoadError, ImageDecodeError, OSError, *expected) as exc:
                print(f"{name}: error: {one_line(exc)}", file=sys.stderr, flush=True)
                return EXIT_USAGE
            finally:
                signal.signal(signal.SIGTERM, previous)

        return run

    return wrap


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them: a KeyboardInterrupt raised while a native
    extension initialises can crash the interpreter instead (onnx's segfaults), so import such libraries here."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives them
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])


def _positive(kind: Callable[[str], Any], what: str, zero: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not (value >= 0 if zero else value > 0) or value == float("inf"):
            import argparse  # the error path only: the library path of the runtime does not import argparse

            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


# argparse types: a whole number >= 1, a finite number > 0, a finite number >= 0
positive_int = _positive(int, "a positive integer")
positive_float = _positive(float, "a positive number")
non_negative_float = _positive(float, "a non-negative number", zero=True)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_model_options(parser: argparse.ArgumentParser, mode: str = "throughput") -> None:
    """The options that say which model to load and how to run it, the same for every command."""
    from .backends import BACKENDS, MODES
    from .locate import VARIANTS

    group = parser.add_argument_group("model")
    group.add_argument("-m", "--model", help="model: .xml, .onnx, a version, repository or export folder (default: "
                                             "$EMOTION_MODEL, else the newest export under ./exports/)")
    group.add_argument("--variant", choices=VARIANTS, help="which model of an export folder (default: fp32)")
    group.add_argument("--backend", choices=BACKENDS,
                       help="inference engine (default: from the model file: .onnx onnxruntime, .xml openvino)")
    group.add_argument("--device", default="CPU", help="OpenVINO device: CPU (default), GPU, AUTO, ...")
    group.add_argument("--precision", choices=("f32", "bf16", "f16"),
                       help="inference precision: f32 (default, parity with training); bf16 is faster on CPUs with AMX")
    group.add_argument("--mode", choices=MODES, default=mode, help=f"OpenVINO performance hint (default: {mode})")
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help="threads that decode and infer (default: the CPU count + 1, at least the optimal requests)")
    group.add_argument("--requests", type=positive_int, default=0, metavar="N",
                       help="inferences worth running at once (default: OpenVINO's optimal number for the mode)")
    cache = group.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", metavar="DIR", help="OpenVINO compiled-model cache (default: "
                                                          "$EMOTION_CACHE_DIR or ~/.cache/emotion-edge/openvino)")
    cache.add_argument("--no-cache", action="store_true", help="do not use the compiled-model cache")


def load_classifier(args: argparse.Namespace) -> Any:
    """The :class:`~emotion.runtime.classifier.EmotionClassifier` that :func:`add_model_options`' arguments name."""
    from .classifier import EmotionClassifier
    from .locate import default_model

    return EmotionClassifier.load(
        args.model or default_model(), device=args.device, backend=args.backend, precision=args.precision,
        mode=args.mode, cache_dir=None if args.no_cache else (args.cache_dir or True), variant=args.variant,
        num_requests=args.requests, workers=args.workers)
