"""``export_report.json`` and the table ``emotion-export`` prints: what was exported, how fast, how faithful."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from .verify import Verification

EXIT_OK = 0
EXIT_PARITY = 1  # exported, but FP32 does not match Keras: the report says how far off


@dataclass
class ExportReport:
    source: str
    source_sha256: str
    run_dir: str | None
    out_dir: str
    name: str
    version: str
    precisions: list[str]
    opset: int
    model_info: dict
    files: dict[str, dict] = field(default_factory=dict)  # variant -> {path, bytes, ...}
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    quantization: dict | None = None
    verification: Verification | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.parity_ok

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PARITY

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "run_dir": self.run_dir,
            "out_dir": self.out_dir,
            "name": self.name,
            "version": self.version,
            "precisions": list(self.precisions),
            "opset": self.opset,
            "files": self.files,
            "timings_seconds": self.timings,
            "quantization": self.quantization,
            "verification": self.verification.to_dict() if self.verification else None,
            "model_info": self.model_info,
            "versions": self.versions,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n"

    def table(self) -> str:
        """The human summary: parity table, then sizes and times."""
        lines: list[str] = []
        if self.verification is not None:
            v = self.verification
            lines.append(f"Parity on {v.data.get('source', '?')} (threshold {v.threshold:g}):")
            lines.append(format_rows(v.rows, self.files))
            for note in v.notes:
                lines.append(f"  note: {note}")
            lines.append("FP32 parity: OK" if v.parity_ok else "FP32 parity: FAILED: " + "; ".join(v.problems))
        sizes = ", ".join(f"{k} {_mb(f.get('bytes'))}" for k, f in self.files.items())
        if sizes:
            lines.append(f"Sizes: {sizes}")
        if self.timings:
            lines.append("Times: " + ", ".join(f"{k} {s:.1f}s" for k, s in self.timings.items()))
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(f"Wrote {self.out_dir}")
        return "\n".join(lines)


def _mb(size: Any) -> str:
    return f"{size / 1e6:.2f} MB" if isinstance(size, (int, float)) else "-"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_rows(rows: list, files: dict | None = None) -> str:
    header = f"{'variant':<13} {'weights':<7} {'compute':<7} {'max|dP|':>9} {'agree%':>7} {'AUC':>6} " \
             f"{'acc':>6} {'bal.acc':>7} {'size':>9}  {'check':<6}"
    out = [header, "-" * len(header)]
    file_of = {"onnx": "onnx", "ir-fp32": "fp32", "ir-fp32-bf16": "fp32", "ir-fp16": "fp16", "ir-int8": "int8"}
    for r in rows:
        size = (files or {}).get(file_of.get(r.variant, ""), {}).get("bytes")
        check = "" if not r.gate else ("ok" if r.passed else "FAIL")
        if r.error:
            out.append(f"{r.variant:<13} {r.weights:<7} {r.compute:<7} error: {r.error}")
            continue
        out.append(
            f"{r.variant:<13} {r.weights:<7} {r.compute:<7} {_num(r.max_abs_diff, '9.2e')} "
            f"{_num(r.label_agreement, '7.2f')} {_num(r.roc_auc, '6.4f')} {_num(r.accuracy, '6.4f')} "
            f"{_num(r.balanced_accuracy, '7.4f')} {_mb(size) if size else '-':>9}  {check:<6}"
        )
    return "\n".join(out)


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the exported files (read from the imported modules)."""
    import importlib

    out = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            mod = importlib.import_module(module)
            out[module] = str(getattr(mod, "__version__", None) or getattr(mod, "get_version", lambda: "?")())
        except Exception:  # not installed: say so rather than fail the export
            out[module] = "not installed"
    return out
