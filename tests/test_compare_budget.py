"""Budgets: each variant judged by what its rewrite may change, never looser than the base
for rewrites that keep the math; garbage fails every budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnkit.compare import Tolerance, ToleranceError, compare_arrays, compare_outputs
from nnkit.compare.agreement import snr_db, top_k_agreement
from nnkit.compare.budget import (
    DEFAULT_BUDGETS,
    apply_budget,
    budget_tolerance,
    budgets,
    parse_budget,
)

RNG = np.random.default_rng(7)
#: Class scores with a clear winner per row.
LOGITS = RNG.standard_normal((64, 10)).astype(np.float32)
LOGITS[np.arange(64), RNG.integers(0, 10, 64)] += 4


def judge(variant: str, ref: np.ndarray, got: np.ndarray, **overrides: float):
    budget = budgets([(variant, overrides)] if overrides else [])[variant]
    reference = {"y": ref}
    compared = compare_outputs(
        reference, {"y": got}, tolerance=budget_tolerance(budget, Tolerance(), reference)
    )
    apply_budget(compared, variant, budget)
    return compared


def test_snr_and_top_k_metrics():
    assert snr_db(np.ones(4), np.ones(4)) == math.inf
    assert snr_db(np.array([1.0, 1.0]), np.array([1.1, 1.1])) == pytest.approx(20.0)
    swapped = LOGITS.copy()
    swapped[:32] = -swapped[:32]  # half the rows now pick another class
    top1, top5 = top_k_agreement(LOGITS, swapped)
    assert top1 == pytest.approx(0.5) and top5 is not None and top5 >= 0.5
    assert top_k_agreement(LOGITS[:, :4], LOGITS[:, :4]) == (1.0, None)  # no top-5 of 4
    assert top_k_agreement(LOGITS.reshape(-1), LOGITS.reshape(-1)) == (None, None)  # 1-D
    result = compare_arrays("y", LOGITS, LOGITS).to_dict()
    assert result["top1"] == 1.0 and result["top5"] == 1.0 and result["snr_db"] is None


def test_fp16_rounding_passes_fp16_and_fails_the_base_rule():
    got = LOGITS.astype(np.float16).astype(np.float32)
    assert judge("fp16", LOGITS, got)
    assert not compare_outputs({"y": LOGITS}, {"y": got})


@pytest.mark.parametrize("variant", ["fp16", "int8-dynamic", "int8-static"])
@pytest.mark.parametrize(
    "garbage",
    [
        lambda r: np.zeros_like(r),
        lambda r: np.full_like(r, float(r.mean())),
        lambda r: r[::-1].copy(),
        lambda r: RNG.standard_normal(r.shape).astype(np.float32),
        lambda r: np.where(np.arange(r.size).reshape(r.shape) == 3, np.inf, r).astype(np.float32),
    ],
    ids=["zeros", "constant", "other-rows", "noise", "an-inf"],
)
def test_garbage_fails_every_budget_that_changes_the_math(variant, garbage):
    compared = judge(variant, LOGITS, garbage(LOGITS))
    assert not compared
    assert compared.outputs[0].budget.startswith(f"{variant}: ")


@pytest.mark.parametrize("variant", ["fp16", "int8-dynamic", "int8-static"])
def test_an_output_stuck_at_the_mean_of_an_offset_reference_fails(variant):
    """Features around 5 +- 0.1 (no class scores: 4-D): a constant 5 has cosine 0.9998,
    which alone would pass int8's budget; its correlation is 0."""
    ref = (5 + 0.1 * RNG.standard_normal((2, 4, 8, 8))).astype(np.float32)
    stuck = np.full_like(ref, 5.0)
    compared = judge(variant, ref, stuck)
    output = compared.outputs[0]
    assert output.cosine > 0.999 and output.top1 is None
    assert not compared
    assert "correlation 0 < 0.99" in output.reason
    assert compare_arrays("y", ref, ref + np.float32(1e-3)).correlation > 0.99


