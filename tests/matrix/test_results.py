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


def test_a_localization_reads_back_from_the_json(report) -> None:
    from nnkit.localize import Localization, Repro, TracePoint

    data = json.loads(json.dumps(to_json(report)))
    assert all("localization" not in c for c in data["cells"])  # only localized cells
    found = Localization(
        "batch=2",
        "found",
        module="rnn",
        module_type="LSTM",
        onnx_nodes=["/rnn/LSTM"],
        op_types=["LSTM"],
        input_max_abs_diff=0.0,
        max_abs_diff=0.5,
        blame="export",
        agreeing_backends=["cpu", "reference"],
        repro=Repro("r.onnx", "i.npz", "e.npz", "nnkit infer r.onnx"),
        trace=[TracePoint("rnn[0]", "output", 0.5, False)],
    )
    data["cells"][0]["localization"] = found.to_dict()
    again = ParityReport.from_dict(data)
    assert again.cells()[0].localization == found
    assert to_json(again)["cells"][0]["localization"] == found.to_dict()
    assert "first divergence: rnn (LSTM) -> /rnn/LSTM [LSTM]" in render_console(again)


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


def test_a_localization_s_non_finite_numbers_are_null() -> None:
    from nnkit.localize import Localization, TracePoint

    found = Localization(
        "example",
        "found",
        max_abs_diff=float("inf"),
        input_max_abs_diff=float("nan"),
        trace=[TracePoint("act", "v", float("inf"), False)],
    )
    data = json.loads(json.dumps(found.to_dict(), allow_nan=False))
    assert data["max_abs_diff"] is None and data["input_max_abs_diff"] is None
    assert data["trace"][0]["max_abs_diff"] is None
