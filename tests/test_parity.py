"""The parity matrix on real runtimes: planted faults are caught, sound files pass."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from nnkit.errors import BackendUnavailableError, NnkitError
from nnkit.parity import ParityReport, run_parity, shape_cases
from nnkit.spec import Dim, TensorSpec, parse_spec
from tests._faults import (
    TINY_INPUT,
    TINY_MODEL,
    fix_output_dim,
    negate_before,
    nudge_weight,
    reverse_last_axis,
    scale_outputs,
    unknown_op,
)
from tests.conftest import unavailable

ZooFile = Callable[[str, str], Path]

MODELS = """\
import torch
from torch import nn

class Baked(nn.Module):
    # The tracer turns float(x.sum()) into a constant of the example input.
    def forward(self, x):
        return x * float(x.sum())

class BakedBatch(nn.Module):
    # int(x.shape[0]): the tracer bakes the example's batch (2) into a Reshape.
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, x):
        return self.fc(x).reshape(int(x.shape[0]), 4, 3)

class LogZero(nn.Module):
    # NaN where x < 0, else 0: NaNs in input-dependent places.
    def forward(self, x):
        return torch.log(x) * 0.0
"""


@pytest.fixture(scope="module")
def user_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "faulty.py"
    path.write_text(MODELS)
    return path


def statuses(report: ParityReport) -> set[str]:
    return {r.status for r in report.results}


def test_shape_cases_change_every_dynamic_dim_with_seeds_of_their_own() -> None:
    cases = shape_cases([TensorSpec("x", (Dim("batch", 2), Dim("seq", 7), 10))])
    assert [dict(c.sizes) for c in cases] == [
        {"batch": 2, "seq": 7},
        {"batch": 1, "seq": 1},
        {"batch": 5, "seq": 13},
    ]
    assert len({c.seed for c in cases}) == 3 and 0 not in {c.seed for c in cases}
    static = shape_cases([TensorSpec("x", (3, 4))])
    assert len(static) == 2 and static[0].seed != static[1].seed


def test_a_sound_export_passes_every_case_with_numbers(zoo_file: ZooFile) -> None:
    report = run_parity(["lstm"], onnx=zoo_file("lstm", "torchscript"), backends=["cpu"])
    assert report and report.exit_code == 0
    assert [r.case for r in report.results] == ["batch=2,seq=7", "batch=1,seq=1", "batch=5,seq=13"]
    assert report.artifacts == ["file"]  # the column is the file under test ...
    for result in report.results:
        assert result.exporter == "torchscript"  # ... and its metadata says who made it
        assert result.artifact == "file"
        assert [o.name for o in result.outputs] == ["output", "h_n", "c_n"]
        assert all(o.max_abs_diff < 1e-4 for o in result.outputs)
    assert report.results[2].outputs[0].ref_shape == (5, 13, 20)


def test_a_nudged_weight_is_a_mismatch_and_the_untouched_file_passes(
    zoo_file: ZooFile, tmp_path: Path
) -> None:
    good = zoo_file("linear", "dynamo")
    bad = nudge_weight(good, tmp_path / "nudged.onnx", delta=0.05)
    backends = ["cpu", "reference"]
    assert run_parity(["linear"], onnx=good, backends=backends)
    report = run_parity(["linear"], onnx=bad, backends=backends)
    assert not report and report.exit_code == 1
    assert statuses(report) == {"mismatch"}
    worst = max(o.max_abs_diff for r in report.results for o in r.outputs)
    assert 0.01 < worst < 1
    failed = report.results[0].outputs[0]
    assert failed.min_atol is not None and failed.min_atol >= failed.max_abs_diff * 0.99


def test_a_value_the_tracer_baked_into_a_constant_fails_parity(user_models: Path) -> None:
    report = run_parity(
        [f"{user_models}:Baked"],
        inputs=[parse_spec("x:batch=2x4")],
        exporters=["torchscript"],
        backends=["cpu"],
    )
    assert statuses(report) == {"mismatch"}
    assert report.exit_code == 1


def test_a_file_that_froze_the_batch_fails_on_every_runtime_with_the_reason(
    user_models: Path,
) -> None:
    # The file declares [batch, 12] -> [batch, 4, 3] and passes the checker, but runs at
    # batch 2 only: that is the file's failure, never "unsupported".
    report = run_parity(
        [f"{user_models}:BakedBatch"],
        inputs=[parse_spec("x:batch=2x12")],
        exporters=["torchscript"],
        backends=["cpu", "openvino", "reference"],
    )
    assert report.exit_code == 1
    by_case = {
        r.case: {x.status for x in report.results if x.case == r.case} for r in report.results
    }
    assert by_case == {"batch=2": {"pass"}, "batch=1": {"mismatch"}, "batch=5": {"mismatch"}}
    failed = next(r for r in report.results if r.case == "batch=1")
    assert "does not run at batch=1 on any runtime (cpu, openvino, reference)" in failed.message
    assert "froze a dynamic dim" in failed.message
    # Only the cases that really ran are named as running, on every result.
    for r in report.results:
        assert r.status == "pass" or "though it runs at batch=2:" in r.message
    # The tracer said so while exporting: a note on the export, not hidden.
    (record,) = report.exports
    assert any("TracerWarning" in n and "faulty.py" in n for n in record.notes)


def test_one_runtime_that_runs_a_case_but_not_another_is_a_mismatch(user_models: Path) -> None:
    report = run_parity(
        [f"{user_models}:BakedBatch"],
        inputs=[parse_spec("x:batch=2x12")],
        exporters=["torchscript"],
        backends=["cpu"],
    )
    assert statuses(report) == {"pass", "mismatch"}
    failed = next(r for r in report.results if r.case == "batch=5")
    assert "does not run at batch=5 on cpu, though it runs at batch=2" in failed.message


def test_a_file_no_runtime_can_load_fails(zoo_file, tmp_path: Path) -> None:
    # One runtime that cannot load a file is that runtime's limit (unsupported, below);
    # every runtime refusing it says the file is wrong.
    broken = unknown_op(zoo_file("relu", "torchscript"), tmp_path / "unknown.onnx")
    every = run_parity(["relu"], onnx=broken, backends=["cpu", "reference"])
    assert statuses(every) == {"mismatch"} and every.exit_code == 1
    assert "does not run at" in every.results[0].message
    assert "on any runtime (cpu, reference)" in every.results[0].message


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_nan_in_the_same_places_passes_in_other_places_fails(
    user_models: Path, tmp_path: Path
) -> None:
    model, inputs = f"{user_models}:LogZero", [parse_spec("x:batch=2x4")]
    kept = tmp_path / "logzero"
    same = run_parity(
        [model],
        inputs=inputs,
        exporters=["torchscript"],
        backends=["cpu", "reference"],
        artifacts=kept,
    )
    assert same, "NaNs in the same places must pass"
    assert any(o.nonfinite for r in same.results for o in r.outputs)
    exported = next(kept.glob("*.torchscript.onnx"))
    moved = negate_before(exported, tmp_path / "moved.onnx", op_type="Log")
    report = run_parity([model], inputs=inputs, onnx=moved, backends=["cpu", "reference"])
    assert statuses(report) == {"mismatch"}
    assert all(r.outputs[0].nonfinite_mismatches > 0 for r in report.results)
    assert all(r.outputs[0].min_atol is None for r in report.results)


def test_a_runtime_that_cannot_load_the_file_is_unsupported_and_fails_only_strict(
    zoo_file: ZooFile, tmp_path: Path
) -> None:
    broken = unknown_op(zoo_file("linear", "dynamo"), tmp_path / "unknown.onnx")
    report = run_parity(["linear"], onnx=broken, backends=["cpu"])
    assert statuses(report) == {"unsupported"}
    assert report and report.exit_code == 0
    assert "not a registered function/op" in report.results[0].message
    strict = run_parity(["linear"], onnx=broken, backends=["cpu"], strict=True)
    assert not strict and strict.exit_code == 1


def test_a_declared_fixed_dim_that_the_runtime_does_not_keep_is_a_note(
    zoo_file: ZooFile, tmp_path: Path
) -> None:
    stale = fix_output_dim(
        zoo_file("lstm", "dynamo"), tmp_path / "stale.onnx", output="output", axis=1, size=7
    )
    report = run_parity(["lstm"], onnx=stale, backends=["cpu"])
    assert report, "a wrong declaration alone is not a failure"
    by_case = {r.case: r.notes for r in report.results}
    assert by_case["batch=2,seq=7"] == []
    assert by_case["batch=5,seq=13"] == [
        "output 'output' is declared [batch, 7, 20] in the file, the runtime gave [5, 13, 20]"
    ]


def test_an_export_that_fails_is_an_error_and_the_matrix_goes_on(tmp_path: Path) -> None:
    model = tmp_path / "branchy.py"
    model.write_text(
        "import torch\n"
        "class Branchy(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:\n"
        "            return x * 2\n"
        "        return x - 1\n"
    )
    report = run_parity([f"{model}:Branchy"], inputs=[parse_spec("x:batch=2x3")], backends=["cpu"])
    by_exporter = {
        e: {r.status for r in report.results if r.exporter == e} for e in report.exporters
    }
    assert by_exporter["dynamo"] == {"error"}  # data-dependent control flow: no export
    assert "export failed: the dynamo exporter failed" in report.results[0].message
    assert by_exporter["torchscript"] == {"mismatch"}  # the tracer kept one branch
    assert report.exit_code == 1


def test_a_backend_that_cannot_run_here_is_refused_before_any_work() -> None:
    reason = unavailable("cuda")
    with pytest.raises(BackendUnavailableError, match="cuda") as info:
        run_parity(["linear"], backends=["cuda"])
    assert info.value.format_message() == reason


def test_the_request_is_checked_before_any_work() -> None:
    with pytest.raises(NnkitError, match="unknown backend 'nope'"):
        run_parity(["linear"], backends=["nope"])
    with pytest.raises(NnkitError, match="reference every backend is compared with"):
        run_parity(["linear"], backends=["torch"])
    with pytest.raises(NnkitError, match="unknown exporter 'onnxscript'"):
        run_parity(["linear"], exporters=["onnxscript"], backends=["cpu"])
    with pytest.raises(NnkitError, match="unknown model 'nope'"):
        run_parity(["nope"], backends=["cpu"])


DEGENERATE = """\
import torch
from torch import nn

