"""nnkit bench's orchestration (nnkit.bench): a run over backends and batches, the
speed-up over torch, what makes the numbers untrustworthy, and what it imports."""

from __future__ import annotations

import json

import pytest

from nnkit import bench
from nnkit.bench import BenchResult


def test_bench_file_gives_a_result_per_backend_and_batch(zoo_file) -> None:
    report = bench.bench_file(
        zoo_file("combinednn"), backends=["cpu"], batches=[1, 4], warmup=1, iterations=3
    )
    assert report.ok
    assert [(r.backend, r.batch) for r in report.results] == [("cpu", 1), ("cpu", 4)]
    for r in report.results:
        assert r.iterations == 3 and r.warmup == 1
        assert r.load_ms > 0 and r.first_run_ms > 0
        assert r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert r.flops == r.batch * 1_889_616
        assert r.gflops == pytest.approx(r.flops / (r.p50_ms * 1e6))
        assert r.speedup_vs_torch is None
    data = json.loads(json.dumps(report.to_dict()))
    assert data["versions"]["cpu"]
    assert data["machine"]["cpu"]
    assert data["settings"]["iterations"] == 3
    # The record every report carries (nnkit.environment), beside bench's own keys.
    env = data["environment"]
    assert env["backends"] == {"cpu": data["versions"]["cpu"]}
    assert {"nnkit", "python", "numpy", "onnx", "torch", "onnxscript"} <= set(env["versions"])
    assert set(env["machine"]) == {"platform", "architecture", "cpu", "cores"}
    assert env["machine"]["cpu"] == data["machine"]["cpu"]


def _result(backend: str, batch: int, p50: float | None, status: str = "ok") -> BenchResult:
    return BenchResult(
        model="m",
        backend=backend,
        batch=batch,
        status=status,
        error=None if status == "ok" else "it broke",
        p50_ms=p50,
        iterations=1 if p50 else None,
    )


def test_speedup_is_torch_p50_over_the_backends_at_the_same_batch() -> None:
    report = bench.bench_model(
        "linear", backends=["torch", "cpu"], batches=[1, 8], warmup=0, iterations=3
    )
    assert report.ok
    torch_p50 = {r.batch: r.p50_ms for r in report.results if r.backend == "torch"}
    assert set(torch_p50) == {1, 8}
    for r in report.results:
        assert r.speedup_vs_torch == pytest.approx(torch_p50[r.batch] / r.p50_ms, rel=1e-12)
        if r.backend == "torch":
            assert r.speedup_vs_torch == 1.0


def test_bench_imports_no_torch_by_itself() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nnkit.bench, nnkit.bench_report, nnkit.environment, nnkit.flops, "
        "nnkit.machine, nnkit.onnxfile, nnkit.shapes, nnkit.timing; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- what makes the numbers untrustworthy -------------------------------------------------


def _ok(iterations: int) -> bench.BenchResult:
    return bench.BenchResult(model="m", backend="cpu", batch=1, status="ok", iterations=iterations)


def test_a_busy_machine_before_the_run_is_a_warning() -> None:
    (warning,) = bench.trust_warnings({"before": 4.0, "after": 4.2}, 2, [_ok(100)])
    assert "busy before the run (load 4 on 2 cores)" in warning


def test_the_runs_own_load_is_not_a_warning_but_more_than_the_cores_is() -> None:
    assert bench.trust_warnings({"before": 0.3, "after": 2.9}, 2, [_ok(100)]) == []
    (warning,) = bench.trust_warnings({"before": 0.3, "after": 3.5}, 2, [_ok(100)])
    assert "busy during the run (load 3.5 on 2 cores)" in warning


def test_few_timed_runs_are_a_warning() -> None:
    (warning,) = bench.trust_warnings({"before": None, "after": None}, 2, [_ok(4), _ok(10)])
    assert "fewer than 10 timed runs for cpu batch 1" in warning
    assert bench.trust_warnings({}, 2, [_ok(10)]) == []
