"""The comparison: the scale-aware rule, explicit tolerances, modes, degenerate references,
NaN/Inf positions, and the smallest tolerances that would pass."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnkit.compare import (
    DEFAULT_TOLERANCES,
    Rule,
    Tolerance,
    ToleranceError,
    compare_arrays,
    compare_outputs,
    min_atol,
    min_rtol,
    parse_compare,
)
from nnkit.errors import NnkitError

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


# -- the scale-aware default rule ---------------------------------------------------

rng = np.random.default_rng(7)
NORMAL = rng.standard_normal((4, 25)).astype(np.float32)


@pytest.mark.parametrize("scale", [1e-14, 2e-9, 1.0, 1e6])
def test_an_all_zero_output_fails_at_any_scale_and_a_close_one_passes(scale: float) -> None:
    ref = (NORMAL * np.float32(scale)).astype(np.float32)
    zero = compare_arrays("logits", ref, np.zeros_like(ref))
    assert not zero
    assert zero.rel_err_norm == 1 and zero.cosine == 0 and zero.got_max_abs == 0
    assert "relative error norm 1 > 1e-05" in zero.reason
    assert zero.error_ratio is not None and zero.error_ratio > 1
    close = ref * np.float32(1 + 1e-6)  # float32 rounding noise, relative to the scale
    result = compare_arrays("logits", ref, close)
    assert result, result.summary()
    assert result.relative_atol == 1e-5 and result.norm_tol == 1e-5
    assert result.atol == pytest.approx(1e-5 * result.ref_rms)
    assert 0 < result.error_ratio < 0.2
    assert not result.warnings


def test_the_old_absolute_rule_passed_the_zero_output_and_now_warns_when_asked_for() -> None:
    ref = (NORMAL * np.float32(2e-9)).astype(np.float32)  # random-init mobilenet's logits
    old = compare_arrays("logits", ref, np.zeros_like(ref), atol=1e-5, rtol=1e-4)
    assert old, "an explicit atol is absolute: the user's word"
    assert old.relative_atol is None and old.norm_tol is None and old.atol == 1e-5
    assert any("below the comparison's resolution" in w for w in old.warnings)
    assert "an all-zero output would pass" in old.warnings[0]


def test_the_norm_bound_fails_a_drift_every_element_alone_would_pass() -> None:
    drift = NORMAL * np.float32(1 + 5e-5)  # each element within rtol=1e-4, the norm 5e-5
    result = compare_arrays("y", NORMAL, drift)
    assert not result and result.mismatches == 0
    assert result.reason == f"relative error norm {result.rel_err_norm:.3g} > 1e-05"
    assert result.rel_err_norm == pytest.approx(5e-5, rel=0.05)
    assert compare_arrays("y", NORMAL, drift, rtol=1e-4), "explicit: element-wise only"
    assert compare_arrays("y", NORMAL, drift, rule="allclose:rtol=1e-4")


def test_model_tolerances_are_relative_and_the_users_absolute() -> None:
    model = Tolerance(model_atol=1e-4, model_rtol=1e-3).check("logits", "float32")
    assert (model.atol, model.rtol, model.relative, model.norm) == (1e-4, 1e-3, True, 1e-4)
    user = Tolerance(atol=0.5, model_atol=1e-4, model_rtol=1e-3).check("logits", "float32")
    assert (user.atol, user.rtol, user.relative, user.norm) == (0.5, 1e-3, False, None)
    rtol_only = Tolerance(rtol=0.01).check("logits", "float32")
    assert (rtol_only.atol, rtol_only.relative, rtol_only.norm) == (1e-5, True, None)
    half = Tolerance().check("y", "float16")
    assert (half.atol, half.rtol) == DEFAULT_TOLERANCES["float16"]
    ints = Tolerance(model_atol=1e-4).check("labels", "int64")
    assert ints.mode == "exact"


def test_an_all_zero_reference_has_no_scale_and_falls_back_to_an_absolute_atol() -> None:
    ref = np.zeros((2, 3), np.float32)
    near = compare_arrays("y", ref, np.full_like(ref, 1e-6))
    assert near and near.atol == 1e-5 and near.relative_atol is None
    assert near.warnings == [
        "the reference is all zeros: an output stuck at 0 matches it; it has no scale, "
        "so it is compared with the absolute atol=1e-05"
    ]
    assert not compare_arrays("y", ref, np.full_like(ref, 1e-3))


def test_results_carry_magnitudes_and_metrics_on_a_pass() -> None:
    ref = np.array([3.0, -4.0], np.float32)
    got = np.array([3.0, -4.00001], np.float32)
    result = compare_arrays("y", ref, got)
    assert result
    assert result.ref_max_abs == 4 and result.ref_rms == pytest.approx(math.sqrt(12.5))
    assert result.got_max_abs == pytest.approx(4.00001)
    assert result.rel_err_norm == pytest.approx(1e-5 / 5, rel=1e-2)  # float32 -4.00001
    assert 1 - result.cosine < 1e-10
    data = result.to_dict()
    for key in (
        "mode",
        "rule",
        "relative_atol",
        "norm_tol",
        "ref_max_abs",
        "ref_rms",
        "got_max_abs",
        "got_rms",
        "cosine",
        "rel_err_norm",
        "error_ratio",
        "warnings",
    ):
        assert key in data, key
    assert (
        data["rule"]
        == "|got-ref| <= 1e-05*rms(ref) + 0.0001*|ref| and ||got-ref|| <= 1e-05*||ref||"
    )
    assert "max|ref|=4 rms(ref)=3.54" in result.detail() and "of the tolerance" in result.detail()


# -- degenerate references ----------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "kwargs", "needle"),
    [
        (np.zeros(5, np.float32), {}, "all zeros"),
        (np.full(300, 1 / 91, np.float32), {}, "constant (every value 0.010989)"),
        (np.full(4, 1e-40, np.float32) * np.arange(1, 5, dtype=np.float32), {}, "subnormal"),
        (NORMAL * np.float32(1e-9), {"atol": 1e-5}, "below the comparison's resolution"),
        (np.round(NORMAL * 2) / 2 + np.float32(0.25), {}, "full of ties"),
        (np.array([np.nan, np.inf], np.float32), {}, "no finite value"),
        (np.zeros(3, np.int64), {}, "all zeros"),
    ],
)
def test_a_degenerate_reference_gets_a_warning(ref: np.ndarray, kwargs: dict, needle: str) -> None:
    result = compare_arrays("y", ref, ref.copy(), **kwargs)
    assert any(needle in w for w in result.warnings), result.warnings


def test_rows_a_mask_repeats_are_no_ties_but_ties_within_a_row_are() -> None:
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((2, 16, 5)).astype(np.float32)
    scores[:, 8:, :] = scores[0, 8, :]  # masked positions: one row, repeated
    assert compare_arrays("scores", scores, scores.copy()).warnings == []
    detector = np.full(300, 1 / 91, dtype=np.float32)  # equal scores: NMS order is noise
    detector[:5] = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert any("full of ties" in w for w in compare_arrays("s", detector, detector).warnings)
    within = np.tile(np.float32([0.5, 0.5, 0.1, 0.2]), (6, 1)) * np.arange(1, 7)[:, None]
    assert any("full of ties" in w for w in compare_arrays("t", within, within).warnings)


def test_fair_references_get_no_warning_and_ties_only_where_order_matters() -> None:
    relu = np.maximum(NORMAL, 0)  # zeros are not ties
    for ref in (NORMAL, relu, np.arange(10, dtype=np.int64), np.array([2.5], np.float32)):
        assert compare_arrays("y", ref, ref.copy()).warnings == []
    ties = np.round(NORMAL * 2) / 2 + np.float32(0.25)
    assert compare_arrays("y", ties, ties.copy(), rule="set").warnings == []
    assert compare_arrays("y", ties, ties.copy(), rule="exact").warnings == []
    assert compare_arrays("y", ties, ties.copy(), rule="cosine").warnings != []


# -- modes --------------------------------------------------------------------------


def test_exact_mode_wants_equal_values_and_integers_compare_as_integers() -> None:
    assert compare_arrays("y", NORMAL, NORMAL.copy(), rule="exact")
    assert compare_arrays("y", np.array([0.0]), np.array([-0.0]), rule="exact")
    off = compare_arrays("y", NORMAL, np.nextafter(NORMAL, np.float32(np.inf)), rule="exact")
    assert not off and off.reason == "100/100 elements differ (exact)"
    big = np.array([2**53, 7], np.int64)
    assert not compare_arrays("ids", big, big + np.array([1, 0])), "float64 cannot see this"
    assert compare_arrays("ids", big, big.copy())


def test_cosine_mode_ignores_the_scale_and_has_a_threshold() -> None:
    assert compare_arrays("emb", NORMAL, NORMAL * 2, rule="cosine")
    assert not compare_arrays("emb", NORMAL, NORMAL * 2)
    flipped = compare_arrays("emb", NORMAL, -NORMAL, rule="cosine")
    assert not flipped and flipped.reason == "cosine -1 < 0.9999"
    noisy = NORMAL + 0.05 * rng.standard_normal(NORMAL.shape).astype(np.float32)
    assert compare_arrays("emb", NORMAL, noisy, rule="cosine:min=0.99")
    assert not compare_arrays("emb", NORMAL, noisy, rule="cosine")  # 0.9999 by default
    assert not compare_arrays("emb", NORMAL, np.zeros_like(NORMAL), rule="cosine")


def test_set_mode_ignores_the_order_along_its_axis_only() -> None:
    scores = np.sort(NORMAL, axis=-1)[:, ::-1]
    shuffled = scores[:, rng.permutation(scores.shape[1])]
    assert compare_arrays("scores", scores, shuffled, rule="set")
    assert not compare_arrays("scores", scores, shuffled)
    moved_rows = scores[::-1]  # the last axis' sets are the same, but in other rows
    assert not compare_arrays("scores", scores, moved_rows, rule="set")
    boxes = NORMAL.reshape(25, 4)
    permuted = boxes[rng.permutation(25)]
    assert compare_arrays("boxes", boxes, permuted, rule="set:axis=0")
    assert not compare_arrays("boxes", boxes, permuted, rule="set")  # last axis: coordinates
    other = permuted.copy()
    other[3, 1] += 0.5
    assert not compare_arrays("boxes", boxes, other, rule="set:axis=0")
    bad = compare_arrays("boxes", boxes, permuted, rule="set:axis=2")
    assert not bad and bad.reason == "set axis 2 is out of range for a 2-d output"
    labels = np.array([[3, 1, 2]], np.int64)
    assert compare_arrays("labels", labels, labels[:, ::-1].copy(), rule="set")


def test_rules_parse_from_text_and_bad_ones_say_what_is_valid() -> None:
    assert parse_compare("logits:allclose:atol=1e-3,rtol=1e-2") == (
        "logits",
        Rule("allclose", atol=1e-3, rtol=1e-2),
    )
    assert parse_compare("labels:exact") == ("labels", Rule("exact"))
    assert parse_compare("emb:cosine:min=0.99") == ("emb", Rule("cosine", min_cosine=0.99))
    assert parse_compare("boxes:set:axis=0") == ("boxes", Rule("set", axis=0))
    assert parse_compare("input:0:set") == ("input:0", Rule("set"))  # names may hold colons
    assert Rule.parse("allclose:atol=1e-3,rtol=1e-2").text() == "allclose:atol=0.001,rtol=0.01"
    for text, needle in [
        ("logits", "expected NAME:MODE"),
        ("logits:fuzzy", "allclose, exact, cosine, set"),
        (":cosine", "expected NAME:MODE"),
        ("y:exact:atol=1", "its options are none"),
        ("y:cosine:tol=1", "its options are min="),
        ("y:cosine:min=2", "(0, 1]"),
        ("y:set:axis=x", "integer"),
        ("y:allclose:atol=big", "must be a number"),
    ]:
        with pytest.raises(ToleranceError, match=re.escape(needle)):
            parse_compare(text)


# -- refusing tolerances that mean nothing ------------------------------------------


@pytest.mark.parametrize("bad", [NAN, INF, -INF, -1e-9, "x"])
@pytest.mark.parametrize("where", ["atol", "rtol", "model_atol", "model_rtol", "rule"])
def test_nan_infinite_and_negative_tolerances_are_refused(bad: object, where: str) -> None:
    with pytest.raises(ToleranceError, match=r"must be a (finite )?number"):
        if where == "rule":
            Tolerance(compare={"y": Rule("allclose", atol=bad)})  # type: ignore[arg-type]
        else:
            Tolerance(**{where: bad})
    assert issubclass(ToleranceError, NnkitError) and ToleranceError.exit_code == 2
    with pytest.raises(ToleranceError):
        compare_arrays("y", NORMAL, NORMAL, atol=NAN)


def test_the_would_have_passed_search_finishes_on_any_input() -> None:
    """rtol NaN, rtol inf with zeros in the reference, huge values: each used to spin."""
    code = (
        "import math, numpy as np\n"
        "from nnkit.compare import min_atol, min_rtol, passes\n"
        "d, m = np.array([1.0, 2.0]), np.array([0.0, 1.0])\n"
        "assert min_atol(d, m, rtol=math.nan) is None\n"
        "assert min_atol(d, m, rtol=math.inf) == 1.0\n"
        "assert min_rtol(d, m, atol=math.nan) is None\n"
        "assert min_rtol(d, m, atol=math.inf) == 0.0\n"
        "huge, tiny = np.array([1e300, 1.0]), np.array([1e300, 1e-300])\n"
        "a = min_atol(huge, tiny, rtol=0.999999)\n"
        "assert a is not None and passes(huge, tiny, atol=a, rtol=0.999999)\n"
        "assert min_rtol(np.array([1e300]), np.array([1e-300]), atol=0.0) is None\n"
        "top = np.array([1.7e308])\n"
        "assert min_atol(top, top, rtol=1e-300) == 1.7e308\n"
        "assert min_atol(np.array([math.inf]), np.array([1.0]), rtol=0.1) is None\n"
        "r = np.random.default_rng(0).standard_normal(1000) * 1e300\n"
        "a = min_atol(np.abs(r), np.abs(r), rtol=0.5)\n"
        "assert passes(np.abs(r), np.abs(r), atol=a, rtol=0.5)\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_default_verdict_is_the_scaled_rule_and_the_norm_bound(data: st.DataObject) -> None:
    ref, got = _pair(data)
    r, g = ref.astype(np.float64), got.astype(np.float64)
    rms = float(np.sqrt(np.mean(r**2))) if r.size else 0.0
    result = compare_arrays("y", ref, got)
    if rms == 0:
        return  # the all-zero fallback has its own test
    atol, rtol = DEFAULT_TOLERANCES["float32"]
    elementwise = np.all(np.abs(g - r) <= atol * rms + rtol * np.abs(r))
    norm = np.linalg.norm(g - r) / np.linalg.norm(r)
    if abs(norm - atol) > 1e-9 and np.all(
        np.abs(np.abs(g - r) - (atol * rms + rtol * np.abs(r))) > 1e-12
    ):  # away from the edges, where rounding may tip either way
        assert bool(result) is bool(elementwise and norm <= atol)
