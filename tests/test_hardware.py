"""CPU facts from /proc/cpuinfo, and the GPU note of error messages."""

from __future__ import annotations

from nnkit.hardware import cpu_info, gpu_note, nvidia_gpus

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
