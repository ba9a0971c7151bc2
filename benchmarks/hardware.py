"""What the figures were measured on: CPU, ISA, memory, OS, Python and library versions."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from emotion.train.versions import library_versions

# /proc/cpuinfo flag -> the name people know it by
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX512_VNNI",
    "avx512_bf16": "AVX512_BF16",
    "avx_vnni": "AVX_VNNI",
    "amx_tile": "AMX-TILE",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "avx512_fp16": "AVX512_FP16",
}
def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    if info:
                        break  # the first processor is enough
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1024 * 1024), 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"') + f" (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def openvino_cpu() -> dict[str, Any]:
    """OpenVINO's view of the CPU: its full name and OPTIMIZATION_CAPABILITIES (BF16, INT8, ...)."""
    try:
        import openvino as ov

        core = ov.Core()
        caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        name = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        return {"name": name, "optimization_capabilities": caps}
    except Exception as exc:  # no OpenVINO, or no CPU plugin
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}


def hardware_report(hints: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine and software a benchmark ran on, with ``hints`` saying how it was measured."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu.get("model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "isa": {label: flag in flags for flag, label in ISA_FLAGS.items()},
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "versions": library_versions(),
        "openvino_cpu": openvino_cpu(),
        "hints": dict(hints or {}),
    }


def hardware_markdown(report: dict[str, Any]) -> str:
    isa = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in report.get("isa", {}).items())
    versions = ", ".join(f"{name} {v}" for name, v in report.get("versions", {}).items() if name != "python")
    ov_cpu = report.get("openvino_cpu", {})
    caps = ", ".join(ov_cpu.get("optimization_capabilities", [])) or ov_cpu.get("error", "?")
    lines = [
        "| | |",
        "|---|---|",
        f"| CPU | {report.get('cpu')} ({report.get('cores')} logical cores, {report.get('usable_cores')} usable) |",
        f"| ISA (/proc/cpuinfo) | {isa} |",
        f"| OpenVINO CPU capabilities | {caps} |",
        f"| Memory | {report.get('memory_gib')} GiB |",
        f"| OS | {report.get('os')} |",
        f"| Python | {report.get('python')} |",
        f"| Libraries | {versions} |",
    ]
    for key, value in report.get("hints", {}).items():
        lines.append(f"| {key} | {str(value).replace('|', chr(92) + '|')} |")
    return "\n".join(lines)
