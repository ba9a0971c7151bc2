"""``emotion-bench``: benchmark every format of a trained model, and the runtime's speed targets.

    emotion-bench RUN [--data DATA] [--export DIR] [--formats F ...] [--out DIR] [--name STEM] ...
    emotion-bench infer-speed EXPORT --data DATA [--files N] [--out FILE.md]
    emotion-bench serve-load [--model EXPORT] [--url URL] [--clients 1,8,64] --out FILE.md
    emotion-bench train-input DATA [--out FILE.md]
    emotion-bench model-api EXPORT DATA ... [--out FILE.md]

Every command writes its report through one writer (Markdown and JSON side by side) and prints a summary, or
the JSON document with ``--json``. Exit status: 0 done; 1 the format benchmark's parity gate broke (the report
is written all the same); 2 bad input (missing run, export or data, data without labels, unknown format): one
line on stderr, nothing measured; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType

from emotion.runtime.console import EXIT_OK, guard, positive_float, positive_int

PROG = "emotion-bench"
EXIT_GATE = 1
SUBCOMMANDS = ("infer-speed", "serve-load", "train-input", "model-api", "ray-speed")


def _limit(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def formats_parser() -> argparse.ArgumentParser:
    from emotion.export.formats import FORMATS
    from emotion.export.parity import DEFAULT_LIMITS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Benchmark a trained emotion model in every format (Keras, ONNX Runtime, OpenVINO "
        "FP32/BF16/FP16/INT8): accuracy and parity against Keras, latency, throughput, end-to-end folder speed, "
        "cold start and memory, against OpenVINO's benchmark_app as the ceiling. Other measurements: "
        f"`{PROG} {{{','.join(SUBCOMMANDS)}}} --help`.",
        epilog="Exit status: 0 parity kept, 1 parity broke (report written), 2 bad input, 130 interrupted.")
    parser.add_argument("run", metavar="RUN", help="training run folder (model.keras, split.csv, run.json), or a .keras file")
    parser.add_argument("--data", metavar="DATA", help="labelled image folder (DATA/Negative, DATA/Positive) the run's "
                        "split.csv refers to (default: the run's data_root); its validation images are used, or all "
                        "its images when split.csv does not match it")
    parser.add_argument("--export", metavar="DIR", help="export folder (emotion-export --out DIR); default: export the "
                        "run into a temporary folder")
    parser.add_argument("--formats", nargs="+", metavar="F", help=f"formats to measure (default: all): {', '.join(FORMATS)}")
    parser.add_argument("--out", metavar="DIR", help="folder for NAME.md, NAME.json, NAME.png (default: RUN/benchmark)")
    parser.add_argument("--name", default="benchmark", help="file name stem of the outputs (default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="rounds of timings; medians and min-max are reported (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=3.0, metavar="S",
                        help="duration of each latency and throughput measurement (default: %(default)s)")
    parser.add_argument("--ba-seconds", type=positive_float, metavar="S", help="benchmark_app -t (default: --seconds)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed inferences before latency timing")
    parser.add_argument("--e2e-images", type=positive_int, default=200, metavar="N",
                        help="files per end-to-end run: the validation files repeated up to N (default: %(default)s)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold-start processes")
    parser.add_argument("--no-ceiling", action="store_true", help="skip benchmark_app")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (default: CPU)")
    gate = parser.add_argument_group("parity gate (exit status 1 when a limit is broken)")
    gate.add_argument("--no-gate", action="store_true", help="report parity, never fail on it")
    fp32, auc = DEFAULT_LIMITS["fp32"], {k: DEFAULT_LIMITS[k].max_d_auc for k in ("bf16", "fp16", "int8")}
    gate.add_argument("--gate-fp32-auc", type=_limit, default=fp32.max_d_auc, metavar="X",
                      help="onnxruntime, openvino-fp32: max |dAUC| (default: %(default)g)")
    gate.add_argument("--gate-fp32-agreement", type=_limit, default=fp32.min_agreement, metavar="PCT",
                      help="onnxruntime, openvino-fp32: min label agreement %% with Keras, ties at the threshold "
                      "excepted (default: %(default)g)")
    gate.add_argument("--gate-fp32-max-dp", type=_limit, default=fp32.max_abs_dp, metavar="X",
                      help="onnxruntime, openvino-fp32: max |P - P_keras| (default: %(default)g)")
    for name, default in auc.items():
        gate.add_argument(f"--gate-{name}-auc", type=_limit, default=default, metavar="X",
                          help=f"openvino-{name}: max |dAUC| (default: %(default)g)")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout instead of the table")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    return parser


def _bench_formats(args: argparse.Namespace, command: str) -> int:
    from emotion.export.parity import Limits

    from . import plot, report
    from .suite import BenchConfig, run_bench

    limits = {} if args.no_gate else {
        "fp32": Limits(args.gate_fp32_max_dp, args.gate_fp32_agreement, args.gate_fp32_auc),
        **{name: Limits(max_d_auc=getattr(args, f"gate_{name}_auc")) for name in ("bf16", "fp16", "int8")}}
    config = BenchConfig(
        run=Path(args.run).expanduser(), data=args.data, export=args.export, formats=args.formats,
        repeats=args.repeats, seconds=args.seconds, ba_seconds=args.ba_seconds, warmup=max(0, args.warmup),
        e2e_images=args.e2e_images, cold_start=not args.no_cold_start, ceiling=not args.no_ceiling, limits=limits,
        device=args.device, command=command)
    document = run_bench(config, _progress(args.quiet or args.json))
    run = config.run if config.run.is_dir() else config.run.parent
    _finish(document, Path(args.out or run / "benchmark") / args.name, report.markdown, args.json,
            report.main_table(document) + f"\n\nparity gate {'passed' if document['gate']['passed'] else 'FAILED'}",
            plot.latency_auc_plot)
    return EXIT_OK if document["gate"]["passed"] else EXIT_GATE


def _finish(document: dict, stem: Path | None, markdown, as_json: bool, summary: str, plot=None) -> None:
    """Write the report through the one writer, then print the JSON document or the summary."""
    from .report import to_json, write

    paths = write(document, stem, markdown, plot) if stem else []
    sys.stdout.write(to_json(document) if as_json else summary + "\n")
    if paths:
        print(f"{PROG}: wrote {', '.join(map(os.fspath, paths))}", file=sys.stderr)


def _progress(quiet: bool):
    return (lambda text: None) if quiet else (lambda text: print(f"{PROG}: {text}", file=sys.stderr, flush=True))


def _subcommand(name: str) -> ModuleType:
    from . import infer_speed, model_api, ray_speed, serve_load, train_input

    return {"infer-speed": infer_speed, "serve-load": serve_load, "train-input": train_input,
            "model-api": model_api, "ray-speed": ray_speed}[name]


@guard(ValueError, prog=PROG)
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = " ".join([PROG] + [shlex.quote(a) for a in argv])
    if not argv or argv[0] not in SUBCOMMANDS:
        return _bench_formats(formats_parser().parse_args(argv), command)
    module = _subcommand(argv[0])
    parser = argparse.ArgumentParser(prog=f"{PROG} {argv[0]}", description=module.__doc__.split("\n\n")[0])
    module.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    args = parser.parse_args(argv[1:])
    document = {"command": command, **module.run(args, _progress(args.quiet or args.json))}
    stem = Path(args.out).with_suffix("") if args.out else None
    _finish(document, stem, module.markdown, args.json, module.summary(document))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
