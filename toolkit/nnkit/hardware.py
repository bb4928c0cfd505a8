"""What the machine has: CPU model, cores, vector extensions, NVIDIA GPUs.

Read from ``/proc`` and ``os`` only (and ``nvidia-smi`` where installed): no runtime is
imported, so ``nnkit doctor`` and a backend's error message can both call it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: CPU flags worth reporting, in /proc/cpuinfo spelling, and the name shown for each.
VECTOR_FLAGS: dict[str, str] = {
    "sse4_2": "sse4_2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "avx_vnni": "avx_vnni",
    "amx_tile": "amx",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
    # arm64 spellings
    "asimd": "neon",
    "asimdhp": "neon_fp16",
    "asimddp": "neon_dotprod",
    "sve": "sve",
    "sve2": "sve2",
    "i8mm": "i8mm",
    "bf16": "bf16",
}


@dataclass
class CPUInfo:
    """The CPU as the OS reports it."""

    model: str
    architecture: str
    logical_cores: int | None
    usable_cores: int | None
    vector_extensions: list[str] = field(default_factory=list)


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CPUInfo:
    """The CPU model, core counts (all, and usable by this process) and vector extensions."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "hardware", "cpu model", "processor") and value:
            # "processor" is a number on x86; keep looking for a name there.
            if key != "processor" or not value.strip().isdigit():
                model = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return CPUInfo(
        model=model or platform.processor() or "unknown",
        architecture=platform.machine(),
        logical_cores=os.cpu_count(),
        usable_cores=usable,
        vector_extensions=[shown for flag, shown in VECTOR_FLAGS.items() if flag in flags],
    )


def nvidia_gpus() -> list[str]:
    """Names of the NVIDIA GPUs the driver shows (empty where there is no driver or GPU)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    names: list[str] = []
    if gpus.is_dir():
        for info in sorted(gpus.glob("*/information")):
            text = info.read_text(encoding="utf-8", errors="replace")
            model = next(
                (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model")),
                info.parent.name,
            )
            names.append(model)
    if names:
        return names
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        names = [ln.split(":", 1)[1].split("(")[0].strip() for ln in out.splitlines() if ":" in ln]
    return names


def gpu_note() -> str:
    """One phrase for error messages: which NVIDIA GPUs are here, or that none is."""
    gpus = nvidia_gpus()
    if not gpus:
        return "no NVIDIA GPU found on this machine (no /proc/driver/nvidia, no nvidia-smi)"
    return f"NVIDIA GPU present: {', '.join(gpus)}"
