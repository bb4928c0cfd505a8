"""``nnkit.testing.assert_parity``: a pytest assertion that carries the numbers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nnkit.errors import NnkitError
from nnkit.testing import assert_parity
from tests._faults import nudge_weight, scale_outputs
from tests.conftest import unavailable


def test_parity_that_holds_returns_the_report(user_model_file: Path) -> None:
    report = assert_parity(
        f"{user_model_file}:make",
        inputs=["x:batch=2x6"],
        exporters=["torchscript"],
        backends=["cpu", "reference"],
    )
    assert report and report.summary()["pass"] == 2 * 3


def test_a_broken_file_raises_assertion_error_with_the_numbers(
    zoo_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    bad = nudge_weight(zoo_file("linear", "dynamo"), tmp_path / "nudged.onnx")
    with pytest.raises(AssertionError) as info:
        assert_parity("linear", onnx=bad, backends=["cpu"])
    text = str(info.value)
    assert "parity failed for 'linear'" in text
    assert "max_abs_diff=" in text and "would pass with atol>=" in text
    # A tolerance wide enough makes it pass: the numbers are honest.
    assert assert_parity("linear", onnx=bad, backends=["cpu"], atol=0.5)


def test_a_request_that_cannot_run_is_not_an_assertion() -> None:
    unavailable("cuda")
    with pytest.raises(NnkitError, match="cuda"):
        assert_parity("linear", backends=["cuda"])


def test_compare_rules_and_tolerances_go_through_and_bad_ones_raise(
    zoo_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    doubled = scale_outputs(zoo_file("linear", "dynamo"), tmp_path / "doubled.onnx", factor=2.0)
    with pytest.raises(AssertionError, match="relative error norm"):
        assert_parity("linear", onnx=doubled, backends=["cpu"])
    report = assert_parity("linear", onnx=doubled, backends=["cpu"], compare={"y": "cosine"})
    assert {o.mode for r in report.results for o in r.outputs} == {"cosine"}
    with pytest.raises(NnkitError, match="atol must be a finite number >= 0, got nan"):
        assert_parity("linear", onnx=doubled, backends=["cpu"], atol=float("nan"))
    with pytest.raises(NnkitError, match="which no model has"):
        assert_parity("linear", onnx=doubled, backends=["cpu"], compare={"logits": "exact"})