class Constant(nn.Module):
    # Every score 1/91, as a random-init detector's: any order of them is as good.
    def forward(self, x):
        return x * 0.0 + 1.0 / 91.0

class Ties(nn.Module):
    def forward(self, x):
        return torch.round(x * 2.0) / 2.0 + 0.25
"""


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model whose outputs are about 1e-9, exported, and a copy whose outputs are 0;
    ``model`` is its reference (named, never read from the file's metadata)."""
    from nnkit.export import export_model
    from nnkit.resolve import resolve_model

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.py").write_text(TINY_MODEL)
    model = resolve_model(f"{folder / 'tiny.py'}:Tiny", inputs=[parse_spec(TINY_INPUT)])
    files = {"model": Path(model.name)}
    for exporter in ("torchscript", "dynamo"):
        good = folder / f"tiny.{exporter}.onnx"
        export_model(model, good, exporter=exporter)
        files[exporter] = good
        files[f"zero-{exporter}"] = scale_outputs(
            good, folder / f"zero.{exporter}.onnx", factor=0.0
        )
    return files


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_tiny_models_file_with_zero_outputs_fails_and_the_true_file_passes(
    tiny_files: dict[str, Path], exporter: str
) -> None:
    run = functools.partial(
        run_parity,
        [str(tiny_files["model"])],
        inputs=[parse_spec(TINY_INPUT)],
        backends=["cpu", "openvino", "tract", "reference"],
    )
    good = run(onnx=tiny_files[exporter])
    assert good, render(good)
    scale = max(o.ref_max_abs for r in good.results for o in r.outputs)
    assert 1e-11 < scale < 1e-8, "the outputs are tiny: the old absolute atol 1e-5 passed 0"
    assert all(0 < o.error_ratio < 0.5 for r in good.results for o in r.outputs)
    zero = run(onnx=tiny_files[f"zero-{exporter}"])
    assert statuses(zero) == {"mismatch"} and zero.exit_code == 1
    for result in zero.results:
        out = result.outputs[0]
        assert out.got_max_abs == 0 and out.rel_err_norm == 1
        assert "relative error norm 1 > 1e-05" in result.message


