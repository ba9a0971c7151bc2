"""``emotion-infer``: classify image files and folders with an exported model.

A table (or ``--json``) goes to stdout; a progress bar, each unreadable file's reason and a summary to stderr;
``--output`` is written atomically. Exit status: 0 every image classified; 1 some files could not be (the rest
still classified and written); 2 usage or model error; 130 interrupted (143 on SIGTERM), with no partial file.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import json
import os
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any, Callable, Iterable

from PIL import Image
from tqdm import tqdm

from .atomic import atomic_open
from .classifier import Prediction
from .console import (EXIT_OK, EXIT_PARTIAL, UsageError, add_model_options, display_path, guard, load_classifier,
                      model_line, positive_int)
from .files import discover

OUTPUT_KINDS = (".csv", ".jsonl", ".json", ".parquet")
COLUMNS = ("path", "label", "probability", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-infer", description="Classify images as Positive or Negative with an exported model.",
        epilog="Exit status: 0 all classified, 1 some files failed (the rest are still reported), 2 usage or model "
               "error, 130 interrupted (143 on SIGTERM).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files and folders; folders are searched recursively, images recognised by content")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="also write the results to FILE.csv, FILE.jsonl, FILE.json or FILE.parquet (complete or "
                             "not at all)")
    parser.add_argument("--json", action="store_true", help="print JSON (model, results, summary) instead of the table")
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("-q", "--quiet", action="store_true", help="no table, no summary (errors still shown)")
    add_model_options(parser, mode="throughput")
    ray = parser.add_argument_group("Ray cluster (pip install 'emotion-edge[ray]')")
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="classify with Ray Data on the cluster at ADDRESS: HOST:PORT, auto (the one running here) or "
                          "local (the default: a new local instance)")
    ray.add_argument("--actors", type=positive_int, metavar="N",
                     help="inference actors (default: half the CPUs' worth)")
    ray.add_argument("--actor-threads", type=positive_int, metavar="N",
                     help="inference threads per actor (default: half the smallest node's CPUs)")
    return parser


@guard(prog="emotion-infer")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output(args.output)
    # Oversized images are refused by the preprocessing; Pillow's own warning about them would only be noise.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    with load_classifier(args) as classifier:
        candidates = discover(args.paths, recursive=not args.no_recursive)
        if args.ray is None:
            return report(classifier.predict_many(candidates), classifier.describe(), args)
        from .cluster import RayClassifier

        with RayClassifier.connect(args.ray, classifier, args.actors, args.actor_threads) as cluster:
            return report(cluster.predict_many(candidates), cluster.describe(), args)


def check_output(output: str | None) -> None:
    """Refuse an ``--output`` that could only fail once every image was classified."""
    kind = Path(output or "").suffix.lower()
    if output and kind not in OUTPUT_KINDS:
        raise UsageError(f"--output must end in .csv, .jsonl, .json or .parquet, got {output!r}")
    if output and Path(output).is_dir():
        raise UsageError(f"--output {output} is a folder; name a file ending in .csv, .jsonl, .json or .parquet")
    if kind == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError("--output .parquet needs pyarrow: pip install 'emotion-edge[ray]'")


def report(predictions: Iterable[Prediction], model: dict[str, Any], args: argparse.Namespace) -> int:
    """Show and write ``predictions`` as ``emotion-infer`` does; the exit status (1 when some files failed)."""
    kind = Path(args.output or "").suffix.lower()
    try:
        with atomic_open(args.output, "wb" if kind == ".parquet" else "w") if args.output else nullcontext() as handle:
            writers = [] if handle is None else [
                ParquetWriter(handle) if kind == ".parquet" else Writer(handle.write, kind, model)]
            if args.json:
                utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
                writers.append(Writer(lambda text: _stdout(text, args), ".json", model, ascii_only=not utf8))
            return _report(predictions, model, args, writers)
    except BrokenPipeError:  # `emotion-infer photos/ | head` without --output: stop quietly
        return EXIT_PARTIAL
    except OSError as exc:  # the output cannot be written (rights, disk full, ...)
        raise UsageError(f"cannot write {args.output or 'the results'}: {exc.strerror or exc}") from None


def _report(predictions: Iterable[Prediction], model: dict[str, Any], args: argparse.Namespace,
            writers: list[Writer | ParquetWriter]) -> int:
    bar = tqdm(predictions, "classifying", unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=not sys.stderr.isatty())

    def say(stream: IO, text: str) -> None:  # on a terminal, through tqdm: the progress bar stays whole
        if not bar.disable and stream.isatty():
            tqdm.write(text, file=stream)
        else:
            _stdout(text + "\n", args) if stream is sys.stdout else print(text, file=stream)

    if not args.quiet:
        say(sys.stderr, f"emotion-infer: {model_line(model)}" + (" on Ray ({address}: {nodes} nodes, {cpus:g} CPUs, "
            "{actors} actors of {actor_threads} threads)".format(**model["ray"]) if "ray" in model else ""))
    table, width = not (args.json or args.quiet), max(len(label) for label in model["labels"] + ["label"])
    if table:
        say(sys.stdout, f"{'label':<{width}}  probability  path")
    counts, errors, started = dict.fromkeys(model["labels"], 0), 0, time.perf_counter()
    for prediction in bar:
        if prediction.ok:
            counts[prediction.label] += 1
            if table:
                say(sys.stdout,
                    f"{prediction.label:<{width}}  {prediction.probability:11.4f}  {display_path(prediction.path)}")
        else:
            errors += 1
            say(sys.stderr, f"emotion-infer: {display_path(prediction.path)}: {prediction.error}")
        for writer in writers:
            writer.add(prediction)
    elapsed, classified = time.perf_counter() - started, sum(counts.values())
    summary = {"files": classified + errors, "classified": classified, "errors": errors, "labels": counts,
               "seconds": round(elapsed, 3), "images_per_second": round(classified / elapsed, 1)}
    for writer in writers:
        writer.finish(summary)
    if not args.quiet:
        line = (f"emotion-infer: {classified} of {classified + errors} files classified in {elapsed:.2f} s "
                f"({summary['images_per_second']} images/s): {', '.join(f'{k} {v}' for k, v in counts.items())}")
        line += f"; {errors} error{'s' * (errors != 1)}" if errors else ""
        say(sys.stderr, line + (f"; results in {display_path(args.output)}" if args.output else ""))
    if classified + errors == 0:
        say(sys.stderr, f"emotion-infer: warning: no image files found in {', '.join(map(display_path, args.paths))}")
    return EXIT_PARTIAL if errors else EXIT_OK


def _stdout(text: str, args: argparse.Namespace) -> None:
    """Write to stdout. When its reader goes away (``| head``), the rest goes to /dev/null: with ``--output`` the
    run goes on, since the file is the result; without, the BrokenPipeError stops it."""
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if not args.output:
            raise


class Writer:
    """Results as CSV, JSON Lines or one JSON document (``{"model", "results": [...], "summary"}``), as they come.

    File names that are not UTF-8 keep their exact bytes in CSV (as ``ls`` prints them) and become ``\\udcXX``
    escapes in JSON (``os.fsencode`` of the decoded string gives the bytes back).
    """

    def __init__(self, write: Callable[[str], Any], kind: str, model: dict[str, Any], ascii_only: bool = False) -> None:
        self.write, self.kind, self.ascii_only, self.count = write, kind, ascii_only, 0
        self.rows = csv.writer(self, lineterminator="\n")  # it hands each row to self.write
        if kind == ".csv":
            self.rows.writerow(COLUMNS)
        elif kind == ".json":
            write('{"model": ' + self._json(model) + ', "results": [')

    def add(self, prediction: Prediction) -> None:
        record = prediction.to_dict()
        if self.kind == ".csv":
            self.rows.writerow([record[c] for c in COLUMNS])  # None as an empty field
        elif self.kind == ".jsonl":
            self.write(self._json(record) + "\n")
        else:
            self.write((",\n  " if self.count else "\n  ") + self._json(record))
        self.count += 1

    def finish(self, summary: dict[str, Any]) -> None:
        if self.kind == ".json":
            self.write("\n" * bool(self.count) + '], "summary": ' + self._json(summary) + "}\n")

    def _json(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=self.ascii_only).encode("utf-8", "backslashreplace").decode("utf-8")


class ParquetWriter:
    """Results as a Parquet table of the CSV's columns, a row group at a time (pyarrow, from the ``ray`` extra).

    Parquet text is UTF-8: the bytes of a file name that are not UTF-8 show as ``\\xe9`` escapes, as on the terminal.
    """

    ROWS = 65536  # per row group

    def __init__(self, handle: IO[bytes]) -> None:
        import pyarrow.parquet

        schema = pyarrow.schema([(c, pyarrow.float64() if c == "probability" else pyarrow.string()) for c in COLUMNS])
        self.writer, self.rows = pyarrow.parquet.ParquetWriter(handle, schema), []
        self.table = functools.partial(pyarrow.Table.from_pylist, schema=schema)

    def add(self, prediction: Prediction) -> None:
        self.rows.append({**prediction.to_dict(), "path": display_path(prediction.path)})
        if len(self.rows) == self.ROWS:
            self._flush()

    def finish(self, summary: dict[str, Any]) -> None:
        self._flush()
        self.writer.close()

    def _flush(self) -> None:
        self.writer.write_table(self.table(self.rows))
        self.rows = []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
