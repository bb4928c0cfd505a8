"""Results: the report reads back from its own JSON; a bug in a cell keeps its traceback."""

from __future__ import annotations

import json

import pytest

from nnkit.matrix import cell as cell_module
from nnkit.matrix.results import ParityReport
from nnkit.parity import run_parity
from nnkit.report import render_console, to_json


@pytest.fixture(scope="module")
def report(zoo_file) -> ParityReport:
    return run_parity(["lstm"], exporters=["torchscript"], backends=["cpu", "reference"])


def test_a_report_reads_back_from_its_json_unchanged(report) -> None:
    data = json.loads(json.dumps(to_json(report)))
    again = ParityReport.from_dict(data)
    assert json.loads(json.dumps(to_json(again))) == data
    assert render_console(again) == render_console(report)
    assert bool(again) == bool(report) and again.exit_code == report.exit_code


def test_cells_and_results_carry_their_artifact_and_stable_id(report) -> None:
    data = to_json(report)
    assert [c["id"] for c in data["cells"]] == [
        "lstm|torchscript|cpu",
        "lstm|torchscript|reference",
    ]
    assert {r["artifact"] for r in data["results"]} == {"torchscript"}
    assert data["plan"]["fingerprint"]


def test_a_bug_in_nnkit_is_an_error_result_with_its_traceback(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(cell_module, "compare_outputs", broken)
    report = run_parity(["relu"], exporters=["torchscript"], backends=["cpu"])
    assert {r.status for r in report.results} == {"error"}
    result = report.results[0]
    assert "internal error: ZeroDivisionError: planted (this is a bug in nnkit;" in result.message
    assert "traceback is in the JSON report" in result.message
    assert "Traceback" in result.traceback and "broken" in result.traceback
    assert to_json(report)["results"][0]["traceback"] == result.traceback
