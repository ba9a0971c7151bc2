"""``emotion-bench``: benchmark every format of a trained model (``emotion-bench RUN``), and the subcommands.

Every command is a module with ``add_arguments``, ``run``, ``markdown`` and ``summary``; its document gets the
fields every result has here (``command``, ``started``, ``seconds``, ``hardware`` with the ``hints`` its ``run``
returned on how it measured), its report goes through one writer (Markdown and JSON side by side) and it prints a
summary, or the JSON document with ``--json``.
Exit status: 0 done; 1 the format benchmark's parity gate broke (the report is written all the same); 2 bad
input (missing run, export or data, data without labels, unknown format): one line on stderr, nothing
measured; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from pathlib import Path

from emotion.runtime.console import EXIT_OK, guard
from emotion.train.data import DataError
from emotion.train.model_io import ModelFileError

from .hardware import hardware_report

PROG = "emotion-bench"
EXIT_GATE = 1
SUBCOMMANDS = {"infer-speed": "infer_speed", "serve-load": "serve_load", "train-input": "train_input",
               "model-api": "model_api", "ray-speed": "ray_speed"}


def parser_for(name: str | None) -> argparse.ArgumentParser:
    """The parser of a subcommand, or of the format benchmark (``name`` None)."""
    module = importlib.import_module(f".{SUBCOMMANDS[name] if name else 'suite'}", __package__)
    if name:
        parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=module.__doc__.split("\n\n")[0])
    else:
        parser = argparse.ArgumentParser(
            prog=PROG, description="Benchmark a trained emotion model in every format (Keras, ONNX Runtime, "
            "OpenVINO FP32/BF16/FP16/INT8): accuracy and parity against Keras, latency, throughput, end-to-end "
            "folder speed, cold start and memory, against OpenVINO's benchmark_app as the ceiling. Other "
            f"measurements: `{PROG} {{{','.join(SUBCOMMANDS)}}} --help`.",
            epilog="Exit status: 0 parity kept, 1 parity broke (report written), 2 bad input, 130 interrupted.")
    module.add_arguments(parser)
    if name:
        parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (FILE.json beside it)")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout instead of the summary")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    parser.set_defaults(module=module)
    return parser


def _stem(name: str | None, args: argparse.Namespace) -> Path | None:
    """Where the report goes, without its .md or .json: ``--out`` (the format benchmark: ``--out/--name``), or
    nowhere."""
    if name:
        out = Path(args.out) if args.out else None
        return out.with_suffix("") if out and out.suffix in (".md", ".json") else out
    run = Path(args.run).expanduser()
    return Path(args.out or (run if run.is_dir() else run.parent) / "benchmark") / args.name


@guard(DataError, ModelFileError, prog=PROG)
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = parser_for(name).parse_args(argv[1:] if name else argv)
    quiet = args.quiet or args.json
    started = time.time()
    measured = args.module.run(args, lambda text: quiet or print(f"{PROG}: {text}", file=sys.stderr, flush=True))
    hardware = hardware_report(measured.pop("hints", None))
    document = {"command": shlex.join([PROG, *argv]),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                "seconds": round(time.time() - started, 1), **measured, "hardware": hardware}
    stem = _stem(name, args)
    if stem:
        from .plot import latency_auc_plot
        from .report import write

        paths = write(document, stem, args.module.markdown, None if name else latency_auc_plot)
        print(f"{PROG}: wrote {', '.join(map(os.fspath, paths))}", file=sys.stderr)
    if args.json:
        from .report import to_json

        sys.stdout.write(to_json(document))
    else:
        print(args.module.summary(document))
    return EXIT_GATE if document.get("gate", {}).get("passed") is False else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
