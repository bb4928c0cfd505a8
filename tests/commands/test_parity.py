"""``nnkit parity`` on the command line: exit codes, reports, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._faults import (
    TINY_INPUT,
    TINY_MODEL,
    nudge_weight,
    reverse_last_axis,
    scale_outputs,
    unknown_op,
)
from tests.conftest import assert_one_line_error, run_cli, run_nnkit, unavailable

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
    assert "parity [1/1] combinednn / file / cpu: MISMATCH" in result.stderr  # the --onnx file


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
        (("--backends", "torch"), ("reference",)),
        (("--exporters", "onnxscript"), ("unknown exporter 'onnxscript'",)),
        (("--input", "x:batch"), ("--input", "bad dimension 'batch'")),
    ],
)
def test_bad_requests_exit_2_with_one_line(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_one_line_error(run_cli("parity", "linear", *args), *needles)


def test_a_backend_that_cannot_run_here_exits_2_with_the_probes_reason() -> None:
    reason = unavailable("cuda")
    err = assert_one_line_error(
        run_cli("parity", "linear", "--backends", "cuda"),
        "cuda",
        "CUDAExecutionProvider did not load",
    )
    assert err == f"Error: {reason}"


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


def test_a_zero_output_copy_of_a_tiny_model_exits_1_and_the_true_file_0(tmp_path: Path) -> None:
    """The false pass of random-init mobilenet (logits ~2e-9): a file whose outputs are
    all zeros passed the old absolute atol of 1e-5."""
    (tmp_path / "tiny.py").write_text(TINY_MODEL)
    model = f"{tmp_path / 'tiny.py'}:Tiny"
    good = tmp_path / "tiny.onnx"
    exported = run_nnkit("export", model, "-o", str(good), "--input", TINY_INPUT)
    assert exported.returncode == 0, exported.stderr
    zero = scale_outputs(good, tmp_path / "zero.onnx", factor=0.0)
    args = ("parity", model, "--input", TINY_INPUT, "--backends", "cpu,openvino")
    ok = run_cli(*args, "--onnx", str(good), "--json", str(tmp_path / "ok.json"))
    assert ok.exit_code == 0, ok.stdout
    out = json.loads((tmp_path / "ok.json").read_text())["results"][0]["outputs"][0]
    assert out["passed"] and out["ref_max_abs"] < 1e-8 and out["relative_atol"] == 1e-5
    assert out["warnings"] == [] and 0 < out["error_ratio"] < 1
    bad = run_cli(*args, "--onnx", str(zero))
    assert bad.exit_code == 1, bad.stdout
    assert "MISMATCH" in bad.stdout and "relative error norm 1 > 1e-05" in bad.stdout
    assert "max|got|=0 rms(got)=0" in bad.stdout
    # The old rule, asked for explicitly, passes it: with a warning that --strict fails.
    old = run_cli(*args, "--onnx", str(zero), "--atol", "1e-5", "--rtol", "1e-4")
    assert old.exit_code == 0 and "pass!" in old.stdout
    assert "an all-zero output would pass" in old.stdout
    strict = run_cli(*args, "--onnx", str(zero), "--atol", "1e-5", "--strict")
    assert strict.exit_code == 1 and "FAIL:" in strict.stdout


def test_compare_modes_on_the_command_line(zoo_file: ZooFile, tmp_path: Path) -> None:
    linear = zoo_file("linear", "torchscript")
    base = ("parity", "linear", "--backends", "cpu", "--onnx")
    reversed_ = str(reverse_last_axis(linear, tmp_path / "reversed.onnx"))
    assert run_cli(*base, reversed_).exit_code == 1
    assert run_cli(*base, reversed_, "--compare", "y:set").exit_code == 0
    doubled = str(scale_outputs(linear, tmp_path / "doubled.onnx", factor=2.0))
    assert run_cli(*base, doubled, "--compare", "y:cosine:min=0.9999").exit_code == 0
    assert run_cli(*base, doubled, "--compare", "y:set").exit_code == 1
    nudged = str(nudge_weight(linear, tmp_path / "nudged.onnx"))
    assert run_cli(*base, nudged).exit_code == 1
    loose = run_cli(
        *base, nudged, "--compare", "y:allclose:atol=0.5,rtol=0", "--json", str(tmp_path / "r.json")
    )
    assert loose.exit_code == 0, loose.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["request"]["compare"] == {"y": "allclose:atol=0.5,rtol=0"}
    out = data["results"][0]["outputs"][0]
    assert (out["mode"], out["atol"], out["rtol"], out["relative_atol"]) == (
        "allclose",
        0.5,
        0,
        None,
    )
    assert out["rule"] == "|got-ref| <= 0.5 + 0*|ref|"
    exact = run_cli(*base, str(linear), "--compare", "y:exact")
    assert exact.exit_code == 1 and "elements differ (exact)" in exact.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--compare", "logits:cosine"), ("'logits', which no model has", "linear: y")),
        (("--compare", "y:fuzzy"), ("--compare", "allclose, exact, cosine, set")),
        (("--compare", "y"), ("--compare", "expected NAME:MODE")),
        (("--compare", "y:allclose:atol=nan"), ("--compare", "atol must be a finite number")),
        (("--compare", "y:exact", "--compare", "y:set"), ("'y' is named twice",)),
        (("--atol", "nan"), ("atol",)),
        (("--rtol", "inf"), ("rtol",)),
        (("--atol", "-1"), ("atol",)),
    ],
)
def test_bad_tolerances_and_rules_exit_2_with_one_line(
    args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    assert_one_line_error(run_cli("parity", "linear", "--backends", "cpu", *args), *needles)


def test_warnings_fail_with_strict_and_verbose_shows_every_cells_numbers(tmp_path: Path) -> None:
    model = tmp_path / "const.py"
    model.write_text(
        "import torch\n"
        "class Constant(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 0.0 + 1.0 / 91.0\n"
    )
    args = (
        "parity",
        f"{model}:Constant",
        "--input",
        "x:batch=2x300",
        "--exporters",
        "torchscript",
        "--backends",
        "cpu",
    )
    relaxed = run_cli(*args, "--json", str(tmp_path / "r.json"))
    assert relaxed.exit_code == 0, relaxed.stdout
    assert "pass!" in relaxed.stdout and "the reference is constant" in relaxed.stdout
    assert "details (cells with a warning" in relaxed.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["warned"] == 3 and data["cells"][0]["warnings"]
    assert data["results"][0]["warnings"][0].startswith(
        "output 'output': the reference is constant"
    )
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 1 and "FAIL:" in strict.stdout
    quiet = run_cli("parity", "relu", "--exporters", "torchscript", "--backends", "cpu")
    assert quiet.exit_code == 0 and "details" not in quiet.stdout
    verbose = run_cli(
        "parity", "relu", "--exporters", "torchscript", "--backends", "cpu", "--verbose"
    )
    assert verbose.exit_code == 0 and "details (every cell):" in verbose.stdout
    assert verbose.stdout.count("'y' pass (allclose): max_abs_diff=0") == 3
    assert "max|ref|=" in verbose.stdout and "rms(got)=" in verbose.stdout
