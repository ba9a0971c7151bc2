"""What the figures were measured on: CPU, ISA, memory, OS, Python and library versions."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from emotion.runtime.console import one_line
from emotion.train.versions import library_versions

# /proc/cpuinfo flag -> the name people know it by
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512F", "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16",
             "avx_vnni": "AVX_VNNI", "amx_tile": "AMX-TILE", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
             "avx512_fp16": "AVX512_FP16"}


def _first_processor() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo as ``{key: value}`` (empty when it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            block = handle.read().strip().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}


def _os_name() -> str:
    try:
        return f"{platform.freedesktop_os_release()['PRETTY_NAME']} (kernel {platform.release()})"
    except (OSError, KeyError):
        return platform.platform()


def openvino_cpu() -> dict[str, Any]:
    """OpenVINO's view of the CPU: its full name and OPTIMIZATION_CAPABILITIES (BF16, INT8, ...)."""
    try:
        import openvino as ov

        core = ov.Core()
        return {"name": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                "optimization_capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]}
    except Exception as exc:  # no OpenVINO, or no CPU plugin
        return {"error": one_line(exc)}


def hardware_report(hints: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine and software a benchmark ran on, with ``hints`` saying how it was measured."""
    cpu = _first_processor()
    flags = set(cpu.get("flags", "").split())
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError):
        memory = None
    return {"cpu": cpu.get("model name") or platform.processor() or "unknown", "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "isa": {label: flag in flags for flag, label in ISA_FLAGS.items()}, "memory_gib": memory,
            "os": _os_name(), "python": sys.version.split()[0], "versions": library_versions(),
            "openvino_cpu": openvino_cpu(), "hints": dict(hints or {})}