def test_top1_catches_what_cosine_does_not():
    """A small change that flips the winner of most rows: cosine stays high, top-1 fails."""
    close = RNG.standard_normal((64, 10)).astype(np.float32) + 20  # a big shared offset
    got = close.copy()
    top = np.argsort(close, axis=-1)
    rows = np.arange(64)
    got[rows, top[:, -1]], got[rows, top[:, -2]] = close[rows, top[:, -2]], close[rows, top[:, -1]]
    compared = judge("int8-dynamic", close, got, corr=0.5)
    output = compared.outputs[0]
    assert output.cosine > 0.99 and output.top1 == 0.0
    assert not compared
    assert "top-1 agreement 0 < 0.9" in output.reason
    assert "would pass with --budget int8-dynamic:top1=0" in output.reason


def test_a_failure_names_the_budget_that_would_have_passed():
    got = LOGITS + RNG.standard_normal(LOGITS.shape).astype(np.float32) * 0.05
    compared = judge("int8-static", LOGITS, got, cosine=0.9999)
    reason = compared.outputs[0].reason
    assert reason.count("< 0.9999") == 1, reason
    assert "would pass with --budget int8-static:cosine=0.99" in reason
    cosine = float(reason.split("int8-static:cosine=")[1].split(",")[0].split(";")[0])
    assert judge("int8-static", LOGITS, got, cosine=cosine)  # the hint really passes
    # fp16's element-wise budget: the hint's atol passes too
    compared = judge("fp16", LOGITS, got, cosine=0.5)
    hint = compared.outputs[0].reason.split("would pass with --budget fp16:")[1]
    atol = float(hint.split("atol=")[1].split(",")[0])
    assert judge("fp16", LOGITS, got, cosine=0.5, atol=atol)


@pytest.mark.parametrize("variant", ["slim", "optimized"])
def test_same_math_budgets_never_loosen_the_base_rule(variant):
    got = LOGITS * np.float32(1 + 1e-3)  # cosine 1, top-1 1: but 0.1% off everywhere
    base = compare_outputs({"y": LOGITS}, {"y": got})
    assert not base
    for overrides in ({}, {"cosine": 0.5}, {"top1": 0.0, "snr": -100.0}):
        assert not judge(variant, LOGITS, got, **overrides)
    # ...and can add a check the base rule lacks
    near = LOGITS + np.float32(1e-7)
    assert judge(variant, LOGITS, near)
    assert not judge(variant, LOGITS, near, snr=200.0)
    assert DEFAULT_BUDGETS[variant].text() == "base rule"


def test_integer_outputs_stay_exact_under_every_budget():
    ref = np.arange(12, dtype=np.int64)
    got = ref.copy()
    got[3] += 1
    for variant in DEFAULT_BUDGETS:
        assert not judge(variant, ref, got)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("int8-dynamic", "expected VARIANT:metric=value"),
        ("fp8:cosine=0.9", "unknown variant 'fp8'; variants with a budget are slim"),
        ("base:cosine=0.9", "unknown variant 'base'"),
        ("fp16:cosin=0.9", "unknown metric 'cosin'; metrics are atol, rtol, cosine"),
        ("fp16:cosine=1.5", "cosine must be a number in (0, 1]"),
        ("fp16:top1=nan", "top1 must be a share in [0, 1]"),
        ("fp16:atol=-1", "atol must be a finite number >= 0"),
        ("slim:atol=0.1", "slim is judged by the base's rule"),
    ],
)
def test_bad_budgets_are_refused_in_one_line(text, needle):
    with pytest.raises(ToleranceError) as e:
        parse_budget(text)
    assert needle in e.value.message and "\n" not in e.value.message


def test_overrides_change_only_the_metrics_named():
    variant, values = parse_budget("int8-dynamic:cosine=0.995,top5=1")
    got = budgets([(variant, values)])
    assert got["int8-dynamic"].text() == "cosine=0.995,corr=0.99,top1=0.9,top5=1"
    assert got["int8-static"] == DEFAULT_BUDGETS["int8-static"]
    with pytest.raises(ToleranceError, match="unknown variant"):
        budgets([("int4", {"cosine": 0.9})])
