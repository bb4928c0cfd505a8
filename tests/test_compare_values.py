"""Comparing values that are not one numeric tensor: strings, sequences, empty optionals."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from nnkit.compare import Tolerance, compare_outputs, compare_value


def test_sequences_compare_element_by_element_at_each_dtype_tolerance():
    ref = [np.ones(2, np.float32), np.ones(3, np.float32)]
    close = [np.ones(2, np.float32), np.ones(3, np.float32) + 1e-6]
    assert compare_value("s", ref, close)
    far = [np.ones(2, np.float32), np.array([1, 1, 1.1], np.float32)]
    result = compare_value("s", ref, far)
    assert not result and result.mismatches == 1 and result.size == 5
    assert result.summary().startswith("'s': 1/2 elements differ; 's[1]': 1/3 elements outside")
    assert abs(result.max_abs_diff - 0.1) < 1e-6 and result.min_atol is not None
    assert "2 elements, the reference has 1" in compare_value("s", ref[:1], ref).reason
    assert "a float32 tensor, the reference gives a sequence" in (
        compare_value("s", ref, ref[0]).reason
    )


def test_strings_compare_exactly_whatever_numpy_kind_holds_them():
    ref = np.array(["a", "bé"], dtype=object)
    assert compare_value("t", ref, np.array(["a", "bé"]))
    assert compare_value("t", ref, np.array([b"a", "bé".encode()]))
    result = compare_value("t", ref, np.array(["a", "be"]))
    assert not result and result.mismatches == 1
    assert "1/2 strings differ (first at flat index 1: 'be' != reference 'bé')" in result.summary()
    assert not compare_value("t", ref, np.array(["a"]))  # shape
    assert not compare_value("t", ref, np.zeros(2))  # dtype


def test_an_empty_optional_matches_only_an_empty_optional():
    assert compare_value("o", None, None)
    assert not compare_value("o", None, np.ones(1))
    assert "an empty optional, the reference gives a float64 tensor" in (
        compare_value("o", np.ones(1), None).reason
    )


def test_compare_outputs_dispatches_and_keeps_low_precision_numeric():
    ref = np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16)
    got = np.array([1.0, 2.0078125], dtype=ml_dtypes.bfloat16)  # one bfloat16 step off
    result = compare_outputs({"y": ref, "s": [ref]}, {"y": got, "s": [got]})
    assert result, result.summary()
    y, s = result.outputs
    # bfloat16's tolerance, relative to the output's scale, for a tensor and a sequence alike.
    for out in (y, s):
        assert (out.rtol, out.ref_dtype in ("bfloat16", "sequence")) == (
            Tolerance().for_dtype("bfloat16")[1],
            True,
        )
    assert y.relative_atol == Tolerance().for_dtype("bfloat16")[0]
    off = np.array([1.0, 2.5], dtype=ml_dtypes.bfloat16)
    assert not compare_outputs({"y": ref}, {"y": off})
    assert not compare_outputs({"s": [ref]}, {"s": [off]})


def test_a_sequence_of_tiny_values_is_judged_by_its_scale():
    # An all-zero element passes an absolute tolerance; it must fail the scale-aware rule.
    ref = np.full(8, 3e-9, dtype=np.float32)
    assert not compare_outputs({"s": [ref]}, {"s": [np.zeros(8, np.float32)]})
    assert compare_outputs({"s": [ref]}, {"s": [ref.copy()]})
