"""The machine a benchmark ran on, and an estimate of its peak float32 GFLOP/s.

The CPU model, cores and vector extensions come from :func:`nnkit.hardware.cpu_info`
(shared with ``nnkit doctor``). This module adds what a benchmark needs besides: the
physical cores this process may use, the clock, the float32 FLOPs one core can do per
cycle, and their product, the peak a GFLOP/s figure is set beside::

    peak = physical cores usable * clock (GHz) * FLOP/cycle/core

FLOP/cycle/core comes from the widest FMA the CPU has, assuming two FMA pipes (the
common case on server cores): AVX-512 64 (AMD Zen 4, which runs AVX-512 on 256-bit
pipes, 32), AVX2+FMA 32, AVX 16, SSE 8, NEON 16. The clock is the highest the OS
reports (``cpufreq`` maximum, else ``/proc/cpuinfo``'s current MHz). It is an
estimate: real GEMMs reach 60-90 % of it, and AVX-512 clock offsets lower it; in a VM
without ``cpufreq``, ``/proc/cpuinfo`` shows the base (TSC) clock, and a core boosting
past it can beat the estimate. Reading it needs no runtime and no torch.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnkit.hardware import cpu_info


@dataclass(frozen=True)
class Machine:
    """What a benchmark reports of the machine it ran on."""

    cpu: str
    architecture: str
    logical_cores: int | None
    physical_cores: int | None
    vector_extensions: list[str] = field(default_factory=list)
    clock_ghz: float | None = None
    flops_per_cycle: int | None = None
    #: physical cores * clock * FLOP/cycle; None where the clock or the width is unknown.
    peak_gflops: float | None = None
    os: str = ""
    python: str = ""

    def peak_text(self) -> str:
        """``'166 GFLOP/s (2 cores x 2.60 GHz x 32 FLOP/cycle, estimate)'`` or why not."""
        if self.peak_gflops is None:
            return "unknown (clock or vector width not reported)"
        return (
            f"{self.peak_gflops:.0f} GFLOP/s ({self.physical_cores} cores x "
            f"{self.clock_ghz:.2f} GHz x {self.flops_per_cycle} FLOP/cycle, estimate)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_info(cpuinfo: str | Path = "/proc/cpuinfo", sysfs: str | Path = "/sys") -> Machine:
    """Describe this machine: CPU, cores usable by this process, clock, peak GFLOP/s."""
    info = cpu_info(cpuinfo)
    text = _read(cpuinfo)
    physical = physical_cores(text) or info.usable_cores
    clock = clock_ghz(text, sysfs)
    width = flops_per_cycle(info.vector_extensions, vendor=_field(text, "vendor_id"), text=text)
    peak = physical * clock * width if physical and clock and width else None
    return Machine(
        cpu=info.model,
        architecture=info.architecture,
        logical_cores=info.usable_cores,
        physical_cores=physical,
        vector_extensions=info.vector_extensions,
        clock_ghz=round(clock, 3) if clock else None,
        flops_per_cycle=width,
        peak_gflops=round(peak, 1) if peak else None,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
    )


def physical_cores(cpuinfo_text: str, allowed: set[int] | None = None) -> int | None:
    """Physical cores among the logical CPUs this process may run on (SMT siblings once).

    Args:
        cpuinfo_text: the text of ``/proc/cpuinfo``.
        allowed: the logical CPUs to count (default: this process's affinity).

    Returns:
        The count; None where ``/proc/cpuinfo`` gives no ``core id`` (arm64, some VMs):
        then the caller counts logical CPUs.
    """
    if allowed is None:
        try:
            allowed = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = None
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo_text.split("\n\n"):
        fields = dict(_pairs(block))
        if "processor" not in fields or "core id" not in fields:
            continue
        cpu = fields["processor"]
        if allowed is not None and cpu.isdigit() and int(cpu) not in allowed:
            continue
        cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def clock_ghz(cpuinfo_text: str, sysfs: str | Path = "/sys") -> float | None:
    """The highest clock the OS reports, in GHz: cpufreq's maximum, else cpuinfo's MHz."""
    max_khz = _read(Path(sysfs) / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if max_khz.isdigit() and int(max_khz) > 0:
        return int(max_khz) / 1e6
    mhz = [float(v) for k, v in _pairs(cpuinfo_text) if k == "cpu mhz" and _is_float(v)]
    return max(mhz) / 1e3 if mhz else None


def flops_per_cycle(extensions: list[str], *, vendor: str = "", text: str = "") -> int | None:
    """Float32 FLOPs one core can do per cycle, from its widest FMA (two pipes assumed)."""
    ext = set(extensions)
    if "avx512f" in ext:
        # Zen 4 (family 25) runs AVX-512 on 256-bit pipes; Zen 5 (26) and Intel on 512.
        if vendor == "AuthenticAMD" and _field(text, "cpu family") == "25":
            return 32
        return 64
    if "avx2" in ext and "fma" in ext:
        return 32
    if "avx" in ext:
        return 16
    if "neon" in ext:
        return 16
    if "sse4_2" in ext:
        return 8
    return None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.append((key.strip().lower(), value.strip()))
    return out


def _field(text: str, name: str) -> str:
    return next((v for k, v in _pairs(text) if k == name), "")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
