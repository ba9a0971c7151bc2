"""``emotion-bench``: benchmark every format of a trained model, and the runtime's speed targets.

    emotion-bench RUN [--data DATA] [--export DIR] [--formats F ...] [--out DIR] [--name STEM] [--repeats N]
                      [--seconds S] [--gate-... X] [--json]
    emotion-bench infer-speed EXPORT --data DATA [--files N] [--repeats N] [--out FILE.md] [--json]

Exit status: 0 done and every gated format within its parity limits; 1 done but parity broke (the report is
written all the same); 2 bad input (missing run, export or data, data without labels, unknown format): one
line on stderr, nothing measured.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from emotion.runtime.console import positive_float, positive_int

from .formats import FORMATS

PROG = "emotion-bench"
EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


_positive_int, _positive_float = positive_int, positive_float  # shared argparse types


def _limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark a trained emotion model in every format (Keras, ONNX Runtime, OpenVINO FP32/BF16/"
        "FP16/INT8): accuracy and parity against Keras, latency, throughput, end-to-end folder speed, cold start "
        "and memory, against OpenVINO's benchmark_app as the ceiling. "
        f"`{PROG} infer-speed EXPORT --data DATA` measures the runtime's speed targets instead (see its --help).",
        epilog="Exit status: 0 parity kept, 1 parity broke (report written), 2 bad input.",
    )
    parser.add_argument("run", metavar="RUN", help="training run folder (model.keras, split.csv, run.json), or a .keras file")
    parser.add_argument("--data", metavar="DATA",
                        help="labelled image folder (DATA/Negative, DATA/Positive) the run's split.csv refers to "
                        "(default: the run's data_root); its validation images are used, or all its images "
                        "when split.csv does not match it")
    parser.add_argument("--export", metavar="DIR",
                        help="export folder (emotion-export --out DIR); default: export the run into a temporary folder")
    parser.add_argument("--formats", nargs="+", metavar="F",
                        help=f"formats to measure (default: all): {', '.join(FORMATS)}")
    parser.add_argument("--out", metavar="DIR", help="folder for NAME.md, NAME.json, NAME.png (default: RUN/benchmark)")
    parser.add_argument("--name", default="benchmark", help="file name stem of the outputs (default: %(default)s)")
    parser.add_argument("--title", help="title of the Markdown report")
    parser.add_argument("--repeats", type=_positive_int, default=3, metavar="N",
                        help="rounds of timings; medians and min-max are reported (default: %(default)s)")
    parser.add_argument("--seconds", type=_positive_float, default=3.0, metavar="S",
                        help="duration of each latency and throughput measurement (default: %(default)s)")
    parser.add_argument("--ba-seconds", type=_positive_float, default=None, metavar="S",
                        help="benchmark_app -t per run (default: --seconds; whole seconds, at least 1)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed inferences before latency timing")
    parser.add_argument("--e2e-images", type=_positive_int, default=200, metavar="N",
                        help="files per end-to-end run: the validation files repeated up to N (default: %(default)s)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold-start processes")
    parser.add_argument("--no-ceiling", action="store_true", help="skip benchmark_app")
    parser.add_argument("--device", default="CPU", help="OpenVINO device (default: CPU)")
    gate = parser.add_argument_group("parity gate (exit status 1 when a limit is broken)")
    gate.add_argument("--no-gate", action="store_true", help="report parity, never fail on it")
    gate.add_argument("--gate-fp32-auc", type=_limit, default=1e-4, metavar="X",
                      help="onnxruntime, openvino-fp32: max |dAUC| (default: %(default)g)")
    gate.add_argument("--gate-fp32-agreement", type=_limit, default=100.0, metavar="PCT",
                      help="onnxruntime, openvino-fp32: min label agreement %% with Keras (default: %(default)g)")
    gate.add_argument("--gate-fp32-max-dp", type=_limit, default=1e-4, metavar="X",
                      help="onnxruntime, openvino-fp32: max |P - P_keras| (default: %(default)g)")
    gate.add_argument("--gate-bf16-auc", type=_limit, default=0.005, metavar="X", help="openvino-bf16: max |dAUC|")
    gate.add_argument("--gate-fp16-auc", type=_limit, default=0.005, metavar="X", help="openvino-fp16: max |dAUC|")
    gate.add_argument("--gate-int8-auc", type=_limit, default=0.01, metavar="X", help="openvino-int8: max |dAUC|")
    parser.add_argument("--json", action="store_true", help="print the JSON document on stdout instead of the table")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _error(message: str) -> int:
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv and argv[0] == "infer-speed":
        from .infer_speed import main as infer_speed_main

        return infer_speed_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .report import main_table, to_json, write
    from .suite import BenchConfig, BenchError, Gates, prepare, run_bench

    run = Path(args.run).expanduser()
    out = Path(args.out).expanduser() if args.out else (run if run.is_dir() else run.parent) / "benchmark"
    config = BenchConfig(
        run=run, data=args.data, export=args.export, formats=args.formats, out=out, name=args.name,
        repeats=args.repeats, seconds=args.seconds, ba_seconds=args.ba_seconds, warmup=max(0, args.warmup),
        e2e_images=args.e2e_images, cold_start=not args.no_cold_start, ceiling=not args.no_ceiling,
        gate=not args.no_gate,
        gates=Gates(args.gate_fp32_auc, args.gate_fp32_agreement, args.gate_fp32_max_dp, args.gate_bf16_auc,
                    args.gate_fp16_auc, args.gate_int8_auc),
        device=args.device, progress=not args.quiet and not args.json,
        command=" ".join([PROG] + [shlex.quote(a) for a in argv]),
    )
    try:
        prepared = prepare(config)
        if out.exists() and not out.is_dir():
            raise BenchError(f"--out {out} exists and is not a folder")
        document = run_bench(config, prepared)
        paths = write(document, out, args.name, args.title)
    except BenchError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        sys.stdout.write(to_json(document))
    else:
        print(main_table(document))
        gate = document["gate"]
        verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(
            f"{name}: {', '.join(failures)}" for name, failures in gate["failures"].items())
        print(f"\nparity gate {verdict}" + ("" if gate["enabled"] else " (disabled)"))
    print(f"{PROG}: wrote {', '.join(os.fspath(p) for p in paths.values())}", file=sys.stderr)
    return EXIT_OK if document["gate"]["passed"] else EXIT_GATE


if __name__ == "__main__":
    sys.exit(main())
