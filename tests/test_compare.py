"""The tolerance rule, NaN/Inf positions, and the smallest tolerances that would pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnkit.compare import (
    DEFAULT_TOLERANCES,
    Tolerance,
    compare_arrays,
    compare_outputs,
    min_atol,
    min_rtol,
)

NAN, INF = float("nan"), float("inf")

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
arrays = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=finite
)
tolerances = st.floats(min_value=0, max_value=1e-1, allow_nan=False)


def _pair(data: st.DataObject) -> tuple[np.ndarray, np.ndarray]:
    ref = data.draw(arrays)
    noise = data.draw(hnp.arrays(np.float32, ref.shape, elements=finite))
    scale = data.draw(st.sampled_from([0.0, 1e-6, 1e-3, 1.0]))
    return ref, (ref + noise * np.float32(scale)).astype(np.float32)


def test_equal_arrays_pass_with_zero_diffs() -> None:
    a = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    result = compare_arrays("y", a, a.copy(), atol=0, rtol=0)
    assert result
    assert result.max_abs_diff == result.max_rel_diff == result.mismatches == 0
    assert result.min_atol == result.min_rtol == 0


def test_the_rule_is_atol_plus_rtol_times_the_reference() -> None:
    ref = np.array([1.0, 100.0], dtype=np.float32)
    got = ref + np.array([0.5, 1.5], dtype=np.float32)
    assert not compare_arrays("y", ref, got, atol=1.0, rtol=0.0)  # 1.5 > 1
    assert compare_arrays("y", ref, got, atol=0.5, rtol=0.01)  # 1.5 <= 0.5 + 1.0
    failed = compare_arrays("y", ref, got, atol=0.1, rtol=0.0)
    assert failed.mismatches == 2
    assert failed.max_abs_diff == pytest.approx(1.5)
    assert failed.max_rel_diff == pytest.approx(0.5)
    assert failed.mean_abs_diff == pytest.approx(1.0)
    assert failed.p99_abs_diff == pytest.approx(1.49, abs=1e-6)
    assert failed.min_atol == pytest.approx(1.5)
    assert failed.min_rtol == pytest.approx(0.4)  # (0.5 - 0.1) / 1
    text = failed.summary()
    assert "2/2 elements outside" in text and "would pass with atol>=1.5" in text


def test_shapes_must_match_exactly() -> None:
    ref = np.zeros((2, 7, 20), np.float32)
    result = compare_arrays("output", ref, np.zeros((2, 13, 20), np.float32), atol=1, rtol=1)
    assert not result
    assert "shape (2, 13, 20) != reference (2, 7, 20)" in result.summary()
    assert result.min_atol is None


def test_a_different_dtype_fails() -> None:
    ref = np.ones(3, np.float32)
    result = compare_arrays("y", ref, ref.astype(np.float64), atol=1, rtol=1)
    assert not result and "dtype float64 != reference float32" in result.reason


@pytest.mark.parametrize(
    ("ref", "got", "passed"),
    [
        ([1.0, NAN, INF, -INF], [1.0, NAN, INF, -INF], True),
        ([1.0, NAN], [NAN, 1.0], False),  # NaN moved
        ([1.0, NAN], [1.0, 0.0], False),  # NaN lost
        ([1.0, 2.0], [1.0, NAN], False),  # NaN appeared
        ([INF, 2.0], [-INF, 2.0], False),  # sign of infinity
        ([INF, 2.0], [NAN, 2.0], False),
    ],
)
def test_nan_and_inf_compare_by_position(ref: list, got: list, passed: bool) -> None:
    r, g = np.array(ref, np.float32), np.array(got, np.float32)
    result = compare_arrays("y", r, g, atol=1e9, rtol=1e9)
    assert bool(result) is passed
    if not passed:
        assert result.nonfinite_mismatches >= 1
        assert result.min_atol is None and result.min_rtol is None
        assert "no tolerance would pass" in result.summary()


def test_integers_are_exact_by_default_and_floats_per_dtype() -> None:
    tol = Tolerance()
    assert tol.for_dtype("int64") == (0.0, 0.0)
    assert tol.for_dtype("bool") == (0.0, 0.0)
    for dtype, pair in DEFAULT_TOLERANCES.items():
        assert tol.for_dtype(dtype) == pair
    model = Tolerance(model_atol=1e-4, model_rtol=1e-3)
    assert model.for_dtype("float32") == (1e-4, 1e-3)
    assert model.for_dtype("int32") == (0.0, 0.0)  # the model's float tolerance only
    user = Tolerance(atol=0.5, rtol=0.25, model_atol=1e-4, model_rtol=1e-3)
    assert user.for_dtype("float32") == (0.5, 0.25)
    assert user.for_dtype("int64") == (0.5, 0.25)  # the user's word is final
    ref = {"i": np.array([1, 2, 3])}
    assert not compare_outputs(ref, {"i": np.array([1, 2, 4])})


def test_outputs_compare_by_name_and_missing_ones_fail() -> None:
    ref = {"a": np.ones(2, np.float32), "b": np.zeros(2, np.float32)}
    swapped = compare_outputs(ref, {"b": ref["a"], "a": ref["b"]})
    assert not swapped and [o.name for o in swapped.failures] == ["a", "b"]
    missing = compare_outputs(ref, {"a": ref["a"], "c": ref["a"]})
    assert not missing and missing.missing == ["b"] and missing.extra == ["c"]
    assert "missing outputs: 'b'" in missing.summary()
    assert compare_outputs(ref, dict(ref))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), rtol=tolerances)
def test_min_atol_passes_and_anything_meaningfully_smaller_fails(
    data: st.DataObject, rtol: float
) -> None:
    ref, got = _pair(data)
    result = compare_arrays("y", ref, got, atol=0.0, rtol=rtol)
    need = result.min_atol
    assert need is not None and need >= 0
    assert compare_arrays("y", ref, got, atol=need, rtol=rtol)
    if need > 0:
        smaller = need * (1 - 1e-6) - 1e-12
        assert not compare_arrays("y", ref, got, atol=max(smaller, 0.0), rtol=rtol)
    assert bool(result) is (need == 0)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), atol=tolerances)
def test_min_rtol_passes_and_anything_meaningfully_smaller_fails(
    data: st.DataObject, atol: float
) -> None:
    ref, got = _pair(data)
    need = compare_arrays("y", ref, got, atol=atol, rtol=0.0).min_rtol
    if need is None:  # off by more than atol where the reference is 0: no rtol helps
        diff = np.abs(got.astype(np.float64) - ref)
        assert np.any((diff > atol) & (ref == 0))
        assert not compare_arrays("y", ref, got, atol=atol, rtol=1e30)
        return
    assert compare_arrays("y", ref, got, atol=atol, rtol=need)
    if need > 0:
        assert not compare_arrays("y", ref, got, atol=atol, rtol=need * (1 - 1e-6))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), atol=tolerances, rtol=tolerances)
def test_the_verdict_is_the_rule_elementwise(data: st.DataObject, atol: float, rtol: float) -> None:
    ref, got = _pair(data)
    r, g = ref.astype(np.float64), got.astype(np.float64)
    expected = np.abs(g - r) <= atol + rtol * np.abs(r)
    result = compare_arrays("y", ref, got, atol=atol, rtol=rtol)
    assert bool(result) is bool(expected.all())
    assert result.mismatches == int((~expected).sum())


def test_min_tolerances_of_empty_and_exact_arrays_are_zero() -> None:
    empty = np.zeros(0)
    assert min_atol(empty, empty, rtol=0.1) == 0.0
    assert min_rtol(empty, empty, atol=0.1) == 0.0
    assert math.isclose(min_atol(np.array([0.3]), np.array([1.0]), rtol=0.1), 0.2)
