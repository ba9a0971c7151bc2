"""``emotion-export``: the command line of :func:`emotion.export.pipeline.export_model` (exit status: epilog)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from emotion.runtime.console import guard
from emotion.train.data import DataError

from .common import DEFAULT_CALIBRATION_SIZE, DEFAULT_OPSET, PRECISIONS, ExportError

PROG = "emotion-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a trained emotion model (run folder or .keras file) to ONNX and OpenVINO IR "
        "(FP32, FP16, INT8) as an OpenVINO Model Server repository, and verify every variant against Keras.",
        epilog="Layout of DIR: <name>/<version>/model.xml|bin (FP32), <name>-fp16/..., <name>-int8/..., "
        "<name>.onnx, export_report.json. Exit status: 0 ok, 1 FP32 parity failed (files written), 2 error, "
        "130 interrupted (143 on SIGTERM).",
    )
    parser.add_argument("source", metavar="RUN_OR_MODEL", help="training run folder, or a .keras model file")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create (refused if it exists)")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        metavar="P", help="variants to write: fp32 fp16 int8 (default: all three)")
    parser.add_argument("--calibration", metavar="DATA", help="folder of images for INT8 calibration (default: the "
                        "run's training split)")
    parser.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE, metavar="N",
                        help=f"calibration images to use, a deterministic sample (default {DEFAULT_CALIBRATION_SIZE})")
    parser.add_argument("--data", metavar="DATA", help="labelled folder (DATA/Negative, DATA/Positive) to verify "
                        "on (default: the run's validation split)")
    parser.add_argument("--max-auc-drop", type=float, metavar="X", help="quantize INT8 with accuracy control: at "
                        "most this absolute ROC AUC drop on the validation images")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset, 17 or newer (default {DEFAULT_OPSET})")
    parser.add_argument("--name", help="model name in the repository (default: the model's, 'emotion')")
    parser.add_argument("--version", help="model version folder, a positive integer (default: the model's, 1)")
    parser.add_argument("--force", action="store_true", help="replace an existing DIR (only once the new one is complete)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


@guard(ExportError, DataError, prog=PROG)  # DataError: an unreadable run.json
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up chatter is noise for a CLI user; keep any level the user chose.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from .pipeline import export_model  # checks every argument before TensorFlow is imported

    # Libraries print progress on stdout (NNCF's bars); stdout is for the table or the --json report only.
    with open(os.devnull, "w") if args.quiet else contextlib.nullcontext(sys.stderr) as sink, \
            contextlib.redirect_stdout(sink):
        report = export_model(args.source, args.out, args.precision, calibration=args.calibration, data=args.data,
                              max_auc_drop=args.max_auc_drop, opset=args.opset, name=args.name,
                              version=args.version, force=args.force, calibration_size=args.calibration_size,
                              progress=not args.quiet)
    sys.stdout.write(report.to_json() if args.json else report.table() + "\n")
    if not report.ok:
        print(f"{PROG}: FP32 parity failed: {'; '.join(report.verification.problems)}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
