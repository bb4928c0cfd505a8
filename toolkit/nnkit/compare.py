"""Output comparison: metrics, the tolerance rule, and verdicts as values.

One element passes when ``|got - ref| <= atol + rtol * |ref|`` (the reference is PyTorch,
so the rule is asymmetric on purpose, like :func:`numpy.isclose`). NaN and infinities
are compared by position: a NaN where the reference has a NaN passes, an infinity where
the reference has the same infinity passes, anything else there fails whatever the
tolerance. Integer and boolean outputs must be equal unless a tolerance is given.

Every result is a value whose truth is the verdict, so a test reads ``assert result``;
beside a failure it carries the smallest ``atol`` (at the given ``rtol``) and the
smallest ``rtol`` (at the given ``atol``) that would have passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: (atol, rtol) per output dtype, used where neither the user nor the model says.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-8, 1e-7),
    "float32": (1e-5, 1e-4),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}
#: Tolerance of integer and boolean outputs: exact.
EXACT = (0.0, 0.0)
#: The quantile of the absolute difference that results report (``p99_abs_diff``).
QUANTILE = 0.99
#: ``ref_dtype`` of results that compare no numbers (:func:`compare_value`): a failure's
#: ``reason`` says it all.
NON_NUMERIC = ("string", "sequence", "none", "value")


@dataclass(frozen=True)
class Tolerance:
    """A tolerance request: each field None means "the default for the output's dtype".

    ``atol`` and ``rtol`` given by the user win over the model's; the model's win over the
    dtype's, except on integer and boolean outputs, which are exact unless the user says.
    """

    atol: float | None = None
    rtol: float | None = None
    model_atol: float | None = None
    model_rtol: float | None = None

    def for_dtype(self, dtype: np.dtype | str) -> tuple[float, float]:
        """The (atol, rtol) that apply to an output of ``dtype``."""
        name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
        if name in DEFAULT_TOLERANCES:
            atol, rtol = DEFAULT_TOLERANCES[name]
            atol = atol if self.model_atol is None else self.model_atol
            rtol = rtol if self.model_rtol is None else self.model_rtol
        else:
            atol, rtol = EXACT
        return (
            atol if self.atol is None else float(self.atol),
            rtol if self.rtol is None else float(self.rtol),
        )


@dataclass
class OutputCompareResult:
    """How one output of a runtime compares with the reference; true when it passed.

    The metrics cover the elements where both values are finite. ``max_rel_diff`` is
    ``|got - ref| / |ref|`` over the elements where the reference is not zero (where it
    is zero, only ``atol`` can pass a difference). ``min_atol`` / ``min_rtol`` are the
    smallest tolerances that would have passed with the other one as given; None where
    none would (non-finite values in different places; for ``min_rtol``, a difference
    beyond ``atol`` where the reference is zero).
    """

    name: str
    passed: bool
    atol: float
    rtol: float
    ref_shape: tuple[int, ...]
    got_shape: tuple[int, ...] | None
    ref_dtype: str
    got_dtype: str | None
    size: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    mean_abs_diff: float = 0.0
    p99_abs_diff: float = 0.0
    #: Elements outside the tolerance, non-finite values in different places included.
    mismatches: int = 0
    #: Positions where the NaN/Inf pattern of the two differs.
    nonfinite_mismatches: int = 0
    #: Positions where the reference is NaN or infinite (and the runtime agrees or not).
    nonfinite: int = 0
    min_atol: float | None = 0.0
    min_rtol: float | None = 0.0
    #: Why it failed, in words ("shape (2, 7, 20) != (2, 13, 20)"); empty when it passed.
    reason: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """One line: the verdict, the numbers, and what would have passed."""
        head = f"{self.name!r}: "
        if self.got_shape is None or (not self.passed and self.ref_dtype in NON_NUMERIC):
            return head + self.reason
        if self.got_shape != self.ref_shape or self.got_dtype != self.ref_dtype:
            return head + self.reason
        text = (
            f"max_abs_diff={fmt(self.max_abs_diff)} max_rel_diff={fmt(self.max_rel_diff)} "
            f"mean_abs_diff={fmt(self.mean_abs_diff)} p99_abs_diff={fmt(self.p99_abs_diff)}"
        )
        if self.passed:
            return head + "pass " + text
        parts = [
            f"{self.mismatches}/{self.size} elements outside atol={fmt(self.atol)} + "
            f"rtol={fmt(self.rtol)}*|ref|"
        ]
        if self.nonfinite_mismatches:
            parts.append(f"{self.nonfinite_mismatches} NaN/Inf in different places")
        return head + "; ".join([*parts, text, self.would_pass()])

    def would_pass(self) -> str:
        """The smallest tolerances that would have passed, in words."""
        if self.min_atol is None and self.min_rtol is None:
            return "no tolerance would pass (NaN/Inf in different places)"
        atol = (
            f"atol>={fmt(self.min_atol)} (at rtol={fmt(self.rtol)})"
            if self.min_atol is not None
            else None
        )
        rtol = (
            f"rtol>={fmt(self.min_rtol)} (at atol={fmt(self.atol)})"
            if self.min_rtol is not None
            else f"no rtol at atol={fmt(self.atol)} (the reference is 0 there)"
        )
        return "would pass with " + " or ".join(p for p in (atol, rtol) if p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field; non-finite floats as None."""
        return {
            "name": self.name,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "ref_shape": list(self.ref_shape),
            "got_shape": None if self.got_shape is None else list(self.got_shape),
            "ref_dtype": self.ref_dtype,
            "got_dtype": self.got_dtype,
            "size": self.size,
            "max_abs_diff": _finite(self.max_abs_diff),
            "max_rel_diff": _finite(self.max_rel_diff),
            "mean_abs_diff": _finite(self.mean_abs_diff),
            "p99_abs_diff": _finite(self.p99_abs_diff),
            "mismatches": self.mismatches,
            "nonfinite": self.nonfinite,
            "nonfinite_mismatches": self.nonfinite_mismatches,
            "min_atol": _finite(self.min_atol),
            "min_rtol": _finite(self.min_rtol),
            "reason": self.reason,
        }


