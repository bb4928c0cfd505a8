"""``nnkit doctor``: a report of what runs here, probed for real; exit 0 regardless."""

from __future__ import annotations

import json

import pytest

from nnkit.backends import BACKENDS, BENCH_NAMES, probe
from tests.conftest import run_nnkit
from tests.test_cli import _modules_after


@pytest.fixture(scope="module")
def report() -> dict:
    result = run_nnkit("doctor", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_keys(report):
    assert list(report) == [
        "nnkit",
        "python",
        "platform",
        "packages",
        "backends",
        "cpu",
        "gpus",
        "environment",
    ]
    assert set(report["python"]) == {"version", "implementation", "executable"}
    assert {"onnx", "onnxruntime", "openvino", "tract", "torch"} <= set(report["packages"])
    assert report["packages"]["onnxruntime"]["distribution"] in ("onnxruntime-gpu", "onnxruntime")
    assert set(report["cpu"]) == {
        "model",
        "architecture",
        "logical_cores",
        "usable_cores",
        "vector_extensions",
    }
    assert report["cpu"]["usable_cores"] >= 1


def test_the_environment_record_is_the_one_every_report_carries(report):
    env = report["environment"]
    assert list(env) == ["versions", "backends", "machine"]
    assert env["versions"]["nnkit"] == report["nnkit"]
    assert env["versions"]["torch"] == report["packages"]["torch"]["version"]  # not imported
    assert list(env["backends"]) == list(BACKENDS)
    assert (
        env["backends"]["cpu"]
        == next(r for r in report["backends"] if r["name"] == "cpu")["version"]
    )
    assert env["machine"] == {
        "platform": report["platform"],
        "architecture": report["cpu"]["architecture"],
        "cpu": report["cpu"]["model"],
        "cores": report["cpu"]["usable_cores"],
    }


def test_every_backend_probed_cpu_ok(report):
    rows = {r["name"]: r for r in report["backends"]}
    assert list(rows) == list(BENCH_NAMES)  # the reference, then every backend
    assert set(rows["cpu"]) == {"name", "status", "version", "reason", "requirement"}
    assert rows["cpu"]["status"] == "ok" and rows["cpu"]["reason"] is None
    assert rows["torch"]["status"] == "ok"  # probed in a child process


def test_cuda_unavailable_here_with_the_reason(report):
    if probe("cuda"):
        pytest.skip("cuda runs here")
    cuda = next(r for r in report["backends"] if r["name"] == "cuda")
    assert cuda["status"] == "unavailable" and cuda["version"] is None
    assert "did not load" in cuda["reason"] and "GPU" in cuda["reason"]
    assert cuda["requirement"] == "onnxruntime-gpu"


def test_table_output_exits_0():
    result = run_nnkit("doctor")
    assert result.returncode == 0, result.stderr
    assert "backends:" in result.stdout and "vector extensions:" in result.stdout
    assert result.stderr == ""  # onnxruntime's C++ log blocks were captured


def test_doctor_never_imports_torch():
    assert "torch" not in _modules_after("doctor", "--json")
