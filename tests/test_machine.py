"""The machine description and its peak GFLOP/s estimate (nnkit.machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnkit.machine import clock_ghz, flops_per_cycle, machine_info, physical_cores

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
