"""``emotion-infer``: classify image files and folders with an exported model.

Exit status: 0 every image classified; 1 some files could not be (each reported with its reason, the rest
still classified and written); 2 usage or model error (one line, no traceback); 130 interrupted (no
partial ``--output`` file is left behind).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from .atomic import atomic_open
from .backends import BACKENDS, MODES, ModelLoadError
from .classifier import EmotionClassifier, Prediction
from .console import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, positive_int
from .files import discover
from .locate import MODEL_ENV, VARIANTS, default_model

PROG = "emotion-infer"
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}


def display_path(path: Any) -> str:
    """A path for people: bytes that are not UTF-8 shown as ``\\xe9`` escapes (never an encoding error)."""
    if path is None:
        return "-"
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _probability_text(probability: float) -> str:
    return str(np.float32(probability))  # the shortest text that gives back the model's float32


def _record(prediction: Prediction) -> dict[str, Any]:
    record = prediction.to_dict()
    if prediction.probability is not None:
        record["probability"] = float(_probability_text(prediction.probability))
    return record


def _json_text(value: Any, ascii_only: bool = False) -> str:
    """JSON; file names that are not UTF-8 (lone surrogates after os.fsdecode) become ``\\udcXX`` escapes."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text if ascii_only else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _isatty(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _utf8(stream: IO) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") in ("utf8", "utf8sig")


def _safe(stream: IO, text: str) -> str:
    """``text`` made encodable for ``stream`` (an ASCII terminal included)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")


class _Console:
    """stdout/stderr lines that do not tear the progress bar (which is drawn only on a terminal)."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def _write(self, stream: IO, text: str) -> None:
        text = _safe(stream, text)
        if not self.bar.disable and _isatty(stream):
            self.bar.write(text, file=stream)
        else:
            stream.write(text + "\n")

    def out(self, text: str) -> None:
        self._write(sys.stdout, text)

    def err(self, text: str) -> None:
        self._write(sys.stderr, text)


class _JsonDocument:
    """``{"model": ..., "results": [...], "summary": ...}`` written as results arrive (bounded memory)."""

    def __init__(self, write, model: dict[str, Any], ascii_only: bool) -> None:
        self._write = write
        self._ascii = ascii_only
        self._first = True
        write('{"model": ' + _json_text(model, ascii_only) + ', "results": [')

    def record(self, prediction: Prediction) -> None:
        self._write(("\n  " if self._first else ",\n  ") + _json_text(_record(prediction), self._ascii))
        self._first = False

    def finish(self, summary: dict[str, Any]) -> None:
        self._write(("" if self._first else "\n") + '], "summary": ' + _json_text(summary, self._ascii) + "}\n")


