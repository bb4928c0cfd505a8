"""``nnkit bench``: the command line, its JSON, its errors, its plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from nnkit.backends import probe
from nnkit.backends._probe import tiny_model
from tests.conftest import assert_one_line_error, run_cli

RESULT_KEYS = {
    "model",
    "backend",
    "batch",
    "status",
    "error",
    "threads",
    "load_ms",
    "first_run_ms",
    "warmup",
    "iterations",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "stdev_ms",
    "min_ms",
    "max_ms",
    "samples_per_s",
    "flops",
    "gflops",
    "speedup_vs_torch",
    # variants (nnkit.rewrites): "base" without --variants; the ONNX file's size
    "variant",
    "file_bytes",
    "speedup_vs_base",
}
QUICK = ("--warmup", "1", "--iterations", "3")


@pytest.fixture
def fixed_batch_file(tmp_path: Path) -> Path:
    """A model whose input is fixed at ``[1, 4]``."""
    path = tmp_path / "fixed.onnx"
    onnx.save(tiny_model(), str(path))
    return path


def test_help() -> None:
    result = run_cli("bench", "--help")
    assert result.exit_code == 0
    for option in ("--backends", "--batch", "--threads", "--warmup", "--iterations", "--seconds"):
        assert option in result.stdout


def test_an_onnx_file_on_two_backends_writes_json(zoo_file, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench",
        str(zoo_file("combinednn")),
        "--backends",
        "cpu,openvino",
        "--batch",
        "1,4",
        *QUICK,
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    assert "p50 ms" in result.stdout and "GFLOP/s" in result.stdout
    assert "machine peak" in result.stdout
    data = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in data["results"]] == [
        ("cpu", 1),
        ("cpu", 4),
        ("openvino", 1),
        ("openvino", 4),
    ]
    for r in data["results"]:
        assert set(r) == RESULT_KEYS
        assert r["status"] == "ok" and r["iterations"] == 3
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["variant"] == "base" and r["file_bytes"] == zoo_file("combinednn").stat().st_size
    assert data["exporter"] is None
    assert set(data["versions"]) == {"cpu", "openvino"}
    assert data["settings"]["warmup"] == 1
    assert set(data["load"]) == {"before", "after"}
    assert any("fewer than 10 timed runs" in w for w in data["warnings"])  # 3 iterations


def test_json_to_stdout_replaces_the_table(zoo_file) -> None:
    result = run_cli(
        "bench", str(zoo_file("linear")), "--backends", "cpu", "--batch", "2", *QUICK, "--json", "-"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["results"][0]["batch"] == 2


def test_a_zoo_model_is_exported_and_torch_is_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    result = run_cli(
        "bench", "linear", "--backends", "torch,cpu", "--batch", "1,8", *QUICK, "--json", str(out)
    )
    assert result.exit_code == 0, result.stderr
    assert "vs torch" in result.stdout
    data = json.loads(out.read_text())
    assert data["exporter"] == "dynamo"
    rows = {(r["backend"], r["batch"]): r for r in data["results"]}
    assert set(rows) == {("torch", 1), ("torch", 8), ("cpu", 1), ("cpu", 8)}
    assert rows[("torch", 8)]["speedup_vs_torch"] == 1.0
    assert rows[("cpu", 8)]["speedup_vs_torch"] > 0


def test_a_time_budget_cuts_warmup(zoo_file) -> None:
    result = run_cli(
        "bench",
        str(zoo_file("combinednn")),
        "--backends",
        "reference",
        "--batch",
        "8",
        "--warmup",
        "1000",
        "--seconds",
        "0.2",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["results"]
    assert row["warmup"] < 1000 and row["iterations"] >= 1


def test_a_plot_is_written(zoo_file, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    result = run_cli(
        "bench", str(zoo_file("linear")), "--backends", "cpu", "--batch", "1,4", *QUICK,
        "--plot", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(
    zoo_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = run_cli(
        "bench", str(zoo_file("linear")), "--backends", "cpu", "--plot", str(tmp_path / "p.png")
    )
    assert_one_line_error(result, "pip install matplotlib", "pip install 'nnkit-onnx[plot]'")


def test_plot_to_a_format_matplotlib_lacks(zoo_file, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = run_cli(
        "bench", str(zoo_file("linear")), "--backends", "cpu", "--plot", str(tmp_path / "p.xyz")
    )
    assert_one_line_error(result, "p.xyz", ".png")


def test_unknown_backend(zoo_file) -> None:
    result = run_cli("bench", str(zoo_file("linear")), "--backends", "cpu,onnx")
    assert_one_line_error(result, "'onnx'", "openvino")


def test_a_backend_that_cannot_run_here() -> None:
    if probe("cuda"):
        pytest.skip("cuda runs on this machine")
    result = run_cli("bench", "linear", "--backends", "cpu,cuda", "--batch", "1")
    assert_one_line_error(result, "cuda")


def test_torch_needs_a_pytorch_model(zoo_file) -> None:
    result = run_cli("bench", str(zoo_file("linear")), "--backends", "torch")
    assert_one_line_error(result, "'torch'", "ONNX file")


def test_a_batch_the_model_cannot_take(fixed_batch_file: Path) -> None:
    ok = run_cli("bench", str(fixed_batch_file), "--backends", "cpu", "--batch", "1", *QUICK)
    assert ok.exit_code == 0, ok.stderr
    result = run_cli("bench", str(fixed_batch_file), "--backends", "cpu", "--batch", "1,8")
    assert_one_line_error(result, "batch 8", "fixed batch dim of 1")


@pytest.mark.parametrize("batch", ["0", "a", "1,1", ","])
def test_bad_batch_lists(zoo_file, batch: str) -> None:
    result = run_cli("bench", str(zoo_file("linear")), "--backends", "cpu", "--batch", batch)
    assert_one_line_error(result, "--batch")


def test_input_specs_belong_to_pytorch_models(zoo_file) -> None:
    result = run_cli("bench", str(zoo_file("linear")), "--backends", "cpu", "--input", "x:2x10")
    assert_one_line_error(result, "--input")


def test_a_missing_file() -> None:
    result = run_cli("bench", "no/such/model.onnx", "--backends", "cpu")
    assert_one_line_error(result, "does not exist")


def test_an_onnx_file_is_benched_without_importing_torch(zoo_file) -> None:
    code = (
        "import sys\n"
        "from nnkit.cli import cli\n"
        f"cli.main(['bench', {str(zoo_file('linear'))!r}, '--batch', '1', '--warmup', '0', "
        "'--seconds', '0.05'], standalone_mode=False)\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout
    assert "cpu" in out.stdout  # the default backends ran
