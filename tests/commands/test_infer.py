"""``nnkit infer``: summaries, --save, --json, timing, and refusals that are one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnkit.backends import probe
from tests.conftest import assert_one_line_error, run_cli, run_nnkit
from tests.test_cli import _modules_after


@pytest.fixture(scope="module")
def lstm(zoo_file):
    return str(zoo_file("lstm", "torchscript"))


def test_summary_of_every_output(lstm):
    result = run_cli("infer", lstm, "--provider", "cpu", "--shape", "x:2x7x10")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "on cpu; inputs (seed 0): x [2, 7, 10] float32" in lines[0]
    assert lines[1].split() == ["output", "shape", "dtype", "min", "max", "mean", "nan", "inf"]
    assert set(lines[2]) == {"-", " "}
    assert [ln.split()[0] for ln in lines[3:6]] == ["output", "h_n", "c_n"]
    assert "[2, 7, 20]" in lines[3] and lines[3].split()[-2:] == ["0", "0"]


def test_save_writes_every_output_and_json_says_so(lstm, tmp_path):
    out = tmp_path / "out.npz"
    result = run_cli("infer", lstm, "-p", "openvino", "--save", str(out), "--json", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["model", "provider", "seed", "inputs", "outputs", "timing", "saved"]
    assert data["provider"] == "openvino" and data["seed"] == 3 and data["timing"] is None
    assert data["saved"] == str(out)
    assert data["inputs"] == [
        {
            "name": "x",
            "shape": [1, 1, 10],
            "dtype": "float32",
            "source": "random",
            "nan_count": 0,
            "inf_count": 0,
            "kind": "tensor",
            "length": None,
        }
    ]
    assert list(data["outputs"][0]) == [
        "name",
        "shape",
        "dtype",
        "min",
        "max",
        "mean",
        "nan_count",
        "inf_count",
        "kind",
        "length",
        "elements",
        "values",
    ]
    with np.load(out) as saved:
        assert saved.files == ["output", "h_n", "c_n"]
        assert saved["h_n"].shape == (2, 1, 20)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary left


def test_inputs_from_files_give_the_same_outputs_on_every_cpu_backend(lstm, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 4, 10), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "feeds.npz", x=x)
    results = {}
    for provider, given in [
        ("cpu", f"x={tmp_path / 'x.npy'}"),
        ("tract", str(tmp_path / "feeds.npz")),
    ]:
        out = tmp_path / f"{provider}.npz"
        result = run_cli(
            "infer", lstm, "-p", provider, "--input", given, "--save", str(out), "--json"
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["inputs"][0]["source"] == "file"
        with np.load(out) as saved:
            results[provider] = saved["output"]
    np.testing.assert_allclose(results["tract"], results["cpu"], rtol=1e-4, atol=1e-5)


def test_iterations_print_percentiles(lstm):
    result = run_cli("infer", lstm, "-p", "cpu", "--iterations", "5", "--warmup", "2")
    assert result.exit_code == 0, result.stderr
    assert "latency over 5 runs (first run " in result.stdout
    assert " ms, then 2 warmup): p50 " in result.stdout
    assert all(k in result.stdout for k in ("p90", "p99", "mean"))
    data = json.loads(run_cli("infer", lstm, "-p", "cpu", "--iterations", "3", "--json").stdout)
    assert set(data["timing"]) == {
        "first_run_ms",
        "warmup",
        "stdev_ms",
        "iterations",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "min_ms",
        "max_ms",
    }
    assert 0 < data["timing"]["min_ms"] <= data["timing"]["p50_ms"] <= data["timing"]["max_ms"]


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_a_provider_that_cannot_run_fails_in_one_line_and_writes_nothing(lstm, tmp_path, provider):
    if probe(provider):
        pytest.skip(f"{provider} runs here")
    out = tmp_path / "out.npz"
    result = run_nnkit("infer", lstm, "--provider", provider, "--save", str(out))
    err = assert_one_line_error(result, f"{provider}: ", "did not load", "nnkit never does")
    assert "GPU" in err
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("given", "needles"),
    [
        ("x=x64.npy", ["dtype float64 != float32", "expected [batch, seq, 10] float32"]),
        ("x=wide.npy", ["dim 2 is 9, must be 10", "given (2, 7, 9) float32"]),
        ("y=x.npy", ["missing 'x'", "unexpected 'y'"]),
        ("x=flat.npy", ["rank 2 != 3"]),
    ],
)
def test_feeds_that_do_not_fit_are_refused_before_running(lstm, tmp_path, given, needles):
    np.save(tmp_path / "x64.npy", np.zeros((2, 7, 10)))
    np.save(tmp_path / "wide.npy", np.zeros((2, 7, 9), np.float32))
    np.save(tmp_path / "x.npy", np.zeros((2, 7, 10), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((2, 10), np.float32))
    name, _, file = given.partition("=")
    result = run_cli("infer", lstm, "-p", "cpu", "--input", f"{name}={tmp_path / file}")
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-p", "gpu"], ["unknown provider 'gpu'", "valid providers are cpu, cuda, tensorrt"]),
        (["-p", "torch"], ["use nnkit parity"]),
        (
            ["-p", "cpu", "--shape", "x:2x7x9"],
            ["dim 2 is fixed at 10", "expected [batch, seq, 10]"],
        ),
        (["-p", "cpu", "--shape", "y:2x7x10"], ["'y', which is not an input", "takes 'x'"]),
        (["-p", "cpu", "--shape", "x:2x7"], ["rank 2 != 3"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(lstm, args, needles):
    assert_one_line_error(run_cli("infer", lstm, *args), *needles)


def test_missing_model_file(tmp_path):
    assert_one_line_error(
        run_cli("infer", str(tmp_path / "no.onnx"), "-p", "cpu"), "does not exist"
    )


def test_infer_never_imports_torch(lstm):
    loaded = _modules_after("infer", lstm, "-p", "cpu")
    assert "nnkit.worker" in loaded  # the runtime runs in a worker ...
    assert "torch" not in loaded and "onnxruntime" not in loaded  # ... so not even here


def test_the_infer_worker_never_imports_torch(lstm):
    from nnkit.infer import run_file
    from nnkit.worker import Worker

    with Worker("cpu") as worker:
        worker.call(run_file, lstm, "cpu")
        loaded = worker.call(_loaded_modules)
    assert "onnxruntime" in loaded
    assert "torch" not in loaded


def _loaded_modules() -> set[str]:
    import sys

    return set(sys.modules)
