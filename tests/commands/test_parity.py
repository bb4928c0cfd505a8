"""``nnkit parity`` on the command line: exit codes, reports, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._faults import nudge_weight, unknown_op
from tests.conftest import assert_one_line_error, run_cli, run_nnkit

ZooFile = Callable[[str, str], Path]


def test_an_untouched_file_passes_and_a_nudged_one_fails_with_a_junit_failure(
    zoo_file: ZooFile, tmp_path: Path
) -> None:
    good = zoo_file("combinednn", "dynamo")
    ok = run_cli(
        "parity",
        "--onnx",
        str(good),
        "--backends",
        "cpu,openvino",
        "--junit",
        str(tmp_path / "ok.xml"),
    )
    assert ok.exit_code == 0, ok.output
    assert ET.parse(tmp_path / "ok.xml").getroot().get("failures") == "0"
    bad = nudge_weight(good, tmp_path / "nudged.onnx")
    junit = tmp_path / "bad.xml"
    result = run_cli(
        "parity", "combinednn", "--onnx", str(bad), "--backends", "cpu", "--junit", str(junit)
    )
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.stdout and "FAIL:" in result.stdout
    failure = ET.parse(junit).getroot().find(".//testcase/failure")
    assert failure is not None and "max_abs_diff=" in failure.get("message")
    assert "parity [1/1] combinednn / dynamo / cpu: MISMATCH" in result.stderr


def test_reports_are_written_and_json_keys_are_stable(zoo_file: ZooFile, tmp_path: Path) -> None:
    files = {k: tmp_path / f"parity.{k}" for k in ("json", "md", "xml")}
    result = run_cli(
        "parity",
        "relu",
        "--exporters",
        "torchscript",
        "--backends",
        "cpu,tract",
        "--json",
        str(files["json"]),
        "--markdown",
        str(files["md"]),
        "--junit",
        str(files["xml"]),
        "--artifacts",
        str(tmp_path / "art"),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(files["json"].read_text())
    assert data["summary"]["pass"] == data["summary"]["total"] == 2 * 3
    assert {r["backend"] for r in data["results"]} == {"cpu", "tract"}
    assert files["md"].read_text().startswith("## nnkit parity: ✅ PASS")
    assert ET.parse(files["xml"]).getroot().get("tests") == "2"
    assert (tmp_path / "art" / "relu.torchscript.onnx").is_file()
    assert not list(tmp_path.glob(".*.tmp")), "reports are written atomically"


def test_unsupported_fails_only_with_strict(zoo_file: ZooFile, tmp_path: Path) -> None:
    broken = unknown_op(zoo_file("linear", "torchscript"), tmp_path / "unknown.onnx")
    args = ("parity", "linear", "--onnx", str(broken), "--backends", "cpu")
    relaxed = run_cli(*args)
    assert relaxed.exit_code == 0 and "unsupported" in relaxed.stdout
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 1 and "FAIL:" in strict.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--backends", "nope"), ("unknown backend 'nope'", "cpu")),
        (("--backends", "cuda"), ("cuda", "CUDAExecutionProvider did not load")),
        (("--backends", "torch"), ("reference",)),
        (("--exporters", "onnxscript"), ("unknown exporter 'onnxscript'",)),
        (("--input", "x:batch"), ("--input", "bad dimension 'batch'")),
    ],
)
def test_bad_requests_exit_2_with_one_line(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_one_line_error(run_cli("parity", "linear", *args), *needles)


def test_unknown_model_and_onnx_misuse_exit_2(zoo_file: ZooFile) -> None:
    assert_one_line_error(run_cli("parity", "nope", "--backends", "cpu"), "unknown model 'nope'")
    onnx = str(zoo_file("linear", "dynamo"))
    assert_one_line_error(
        run_cli("parity", "linear", "--onnx", onnx, "--exporters", "dynamo"), "--exporters"
    )
    assert_one_line_error(run_cli("parity", "--onnx", "missing.onnx"), "does not exist")


def test_help_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from nnkit.cli import cli\n"
        "r = CliRunner().invoke(cli, ['parity', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert '--backends' in r.output and '--strict' in r.output\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tract') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_full_default_matrix_passes_here(tmp_path: Path) -> None:
    """Every zoo model x both exporters x every backend here: the CI gate itself."""
    report = tmp_path / "parity.json"
    result = run_cli("parity", "--json", str(report))
    data = json.loads(report.read_text())
    assert result.exit_code == 0, result.stdout
    assert data["summary"]["mismatch"] == data["summary"]["error"] == 0
    assert set(data["request"]["models"]) >= {"linear", "lstm", "combinednn"}
    assert data["request"]["exporters"] == ["dynamo", "torchscript"]
    assert "torch" not in data["request"]["backends"] and "cpu" in data["request"]["backends"]


def test_a_users_model_exported_earlier_passes_against_a_fresh_build(tmp_path):
    # The CI use: the artifact was exported in another process; the model is built again.
    # Its weights are randomly initialised, and nnkit builds every model under one seed.
    src = tmp_path / "net.py"
    src.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))\n"
    )
    onnx_file = tmp_path / "user.onnx"
    exported = run_nnkit("export", f"{src}:make", "-o", str(onnx_file), "--input", "x:batch=2x6")
    assert exported.returncode == 0, exported.stderr
    result = run_cli("parity", f"{src}:make", "--onnx", str(onnx_file), "--backends", "cpu")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "PASS: 3 results: 3 pass" in result.stdout
