"""``emotion-data``: make the synthetic demo dataset, or inspect a data folder before training."""

from __future__ import annotations

import argparse
import sys

from emotion.runtime.console import guard, print_json

from .data import DataError, load_dataset, parse_image_size
from .synth import SynthConfig, generate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write a deterministic synthetic dataset (DIR/Negative, DIR/Positive)")
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument("--n", type=int, default=SynthConfig.n, help="number of images (default %(default)s)")
    synth.add_argument("--seed", type=int, default=SynthConfig.seed, help="random seed (default %(default)s)")
    synth.add_argument("--size", default="400x500", help="image size HxW (default %(default)s, the seed's)")
    synth.add_argument("--force", action="store_true", help="replace DIR if it exists")
    inspect = sub.add_parser("inspect", help="class counts, imbalance, majority baseline, unreadable files")
    inspect.add_argument("data", help="folder with Negative/ and Positive/")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


@guard(DataError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "synth":
        height, width = parse_image_size(args.size)
        counts = generate(args.out, SynthConfig(n=args.n, seed=args.seed, height=height, width=width), args.force)
        print(f"wrote {sum(counts.values())} images to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    report = load_dataset(args.data).report()
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    lines = [f"data: {report['root']}  ({report['total']} images)"]
    for name, count in report["counts"].items():
        lines.append(f"  {name:<9} {count:>6}  {count / max(1, report['total']):6.1%}")
    lines.append(
        f"  imbalance {report['imbalance_ratio']}:1; majority-class baseline accuracy "
        f"{report['majority_accuracy']:.1%} (always '{report['majority_class']}')"
    )
    if report["rejected"]:
        lines.append(f"  left out {len(report['rejected'])} file(s):")
        lines += [f"    {r['path']}: {r['reason']}" for r in report["rejected"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
