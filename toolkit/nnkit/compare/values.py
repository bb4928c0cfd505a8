"""Comparing any ONNX value, and a run's outputs: strings exactly, sequences element by
element, an empty optional only with an empty optional, numeric tensors by
:mod:`nnkit.compare.metrics`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nnkit.compare.metrics import compare_with
from nnkit.compare.result import CompareResult, OutputCompareResult
from nnkit.compare.rules import Tolerance

#: ``ref_dtype`` of results that compare no numbers (:func:`compare_value`): a failure's
#: ``reason`` says it all.
NON_NUMERIC = ("string", "sequence", "none", "value")


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    *,
    tolerance: Tolerance | None = None,
) -> CompareResult:
    """Compare every reference output with the runtime's output of the same name.

    Args:
        reference: output name -> the reference's array (PyTorch's).
        got: output name -> the runtime's array.
        tolerance: the policy; the default rule for every output when None.

    Returns:
        The per-output results, in the reference's order.
    """
    tolerance = tolerance or Tolerance()
    result = CompareResult(
        missing=[n for n in reference if n not in got],
        extra=[n for n in got if n not in reference],
    )
    for name, ref in reference.items():
        if name in got and not (_numeric(ref) and _numeric(got[name])):
            result.outputs.append(compare_value(name, ref, got[name], tolerance=tolerance))
        elif name in got:
            ref = np.asarray(ref)
            check = tolerance.check(name, ref.dtype)
            result.outputs.append(compare_with(name, ref, got[name], check))
    return result


def _numeric(value: Any) -> bool:
    """A tensor of numbers or booleans (what :func:`compare_arrays` compares)."""
    if value is None or isinstance(value, list | tuple):
        return False
    return np.asarray(value).dtype.kind not in "OUSV" or _low_precision(np.asarray(value))


def _low_precision(arr: np.ndarray) -> bool:
    from nnkit.values import is_low_precision

    return is_low_precision(arr.dtype)


def compare_value(
    name: str,
    ref: Any,
    got: Any,
    *,
    tolerance: Tolerance | None = None,
    rule_name: str | None = None,
) -> OutputCompareResult:
    """Compare any ONNX value: numeric tensors by the output's rule (:func:`compare_with`,
    the rule of ``rule_name``, default ``name``), strings exactly, sequences element by
    element under the sequence's rule, and an empty optional (None) only with an empty
    optional.

    A sequence's result carries its elements' worst metrics; its reason names the first
    element that failed.
    """
    tolerance = tolerance or Tolerance()
    if ref is None or got is None:
        return _compare_presence(name, ref, got)
    if isinstance(ref, list | tuple) or isinstance(got, list | tuple):
        return _compare_sequences(name, ref, got, tolerance, rule_name or name)
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.dtype.kind in "OUS" or got.dtype.kind in "OUS":
        return compare_strings(name, ref, got)
    return compare_with(name, ref, got, tolerance.check(rule_name or name, ref.dtype))


def _kind_text(value: Any) -> str:
    if value is None:
        return "an empty optional"
    if isinstance(value, list | tuple):
        return f"a sequence of {len(value)}"
    return f"a {np.asarray(value).dtype} tensor"


def _compare_presence(name: str, ref: Any, got: Any) -> OutputCompareResult:
    passed = ref is None and got is None
    result = OutputCompareResult(
        name=name,
        passed=passed,
        atol=0.0,
        rtol=0.0,
        ref_shape=(),
        got_shape=(),
        ref_dtype="none" if ref is None else "value",
        got_dtype="none" if got is None else "value",
    )
    if not passed:
        result.mismatches = 1
        result.min_atol = result.min_rtol = None
        result.reason = f"{_kind_text(got)}, the reference gives {_kind_text(ref)}"
    return result


def _compare_sequences(
    name: str, ref: Any, got: Any, tolerance: Tolerance, rule_name: str
) -> OutputCompareResult:
    result = OutputCompareResult(
        name=name,
        passed=False,
        atol=0.0,
        rtol=0.0,
        ref_shape=(len(ref),) if isinstance(ref, list | tuple) else (),
        got_shape=(len(got),) if isinstance(got, list | tuple) else (),
        ref_dtype="sequence",
        got_dtype="sequence" if isinstance(got, list | tuple) else "tensor",
        min_atol=None,
        min_rtol=None,
    )
    if not (isinstance(ref, list | tuple) and isinstance(got, list | tuple)):
        result.reason = f"{_kind_text(got)}, the reference gives {_kind_text(ref)}"
        result.mismatches = 1
        return result
    if len(ref) != len(got):
        result.reason = f"a sequence of {len(got)} elements, the reference has {len(ref)}"
        result.mismatches = 1
        return result
    parts = [
        compare_value(f"{name}[{i}]", r, g, tolerance=tolerance, rule_name=rule_name)
        for i, (r, g) in enumerate(zip(ref, got, strict=True))
    ]
    result.passed = all(parts)
    result.size = sum(p.size for p in parts)
    result.mismatches = sum(p.mismatches for p in parts)
    result.nonfinite = sum(p.nonfinite for p in parts)
    result.nonfinite_mismatches = sum(p.nonfinite_mismatches for p in parts)
    for metric in ("max_abs_diff", "max_rel_diff", "p99_abs_diff", "mean_abs_diff"):
        setattr(result, metric, max((getattr(p, metric) for p in parts), default=0.0))
    if parts:
        result.atol, result.rtol = parts[0].atol, parts[0].rtol
    needs = [(p.min_atol, p.min_rtol) for p in parts]
    if all(a is not None for a, _ in needs):
        result.min_atol = max((a for a, _ in needs), default=0.0)  # type: ignore[type-var]
    if all(r is not None for _, r in needs):
        result.min_rtol = max((r for _, r in needs), default=0.0)  # type: ignore[type-var]
    failed = [p for p in parts if not p]
    if failed:
        first = failed[0]
        result.reason = f"{len(failed)}/{len(parts)} elements differ; {first.summary()}"
    return result


def compare_strings(name: str, ref: np.ndarray, got: np.ndarray) -> OutputCompareResult:
    """String tensors: the same shape and every string equal (no tolerance applies).

    Bytes are compared as UTF-8 text, so ``<U``, ``<S`` and object arrays compare alike.
    """
    result = OutputCompareResult(
        name=name,
        passed=False,
        atol=0.0,
        rtol=0.0,
        ref_shape=tuple(ref.shape),
        got_shape=tuple(got.shape),
        ref_dtype="string" if ref.dtype.kind in "OUS" else str(ref.dtype),
        got_dtype="string" if got.dtype.kind in "OUS" else str(got.dtype),
        size=int(ref.size),
        min_atol=None,
        min_rtol=None,
    )
    if result.ref_dtype != result.got_dtype:
        result.reason = f"dtype {result.got_dtype} != reference {result.ref_dtype}"
        return result
    if ref.shape != got.shape:
        result.reason = f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
        return result
    r, g = _texts(ref), _texts(got)
    differ = [i for i, (a, b) in enumerate(zip(r, g, strict=True)) if a != b]
    result.mismatches = len(differ)
    result.passed = not differ
    if differ:
        i = differ[0]
        result.reason = (
            f"{len(differ)}/{result.size} strings differ (first at flat index {i}: "
            f"{g[i]!r} != reference {r[i]!r})"
        )
    else:
        result.min_atol = result.min_rtol = 0.0
    return result


def _texts(arr: np.ndarray) -> list[str]:
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for v in arr.ravel().tolist()
    ]
