"""Facts about this machine: the CPU, its cores and vector extensions, NVIDIA GPUs, peak.

Read from ``/proc``, ``/sys`` and ``os`` only (and ``nvidia-smi`` where installed): no
runtime and no torch is imported, so ``nnkit doctor``, a benchmark and a backend's error
message can all call it. ``/proc/cpuinfo`` is read and parsed once per call
(:func:`cpu_info` for the CPU as the OS reports it, :func:`machine_info` for what a
benchmark reports beside it).

:func:`machine_info` adds an estimate of the peak float32 GFLOP/s a GFLOP/s figure is set
beside::

    peak = physical cores usable * clock (GHz) * FLOP/cycle/core

FLOP/cycle/core comes from the widest FMA the CPU has, assuming two FMA pipes (the
common case on server cores): AVX-512 64 (AMD Zen 4, which runs AVX-512 on 256-bit
pipes, 32), AVX2+FMA 32, AVX 16, SSE 8, NEON 16. The clock is the highest the OS
reports (``cpufreq`` maximum, else ``/proc/cpuinfo``'s current MHz). It is an
estimate: real GEMMs reach 60-90 % of it, and AVX-512 clock offsets lower it; in a VM
without ``cpufreq``, ``/proc/cpuinfo`` shows the base (TSC) clock, and a core boosting
past it can beat the estimate.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
#: /proc/cpuinfo keys that name the CPU, first found wins ("processor" only where it is
#: not a number, as on x86).
_MODEL_KEYS = ("model name", "hardware", "cpu model", "processor")


# -- the CPU as the OS reports it ------------------------------------------------------------


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
    return _cpu_of(_pairs(_read(cpuinfo)))


def _cpu_of(pairs: list[tuple[str, str]]) -> CPUInfo:
    """A :class:`CPUInfo` from the parsed ``/proc/cpuinfo``."""
    model = next(
        (v for k, v in pairs if k in _MODEL_KEYS and v and not (k == "processor" and v.isdigit())),
        "",
    )
    flags = set(next((v for k, v in pairs if k in ("flags", "features") and v), "").split())
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


# -- NVIDIA GPUs -----------------------------------------------------------------------------


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


# -- what a benchmark reports: cores, clock, peak -------------------------------------------


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
    text = _read(cpuinfo)
    pairs = _pairs(text)
    info = _cpu_of(pairs)
    physical = physical_cores(text) or info.usable_cores
    clock = clock_ghz(text, sysfs)
    width = flops_per_cycle(info.vector_extensions, vendor=_field(pairs, "vendor_id"), text=text)
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


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


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
        if vendor == "AuthenticAMD" and _field(_pairs(text), "cpu family") == "25":
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


# -- reading /proc ---------------------------------------------------------------------------


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _pairs(text: str) -> list[tuple[str, str]]:
    """``key: value`` lines, keys lowercased, both stripped, in file order."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.append((key.strip().lower(), value.strip()))
    return out


def _field(pairs: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in pairs if k == name), "")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