class _OutputFile:
    """``--output``: CSV, JSON Lines or JSON, written to a temporary file renamed into place at the end.

    File names that are not UTF-8 are kept as their exact bytes in CSV (like ``ls`` prints them) and as
    ``\\udcXX`` escapes in JSON (``os.fsencode`` of the decoded string gives the bytes back).
    """

    def __init__(self, handle: IO[bytes], kind: str, model: dict[str, Any]) -> None:
        self._handle = handle
        self._kind = kind
        self._json: _JsonDocument | None = None
        if kind == "csv":
            self._row(["path", "label", "probability", "error"])
        elif kind == "json":
            self._json = _JsonDocument(self._text, model, ascii_only=False)

    def _text(self, text: str) -> None:
        self._handle.write(text.encode("utf-8", "surrogateescape"))

    def _row(self, values: list[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._text(buffer.getvalue())

    def write(self, prediction: Prediction) -> None:
        if self._kind == "csv":
            self._row(
                [
                    os.fsdecode(prediction.path) if prediction.path is not None else "",
                    prediction.label or "",
                    _probability_text(prediction.probability) if prediction.probability is not None else "",
                    prediction.error or "",
                ]
            )
        elif self._kind == "jsonl":
            self._text(_json_text(_record(prediction)) + "\n")
        else:
            assert self._json is not None
            self._json.record(prediction)

    def finish(self, summary: dict[str, Any]) -> None:
        if self._json is not None:
            self._json.finish(summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Classify images as Positive or Negative with an exported emotion-edge model.",
        epilog=(
            "Exit status: 0 all classified, 1 some files failed (the rest are still reported), "
            "2 usage or model error, 130 interrupted."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="image files and folders; folders are searched recursively, images recognised by content",
    )
    parser.add_argument(
        "-m", "--model",
        help=f"model: .xml, .onnx, a version/repository/export folder (default: ${MODEL_ENV}, "
        "else the most recent export under ./exports/)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE",
        help="also write the results to FILE.csv, FILE.jsonl or FILE.json (complete or not at all)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (results and summary) instead of the table")
    parser.add_argument("--device", default="CPU", help="OpenVINO device: CPU (default), GPU, AUTO, ...")
    parser.add_argument(
        "--precision", choices=("f32", "bf16", "f16"), default=None,
        help="inference precision; default f32 (exact parity with training); bf16 is faster on CPUs with AMX",
    )
    parser.add_argument(
        "--mode", choices=MODES, default="throughput",
        help="OpenVINO performance hint (default: throughput, for many images)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="openvino", help="inference engine (default: openvino)")
    parser.add_argument(
        "--variant", choices=VARIANTS, default=None,
        help="which model of an export folder: fp32 (default), fp16 or int8",
    )
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument(
        "--workers", type=positive_int, default=None, metavar="N",
        help="threads decoding and resizing images (default: the CPU count)",
    )
    parser.add_argument(
        "--requests", type=positive_int, default=0, metavar="N",
        help="inferences kept in flight (default: OpenVINO's optimal number for the mode)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir", metavar="DIR",
        help="OpenVINO compiled-model cache (default: $EMOTION_CACHE_DIR or ~/.cache/emotion-edge/openvino)",
    )
    cache.add_argument("--no-cache", action="store_true", help="do not use the compiled-model cache")
    parser.add_argument("-q", "--quiet", action="store_true", help="no table, no summary (errors still shown)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    output_kind = None
    if args.output:
        output_kind = OUTPUT_FORMATS.get(Path(args.output).suffix.lower())
        if output_kind is None:
            parser.error(f"--output must end in .csv, .jsonl or .json, got {args.output!r}")
    # Oversized images are refused by preprocessing; Pillow's own warning about them would only be noise.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        model = args.model or default_model()
        classifier = EmotionClassifier.load(
            model,
            device=args.device,
            backend=args.backend,
            precision=args.precision,
            mode=args.mode,
            cache_dir=None if args.no_cache else (args.cache_dir or True),
            variant=args.variant,
            num_requests=args.requests,
        )
    except ModelLoadError as exc:
        _error(f"{PROG}: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    try:
        return _run(args, classifier, output_kind)
    except KeyboardInterrupt:
        _error(f"{PROG}: interrupted" + ("; no output file written" if args.output else ""))
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `emotion-infer photos/ | head`: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PARTIAL
    except OSError as exc:  # the output file cannot be written (folder missing rights, disk full, ...)
        _error(f"{PROG}: error: cannot write {display_path(args.output)}: {exc.strerror or exc}")
        return EXIT_USAGE
    finally:
        classifier.close()


def _error(text: str) -> None:
    sys.stderr.write(_safe(sys.stderr, text) + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _output(path: str | None, kind: str | None, model: dict[str, Any]) -> Iterator[_OutputFile | None]:
    if path is None or kind is None:
        yield None
        return
    with atomic_open(path, "wb") as handle:
        yield _OutputFile(handle, kind, model)


def _run(args: argparse.Namespace, classifier: EmotionClassifier, output_kind: str | None) -> int:
    labels = classifier.labels
    model = classifier.describe()
    bar = tqdm(
        desc="classifying", unit="img", file=sys.stderr, disable=not _isatty(sys.stderr), leave=False,
        dynamic_ncols=True,
    )
    console = _Console(bar)
    if not args.quiet:
        console.err(
            f"{PROG}: model {model['name']} v{model['version']} ({model['model_precision']}) from "
            f"{display_path(classifier.path)}: {model['backend']} {model['device']} {model['precision']}, "
            f"{model['mode']}"
        )
    table = not (args.json or args.quiet)
    width = max(len(label) for label in labels + ("label",))
    document = (
        _JsonDocument(sys.stdout.write, model, ascii_only=not _utf8(sys.stdout)) if args.json else None
    )
    counts = dict.fromkeys(labels, 0)
    errors = total = 0
    start = time.perf_counter()
    with _output(args.output, output_kind, model) as sink:
        if table:
            console.out(f"{'label':<{width}}  probability  path")
        candidates = discover(args.paths, recursive=not args.no_recursive)
        for prediction in classifier.predict_many(candidates, workers=args.workers):
            total += 1
            bar.update()
            if prediction.ok:
                counts[prediction.label] += 1  # type: ignore[index]
                if table:
                    console.out(
                        f"{prediction.label:<{width}}  {prediction.probability:11.4f}  {display_path(prediction.path)}"
                    )
            else:
                errors += 1
                console.err(f"{PROG}: {display_path(prediction.path)}: {prediction.error}")
            if sink is not None:
                sink.write(prediction)
            if document is not None:
                document.record(prediction)
        elapsed = time.perf_counter() - start
        classified = total - errors
        summary = {
            "files": total,
            "classified": classified,
            "errors": errors,
            "labels": counts,
            "seconds": round(elapsed, 3),
            "images_per_second": round(classified / elapsed, 1) if elapsed > 0 else None,
        }
        if sink is not None:
            sink.finish(summary)
    bar.close()
    if document is not None:
        document.finish(summary)
        sys.stdout.flush()
    if not args.quiet:
        per_label = ", ".join(f"{label} {count}" for label, count in counts.items())
        rate = f" ({summary['images_per_second']} images/s)" if summary["images_per_second"] is not None else ""
        line = f"{PROG}: {classified} of {total} files classified in {elapsed:.2f} s{rate}: {per_label}"
        if errors:
            line += f"; {errors} error{'s' if errors != 1 else ''}"
        if args.output:
            line += f"; results in {display_path(args.output)}"
        console.err(line)
    if total == 0:
        console.err(f"{PROG}: warning: no image files found in {', '.join(display_path(p) for p in args.paths)}")
    return EXIT_PARTIAL if errors else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
