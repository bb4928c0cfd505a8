"""Machine facts (nnkit.machine): CPU facts from /proc/cpuinfo, the GPU note of error
messages, the machine a benchmark reports and its peak GFLOP/s estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnkit.machine import (
    clock_ghz,
    cpu_info,
    flops_per_cycle,
    gpu_note,
    load_average,
    machine_info,
    nvidia_gpus,
    physical_cores,
)

_PROCESSOR = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC 9R14
cpu MHz\t\t: 2596.134
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f
"""
#: Two logical processors (hyperthreads) of one physical core, as /proc/cpuinfo shows them.
ZEN4 = "\n".join(_PROCESSOR.format(n=n) for n in (0, 1))


@pytest.mark.parametrize(
    ("extensions", "vendor", "expected"),
    [
        (["sse4_2", "avx", "avx2", "fma", "avx512f"], "GenuineIntel", 64),
        (["sse4_2", "avx", "avx2", "fma"], "AuthenticAMD", 32),
        (["sse4_2", "avx"], "GenuineIntel", 16),
        (["sse4_2"], "GenuineIntel", 8),
        (["neon"], "", 16),
        ([], "", None),
    ],
)
def test_flops_per_cycle_from_the_widest_fma(extensions, vendor, expected) -> None:
    assert flops_per_cycle(extensions, vendor=vendor) == expected


def test_zen4_runs_avx512_on_256_bit_pipes() -> None:
    assert flops_per_cycle(["avx2", "fma", "avx512f"], vendor="AuthenticAMD", text=ZEN4) == 32


def test_smt_siblings_count_once_and_clock_falls_back_to_cpuinfo(tmp_path: Path) -> None:
    assert physical_cores(ZEN4, allowed={0, 1}) == 1
    two_cores = ZEN4.replace("processor\t: 1", "processor\t: 2").replace(
        "core id\t\t: 0\nflags", "core id\t\t: 1\nflags", 1
    )
    assert physical_cores(two_cores, allowed={0, 2}) == 2
    assert physical_cores(two_cores, allowed={2}) == 1
    assert physical_cores("model name\t: some arm", allowed={0}) is None
    assert clock_ghz(ZEN4, sysfs=tmp_path) == pytest.approx(2.596134)


def test_peak_is_cores_times_clock_times_width(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN4)
    m = machine_info(cpuinfo, sysfs=tmp_path)
    assert m.cpu == "AMD EPYC 9R14"
    if m.physical_cores == 1:  # this process may run on CPU 0 or 1 of the fake file
        assert m.peak_gflops == pytest.approx(1 * 2.596 * 32, rel=1e-3)
        assert "1 cores x 2.60 GHz x 32 FLOP/cycle" in m.peak_text()


def test_this_machine_is_described() -> None:
    m = machine_info()
    assert m.cpu and m.python
    assert m.to_dict()["cpu"] == m.cpu


# -- the CPU as the OS reports it ------------------------------------------------------

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_bf16
"""
ARM = """processor\t: 0
Features\t: fp asimd asimddp sve
CPU implementer\t: 0x41
"""


def test_x86_model_and_vector_extensions(tmp_path):
    (tmp_path / "cpuinfo").write_text(X86)
    info = cpu_info(tmp_path / "cpuinfo")
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.vector_extensions == [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "amx",
        "amx_bf16",
    ]
    assert info.usable_cores and info.logical_cores and info.usable_cores <= info.logical_cores


def test_arm_neon(tmp_path):
    (tmp_path / "cpuinfo").write_text(ARM)
    assert cpu_info(tmp_path / "cpuinfo").vector_extensions == ["neon", "neon_dotprod", "sve"]


def test_this_machine_and_gpu_note():
    assert cpu_info().model
    note = gpu_note()
    assert note.startswith("NVIDIA GPU present") if nvidia_gpus() else "no NVIDIA GPU" in note


def test_the_benchmark_and_the_doctor_read_one_parse_of_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN4)
    cpu, m = cpu_info(cpuinfo), machine_info(cpuinfo, sysfs=tmp_path)
    assert (m.cpu, m.vector_extensions) == (cpu.model, cpu.vector_extensions)
    assert m.vector_extensions == ["sse4_2", "avx", "avx2", "fma", "avx512f"]


def test_a_cpu_without_a_name_or_flags_is_still_described(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t:\n")
    info = cpu_info(tmp_path / "cpuinfo")
    assert info.model and info.vector_extensions == []
    assert cpu_info(tmp_path / "missing").model  # no /proc: platform's name or "unknown"


def test_load_average_is_a_number_or_none() -> None:
    load = load_average()
    assert load is None or load >= 0
