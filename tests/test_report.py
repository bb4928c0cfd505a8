"""The reports of a real parity run: console grid, JSON keys, Markdown, JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from nnkit.parity import ParityReport, ProgressEvent, run_parity
from nnkit.report import (
    Progress,
    render_console,
    to_json,
    to_junit,
    to_markdown,
    write_json,
    write_junit,
    write_markdown,
)
from nnkit.spec import parse_spec
from tests._faults import nudge_weight, unknown_op


@pytest.fixture(scope="module")
def mixed(
    zoo_file: Callable[[str, str], Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ParityReport, ParityReport, ParityReport]:
    """A pass, a mismatch (a nudged weight) and an unsupported file (an unknown op)."""
    tmp = tmp_path_factory.mktemp("report")
    good = zoo_file("linear", "torchscript")
    backends = ["cpu", "reference"]
    return (
        run_parity(["linear"], onnx=good, backends=backends),
        run_parity(["linear"], onnx=nudge_weight(good, tmp / "nudged.onnx"), backends=backends),
        run_parity(["linear"], onnx=unknown_op(good, tmp / "unknown.onnx"), backends=["cpu"]),
    )


def test_console_grid_shows_each_cell_and_the_numbers_of_failures(mixed) -> None:
    good, bad, _ = mixed
    text = render_console(good)
    # The column is the --onnx file, with who made it per its metadata.
    assert "artifact: file (" in text and "made by torchscript per its metadata)" in text
    assert "linear  pass  pass" in text
    assert text.rstrip().splitlines()[-1].startswith("PASS: 6 results: 6 pass, 0 mismatch")
    text = render_console(bad)
    assert "linear  MISMATCH  MISMATCH" in text
    assert "max_abs_diff=" in text and "would pass with atol>=" in text
    assert text.rstrip().splitlines()[-1].startswith("FAIL: 6 results: 0 pass, 6 mismatch")


def test_json_report_has_the_documented_keys(mixed, tmp_path: Path) -> None:
    _, bad, _ = mixed
    path = tmp_path / "parity.json"
    write_json(path, bad)
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(to_json(bad)))
    assert {"schema", "verdict", "exit_code", "summary", "results", "environment"} <= set(data)
    assert data["verdict"] == "fail" and data["exit_code"] == 1
    assert data["summary"] == {
        "pass": 0,
        "mismatch": 6,
        "unsupported": 0,
        "timeout": 0,
        "error": 0,
        "total": 6,
    }
    result = data["results"][0]
    assert {"model", "exporter", "backend", "case", "status", "shapes", "outputs"} <= set(result)
    assert (result["model"], result["exporter"], result["status"]) == (
        "linear",
        "torchscript",
        "mismatch",
    )
    out = result["outputs"][0]
    assert {"name", "max_abs_diff", "max_rel_diff", "mismatches", "min_atol", "min_rtol"} <= set(
        out
    )
    assert out["max_abs_diff"] > 0.01
    env = data["environment"]
    assert env["versions"]["onnx"] and env["backends"]["cpu"] and env["machine"]["architecture"]


def test_markdown_fits_a_job_summary(mixed, tmp_path: Path) -> None:
    good, bad, unsupported = mixed
    path = tmp_path / "summary.md"
    write_markdown(path, bad)
    text = path.read_text()
    assert text.startswith("## nnkit parity: ❌ FAIL")
    assert "| model | cpu | reference |" in text
    assert "| linear | ❌ mismatch | ❌ mismatch |" in text
    assert "<summary>Problems</summary>" in text and "max_abs_diff=" in text
    assert to_markdown(good).startswith("## nnkit parity: ✅ PASS")
    assert "⚠️ unsupported" in to_markdown(unsupported)


def test_junit_parses_with_one_testcase_per_cell_and_failures_carry_numbers(
    mixed, tmp_path: Path
) -> None:
    good, bad, unsupported = mixed
    path = tmp_path / "parity.xml"
    write_junit(path, bad)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "2", "0")
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [
        "linear[file-cpu]",
        "linear[file-reference]",
    ]
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "mismatch"
    assert "max_abs_diff=" in failure.get("message") and "would pass with" in failure.text
    assert ET.fromstring(to_junit(good)).get("failures") == "0"
    skipped = ET.fromstring(to_junit(unsupported)).find(".//testcase/skipped")
    assert skipped is not None and "unsupported" in skipped.get("message")
    unsupported.strict = True
    try:
        strict = ET.fromstring(to_junit(unsupported))
    finally:
        unsupported.strict = False
    assert strict.find(".//testcase/failure").get("type") == "unsupported"


def test_progress_is_one_line_per_cell_off_a_terminal(mixed) -> None:
    import io

    good, _, _ = mixed
    stream = io.StringIO()
    progress = Progress(stream, tty=False)
    cells = good.cells()
    for i, cell in enumerate(cells, 1):
        progress(ProgressEvent(i, len(cells), cell.model, cell.exporter, cell.backend))
        progress(ProgressEvent(i, len(cells), cell.model, cell.exporter, cell.backend, cell))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("parity [1/2] linear / torchscript / cpu: pass (3 cases")
    assert len(lines) == 2
    tty = io.StringIO()
    live = Progress(tty, tty=True)
    live(ProgressEvent(1, 2, "linear", "torchscript", "cpu"))
    live.finish()
    assert "\r" in tty.getvalue() and "\n" not in tty.getvalue()


@pytest.fixture(scope="module")
def warned(tmp_path_factory: pytest.TempPathFactory) -> ParityReport:
    """A pass whose reference is constant: every cell carries a warning."""
    model = tmp_path_factory.mktemp("warned") / "const.py"
    model.write_text(
        "import torch\n"
        "class Constant(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 0.0 + 1.0 / 91.0\n"
    )
    return run_parity(
        [f"{model}:Constant"],
        inputs=[parse_spec("x:batch=2x300")],
        exporters=["torchscript"],
        backends=["cpu", "reference"],
    )


def test_warnings_are_in_every_report_and_fail_only_strict(warned: ParityReport) -> None:
    assert warned and warned.warned == 6
    text = render_console(warned)
    assert "pass!  pass!" in text
    assert "warnings (not failures unless --strict; a cell with a warning is marked !):" in text
    assert text.count("the reference is constant (every value 0.010989)") == 2  # once a cell
    assert "details (cells with a warning; --verbose: every cell):" in text
    assert "6 with warnings" in text.rstrip().splitlines()[-1]
    data = to_json(warned)
    assert data["warned"] == 6 and data["verdict"] == "pass"
    assert all(c["warnings"] for c in data["cells"])
    out = data["results"][0]["outputs"][0]
    assert out["warnings"] and out["ref_rms"] == pytest.approx(1 / 91, rel=1e-6)
    assert "<summary>Warnings (not failures unless --strict)</summary>" in to_markdown(warned)
    junit = ET.fromstring(to_junit(warned))
    assert junit.get("failures") == "0"
    assert "warning: output 'output'" in junit.find(".//testcase/system-out").text
    warned.strict = True
    try:
        assert not warned and warned.exit_code == 1
        strict = ET.fromstring(to_junit(warned))
        assert "FAIL:" in render_console(warned)
        assert to_json(warned)["verdict"] == "fail"
    finally:
        warned.strict = False
    failure = strict.find(".//testcase/failure")
    assert strict.get("failures") == "2" and failure.get("type") == "warning"


def test_magnitudes_are_in_the_json_of_passing_results_and_verbose_console(mixed) -> None:
    good, bad, _ = mixed
    out = to_json(good)["results"][0]["outputs"][0]
    for key in ("ref_max_abs", "ref_rms", "got_max_abs", "got_rms", "cosine", "rel_err_norm"):
        assert isinstance(out[key], float), key
    assert out["mode"] == "allclose" and out["relative_atol"] == 1e-5
    assert out["norm_tol"] == 1e-5 and 0 <= out["error_ratio"] <= 1
    assert "details" not in render_console(good)
    verbose = render_console(good, verbose=True)
    assert "details (every cell):" in verbose and verbose.count("'y' pass (allclose)") == 6
    failing = render_console(bad)
    assert "max|ref|=" in failing and "rms(got)=" in failing


def test_one_reason_for_every_backend_is_said_once(zoo_file, tmp_path: Path) -> None:
    # An export that failed is one reason shared by every backend's cell.
    model = tmp_path / "branchy.py"
    model.write_text(
        "import torch\n"
        "class Branchy(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 2 if x.sum() > 0 else x - 1\n"
    )
    report = run_parity(
        [f"{model}:Branchy"],
        inputs=[parse_spec("x:batch=2x3")],
        exporters=["dynamo"],
        backends=["cpu", "reference"],
    )
    text = render_console(report)
    assert text.count("export failed") == 1
    assert "/ dynamo / cpu, reference: error" in text