def render(report: ParityReport) -> str:
    from nnkit.report import render_console

    return render_console(report)


def test_compare_modes_judge_planted_files_by_name(zoo_file: ZooFile, tmp_path: Path) -> None:
    linear = zoo_file("linear", "torchscript")
    doubled = scale_outputs(linear, tmp_path / "doubled.onnx", factor=2.0)
    reversed_ = reverse_last_axis(linear, tmp_path / "reversed.onnx")
    run = functools.partial(run_parity, ["linear"], backends=["cpu"])
    assert not run(onnx=doubled)
    assert run(onnx=doubled, compare={"y": "cosine"}), "cosine ignores the scale"
    assert not run(onnx=zoo_file("linear", "torchscript"), compare={"y": "exact"})
    assert not run(onnx=reversed_)
    by_set = run(onnx=reversed_, compare={"y": "set"})
    assert by_set and by_set.compare == {"y": "set"}
    assert {o.mode for r in by_set.results for o in r.outputs} == {"set"}
    assert not run(onnx=doubled, compare={"y": "set"})
    relu = run_parity(["relu"], onnx=zoo_file("relu", "torchscript"), backends=["cpu"])
    assert relu and run_parity(
        ["relu"], onnx=zoo_file("relu", "torchscript"), backends=["cpu"], compare={"y": "exact"}
    )


