"""nnkit bench's console table (nnkit.bench_report)."""

from __future__ import annotations

from nnkit import bench, bench_report
from nnkit.machine import Machine
from tests.test_bench import _result


def test_render_shows_errors_and_the_peak() -> None:
    results = [_result("cpu", 1, 0.5), _result("tract", 1, None, status="error")]
    report = bench.BenchReport(
        model="m",
        file="m.onnx",
        exporter=None,
        backends=["cpu", "tract"],
        batches=[1],
        settings={"warmup": 1, "iterations": 1, "seconds": None, "threads": None, "seed": 0},
        versions={},
        machine=Machine("Some CPU", "x86_64", 4, 2, [], 3.0, 32, 192.0),
        results=results,
    )
    assert not report.ok
    text = bench_report.render(report)
    assert "error: tract batch 1: it broke" in text
    assert "192 GFLOP/s (2 cores x 3.00 GHz x 32 FLOP/cycle, estimate)" in text
    assert "vs torch" not in text
