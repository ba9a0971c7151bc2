"""``export_report.json`` and the table ``emotion-export`` prints: what was exported, how fast, how faithful."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .parity import table
from .verify import Verification


@dataclass
class ExportReport:
    """What was exported, from what, how fast, and how faithfully; the fields in ``export_report.json``'s order."""

    source: str
    source_sha256: str
    run_dir: str | None
    out_dir: str
    name: str
    version: str
    precisions: list[str]
    opset: int
    files: dict[str, dict] = field(default_factory=dict)  # variant -> {path, bytes, ...}
    timings_seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds
    quantization: dict | None = None
    verification: Verification | None = None
    model_info: dict = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.parity_ok

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1  # 1: exported, but FP32 does not match Keras; the report says how far off

    def to_dict(self) -> dict:
        verification = self.verification.to_dict() if self.verification else None
        return {"ok": self.ok, **vars(self), "verification": verification}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def table(self) -> str:
        """The human summary: the parity table, then sizes and times."""
        lines: list[str] = []
        if self.verification is not None:
            v = self.verification
            lines += [f"Parity with Keras on {v.data.get('source', '?')} (threshold {v.threshold:g}):", "",
                      table(v.checks), ""]
            lines += [f"note: {note}" for note in v.notes]
            lines.append("FP32 parity: OK" if v.parity_ok else "FP32 parity: FAILED: " + "; ".join(v.problems))
        if self.files:
            lines.append("Sizes: " + ", ".join(f"{k} {f['bytes'] / 1e6:.2f} MB" for k, f in self.files.items()))
        if self.timings_seconds:
            lines.append("Times: " + ", ".join(f"{k} {s:.1f}s" for k, s in self.timings_seconds.items()))
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"Wrote {self.out_dir}")
        return "\n".join(lines)