def test_warnings_reach_the_results_and_fail_only_strict(tmp_path: Path) -> None:
    path = tmp_path / "degenerate.py"
    path.write_text(DEGENERATE)
    args = {"inputs": [parse_spec("x:batch=2x300")], "exporters": ["torchscript"]}
    for name, needle in (("Constant", "constant"), ("Ties", "full of ties")):
        report = run_parity([f"{path}:{name}"], backends=["cpu"], **args)
        assert report and report.exit_code == 0 and report.warned == 3
        assert all(needle in r.warnings[0] for r in report.results)
        assert report.results[0].warnings[0].startswith("output 'output': the reference is")
        cell = report.cells()[0]
        assert cell and len(cell.warnings) == 1, "a cell says each warning once"
        strict = run_parity([f"{path}:{name}"], backends=["cpu"], strict=True, **args)
        assert not strict and strict.exit_code == 1
    ordered = run_parity(
        [f"{path}:Ties"], backends=["cpu"], compare={"output": "set"}, strict=True, **args
    )
    assert ordered and ordered.warned == 0, "set mode does not care about ties"


def test_a_bad_tolerance_or_rule_is_refused_before_any_work() -> None:
    for kwargs, needle in (
        ({"atol": float("nan")}, "atol must be a finite number >= 0, got nan"),
        ({"rtol": float("inf")}, "rtol must be a finite number >= 0, got inf"),
        ({"atol": -1.0}, "got -1.0"),
        ({"compare": {"y": "cosine:min=1.5"}}, "cosine min must be in (0, 1]"),
        ({"compare": {"y": "fuzzy"}}, "valid modes are allclose, exact, cosine, set"),
        (
            {"compare": {"logits": "cosine"}},
            "'logits', which no model has; the outputs are linear: y",
        ),
    ):
        with pytest.raises(NnkitError, match=re.escape(needle)):
            run_parity(["linear"], backends=["cpu"], **kwargs)
