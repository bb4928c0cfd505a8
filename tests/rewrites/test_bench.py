"""The variants' speed-ups: over the base file on the same backend and batch, never across."""

from __future__ import annotations

import pytest

from nnkit.bench import BenchResult
from nnkit.rewrites.bench import speedups_vs_base


def result(variant: str, backend: str, batch: int, p50: float | None) -> BenchResult:
    status = "ok" if p50 else "error"
    return BenchResult("m", backend, batch, status, p50_ms=p50, variant=variant)


def test_speedups_are_over_the_base_on_the_same_backend_and_batch():
    results = [
        result("base", "torch", 8, 4.0),
        result("base", "cpu", 8, 2.0),
        result("base", "cpu", 1, 1.0),
        result("base", "openvino", 8, 8.0),
        result("fp16", "cpu", 8, 1.0),
        result("fp16", "cpu", 1, 2.0),
        result("fp16", "openvino", 8, 2.0),
        result("int8", "tract", 8, 1.0),  # no base on tract: no speed-up
        result("int8", "cpu", 8, None),  # failed: none
    ]
    speedups_vs_base(results)
    got = {(r.variant, r.backend, r.batch): r.speedup_vs_base for r in results}
    assert got[("base", "cpu", 8)] == pytest.approx(1.0)
    assert got[("base", "torch", 8)] is None
    assert got[("fp16", "cpu", 8)] == pytest.approx(2.0)
    assert got[("fp16", "cpu", 1)] == pytest.approx(0.5)
    assert got[("fp16", "openvino", 8)] == pytest.approx(4.0)
    assert got[("int8", "tract", 8)] is None and got[("int8", "cpu", 8)] is None
    fp16_cpu = next(r for r in results if (r.variant, r.backend, r.batch) == ("fp16", "cpu", 8))
    assert fp16_cpu.speedup_vs_torch == pytest.approx(4.0)