@dataclass
class CompareResult:
    """Every output of one run compared with the reference; true when all passed.

    ``missing`` are reference outputs the runtime did not give; ``extra`` are outputs it
    gave that the reference has not (reported, not a failure).
    """

    outputs: list[OutputCompareResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.missing and all(self.outputs)

    @property
    def failures(self) -> list[OutputCompareResult]:
        return [o for o in self.outputs if not o]

    def summary(self) -> str:
        """One line per failed output (and one for missing outputs); empty when passed."""
        lines = [o.summary() for o in self.failures]
        if self.missing:
            lines.append(f"missing outputs: {', '.join(map(repr, self.missing))}")
        return "\n".join(lines)


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
        tolerance: the tolerance request; per-dtype defaults when None.

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
            atol, rtol = tolerance.for_dtype(ref.dtype)
            result.outputs.append(compare_arrays(name, ref, got[name], atol=atol, rtol=rtol))
    return result


def compare_arrays(
    name: str, ref: np.ndarray, got: np.ndarray, *, atol: float, rtol: float
) -> OutputCompareResult:
    """Compare one output: shapes exactly, dtypes exactly, then every element.

    Args:
        name: the output's name, for messages.
        ref: the reference array.
        got: the runtime's array.
        atol: absolute tolerance.
        rtol: relative tolerance, times ``|ref|``.
    """
    ref, got = np.asarray(ref), np.asarray(got)
    result = OutputCompareResult(
        name=name,
        passed=False,
        atol=float(atol),
        rtol=float(rtol),
        ref_shape=tuple(ref.shape),
        got_shape=tuple(got.shape),
        ref_dtype=str(ref.dtype),
        got_dtype=str(got.dtype),
        size=int(ref.size),
    )
    if ref.shape != got.shape:
        result.reason = f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
        result.min_atol = result.min_rtol = None
        return result
    r, g = _as_float64(ref), _as_float64(got)
    ref_finite, got_finite = np.isfinite(r), np.isfinite(g)
    both = ref_finite & got_finite
    # Non-finite positions must agree exactly: NaN with NaN, +inf with +inf.
    nonfinite_bad = ~both & ~(np.isnan(r) & np.isnan(g)) & ~((r == g) & ~ref_finite)
    result.nonfinite = int((~ref_finite).sum())
    result.nonfinite_mismatches = int(nonfinite_bad.sum())
    diff = np.abs(g[both] - r[both])
    mag = np.abs(r[both])
    if diff.size:
        result.max_abs_diff = float(diff.max())
        result.mean_abs_diff = float(diff.mean())
        result.p99_abs_diff = float(np.quantile(diff, QUANTILE))
        nonzero = mag > 0
        if nonzero.any():
            result.max_rel_diff = float((diff[nonzero] / mag[nonzero]).max())
    outside = int((diff > atol + rtol * mag).sum())
    result.mismatches = outside + result.nonfinite_mismatches
    if result.nonfinite_mismatches:
        result.min_atol = result.min_rtol = None
    else:
        result.min_atol = min_atol(diff, mag, rtol=rtol)
        result.min_rtol = min_rtol(diff, mag, atol=atol)
    result.passed = result.mismatches == 0
    if str(ref.dtype) != str(got.dtype):
        result.passed = False
        result.reason = f"dtype {got.dtype} != reference {ref.dtype}"
    elif not result.passed:
        result.reason = f"{result.mismatches}/{result.size} elements outside tolerance"
    return result


def passes(diff: np.ndarray, mag: np.ndarray, *, atol: float, rtol: float) -> bool:
    """The tolerance rule on precomputed ``|got - ref|`` and ``|ref|`` (float64)."""
    return bool(np.all(diff <= atol + rtol * mag))


def min_atol(diff: np.ndarray, mag: np.ndarray, *, rtol: float) -> float:
    """The smallest ``atol`` for which every element passes at ``rtol``.

    ``max(diff - rtol * |ref|)``, then raised by floating-point steps until the rule,
    evaluated exactly as :func:`passes` does, holds (rounding can leave it one ulp short).
    """
    if not diff.size:
        return 0.0
    need = max(float(np.max(diff - rtol * mag)), 0.0)
    while not passes(diff, mag, atol=need, rtol=rtol):
        need = float(np.nextafter(need, math.inf))
    return need


def min_rtol(diff: np.ndarray, mag: np.ndarray, *, atol: float) -> float | None:
    """The smallest ``rtol`` for which every element passes at ``atol``; None if none can.

    None when some element is off by more than ``atol`` where the reference is zero.
    """
    over = diff > atol
    if not over.any():
        return 0.0
    if np.any(mag[over] == 0):
        return None
    need = float(np.max((diff[over] - atol) / mag[over]))
    if not math.isfinite(need):
        return None
    while not passes(diff, mag, atol=atol, rtol=need):
        need = float(np.nextafter(need, math.inf))
    return need


def fmt(x: float | None) -> str:
    """A number for people: 3 significant digits, or ``-`` for None."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _as_float64(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    return a.astype(np.float64, copy=False)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


# -- values that are not one numeric tensor: strings, sequences, empty optionals -------------


def _numeric(value: Any) -> bool:
    """A tensor of numbers or booleans (what :func:`compare_arrays` compares)."""
    if value is None or isinstance(value, list | tuple):
        return False
    return np.asarray(value).dtype.kind not in "OUSV" or _low_precision(np.asarray(value))


def _low_precision(arr: np.ndarray) -> bool:
    from nnkit.values import is_low_precision

    return is_low_precision(arr.dtype)


def compare_value(
    name: str, ref: Any, got: Any, *, tolerance: Tolerance | None = None
) -> OutputCompareResult:
    """Compare any ONNX value: numeric tensors by :func:`compare_arrays` at the tolerance
    for the reference's dtype, strings exactly, sequences element by element, and an empty
    optional (None) only with an empty optional.

    A sequence's result carries its elements' worst metrics; its reason names the first
    element that failed.
    """
    tolerance = tolerance or Tolerance()
    if ref is None or got is None:
        return _compare_presence(name, ref, got)
    if isinstance(ref, list | tuple) or isinstance(got, list | tuple):
        return _compare_sequences(name, ref, got, tolerance)
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.dtype.kind in "OUS" or got.dtype.kind in "OUS":
        return compare_strings(name, ref, got)
    atol, rtol = tolerance.for_dtype(ref.dtype)
    return compare_arrays(name, ref, got, atol=atol, rtol=rtol)


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


def _compare_sequences(name: str, ref: Any, got: Any, tolerance: Tolerance) -> OutputCompareResult:
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
        compare_value(f"{name}[{i}]", r, g, tolerance=tolerance)
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
