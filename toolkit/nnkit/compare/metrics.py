"""The numeric comparison: one tensor against the reference, by a resolved rule.

Shapes and dtypes must be equal; NaN and infinities are compared by position; metrics
cover the elements where both values are finite (see :mod:`nnkit.compare`). Beside a
failure, :func:`min_atol` and :func:`min_rtol` find the smallest explicit tolerances
that would have passed, evaluated exactly as the rule is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nnkit.compare.agreement import correlation, snr_db, top_k_agreement
from nnkit.compare.result import OutputCompareResult
from nnkit.compare.rules import DEFAULT_MIN_COSINE, DEFAULT_TOLERANCES, Check, Rule, Tolerance
from nnkit.compare.text import fmt, fmt_cosine, short

#: A float reference is "full of ties" when at least this share of its non-zero values
#: (and at least :data:`MIN_TIES` of them) equal another value of the same row (the last
#: axis, which a top-k or an argmax ranks).
TIES_FRACTION = 0.1
MIN_TIES = 3
#: The quantile of the absolute difference that results report (``p99_abs_diff``).
QUANTILE = 0.99


def compare_arrays(
    name: str,
    ref: np.ndarray,
    got: np.ndarray,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    rule: Rule | str | None = None,
) -> OutputCompareResult:
    """Compare one output: shapes exactly, dtypes exactly, then by the rule.

    Args:
        name: the output's name, for messages.
        ref: the reference array.
        got: the runtime's array.
        atol: explicit absolute tolerance; the scale-aware default when None.
        rtol: explicit relative tolerance, times ``|ref|``; the dtype's when None.
        rule: the mode (and its options), ``allclose`` when None.

    Raises:
        ToleranceError: a NaN, infinite or negative tolerance, or a bad rule.
    """
    ref = np.asarray(ref)
    rules = {name: rule} if rule is not None else {}
    check = Tolerance(atol=atol, rtol=rtol, compare=rules).check(name, ref.dtype)
    return compare_with(name, ref, got, check)


def compare_with(name: str, ref: np.ndarray, got: np.ndarray, check: Check) -> OutputCompareResult:
    """Compare one output by a resolved :class:`Check` (see the module's docstring)."""
    ref, got = np.asarray(ref), np.asarray(got)
    result = OutputCompareResult(
        name=name,
        passed=False,
        atol=float(check.atol),
        rtol=float(check.rtol),
        ref_shape=tuple(ref.shape),
        got_shape=tuple(got.shape),
        ref_dtype=str(ref.dtype),
        got_dtype=str(got.dtype),
        size=int(ref.size),
        mode=check.mode,
        min_cosine=check.min_cosine,
        axis=check.axis,
    )
    r, g = as_float64(ref), as_float64(got)
    result.ref_max_abs, result.ref_rms = _magnitudes(r)
    result.got_max_abs, result.got_rms = _magnitudes(g)
    if check.relative:
        if result.ref_rms > 0:
            result.relative_atol = check.atol
            result.atol = check.atol * result.ref_rms
            result.norm_tol = check.norm
        else:  # no scale to be relative to
            result.atol = check.fallback_atol
    result.warnings = degenerate(ref, check, atol=result.atol)
    if ref.shape != got.shape:
        result.reason = f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
        result.min_atol = result.min_rtol = result.error_ratio = None
        return result
    if ref.dtype.kind in "fc" or str(ref.dtype) in DEFAULT_TOLERANCES:
        result.top1, result.top5 = top_k_agreement(r, g)
    if check.mode == "set":
        axis = -1 if check.axis is None else check.axis
        try:
            ref, got = sort_items(ref, axis), sort_items(got, axis)
        except np.exceptions.AxisError:
            result.reason = f"set axis {check.axis} is out of range for a {r.ndim}-d output"
            result.min_atol = result.min_rtol = result.error_ratio = None
            return result
        r, g = as_float64(ref), as_float64(got)
    ref_finite, got_finite = np.isfinite(r), np.isfinite(g)
    both = ref_finite & got_finite
    # Non-finite positions must agree exactly: NaN with NaN, +inf with +inf.
    nonfinite_bad = ~both & ~(np.isnan(r) & np.isnan(g)) & ~((r == g) & ~ref_finite)
    result.nonfinite = int((~ref_finite).sum())
    result.nonfinite_mismatches = int(nonfinite_bad.sum())
    result.compared = True
    rb, gb = r[both], g[both]
    diff = np.abs(gb - rb)
    mag = np.abs(rb)
    if diff.size:
        result.max_abs_diff = float(diff.max())
        result.mean_abs_diff = float(diff.mean())
        result.p99_abs_diff = float(np.quantile(diff, QUANTILE))
        nonzero = mag > 0
        if nonzero.any():
            result.max_rel_diff = float((diff[nonzero] / mag[nonzero]).max())
    result.rel_err_norm = _ratio(_norm(gb - rb), _norm(rb))
    result.cosine = cosine(rb, gb)
    result.snr_db = snr_db(rb, gb)
    result.correlation = correlation(rb, gb)
    if check.mode == "exact":
        integers = ref.dtype.kind in "biu" and ref.dtype == got.dtype
        # Integers are compared as they are: float64 cannot tell 2**53 from 2**53 + 1.
        _exact(result, int(np.count_nonzero(ref != got)) if integers else int((diff != 0).sum()))
    elif check.mode == "cosine":
        _cosine(result)
    else:
        _allclose(result, diff, mag)
    if not result.passed and result.got_max_abs == 0 and result.ref_max_abs > 0:
        result.reason = "the output is all zeros; " + result.reason
    if result.nonfinite_mismatches:
        result.min_atol = result.min_rtol = result.error_ratio = None
        result.passed = False
        where = f"{result.nonfinite_mismatches} NaN/Inf in different places"
        result.reason = "; ".join(filter(None, (result.reason, where)))
    if str(ref.dtype) != str(got.dtype):
        result.passed = False
        result.reason = f"dtype {got.dtype} != reference {ref.dtype}"
    return result


def _allclose(result: OutputCompareResult, diff: np.ndarray, mag: np.ndarray) -> None:
    atol, rtol = result.atol, result.rtol
    outside = int((diff > allowed(mag, atol=atol, rtol=rtol)).sum())
    result.mismatches = outside + result.nonfinite_mismatches
    norm_ok = result.norm_tol is None or result.rel_err_norm <= result.norm_tol
    result.passed = result.mismatches == 0 and norm_ok
    result.error_ratio = _element_ratio(diff, mag, atol=atol, rtol=rtol)
    if result.norm_tol is not None:
        result.error_ratio = max(result.error_ratio, _ratio(result.rel_err_norm, result.norm_tol))
    if result.passed:
        result.error_ratio = min(result.error_ratio, 1.0)
    result.min_atol = min_atol(diff, mag, rtol=rtol)
    result.min_rtol = min_rtol(diff, mag, atol=atol)
    reasons = []
    if outside:
        how = (
            f"{fmt(result.relative_atol)}*rms(ref)={fmt(atol)}"
            if result.relative_atol is not None
            else fmt(atol)
        )
        reasons.append(
            f"{outside}/{result.size} elements outside atol={how} + rtol={fmt(rtol)}*|ref|"
        )
    if not norm_ok:
        reasons.append(f"relative error norm {fmt(result.rel_err_norm)} > {fmt(result.norm_tol)}")
    result.reason = "; ".join(reasons)


def _exact(result: OutputCompareResult, outside: int) -> None:
    result.mismatches = outside + result.nonfinite_mismatches
    result.passed = result.mismatches == 0
    result.error_ratio = 0.0 if outside == 0 else None
    result.min_atol = result.min_rtol = None
    if outside:
        result.reason = f"{outside}/{result.size} elements differ (exact)"


def _cosine(result: OutputCompareResult) -> None:
    threshold = result.min_cosine if result.min_cosine is not None else DEFAULT_MIN_COSINE
    result.mismatches = result.nonfinite_mismatches
    result.passed = result.cosine >= threshold
    result.error_ratio = _ratio(1.0 - result.cosine, 1.0 - threshold)
    if result.passed:
        result.error_ratio = min(result.error_ratio, 1.0)
    result.min_atol = result.min_rtol = None
    if not result.passed:
        result.reason = f"cosine {fmt_cosine(result.cosine)} < {short(threshold)}"


# -- degenerate references ----------------------------------------------------------


def degenerate(ref: np.ndarray, check: Check, *, atol: float) -> list[str]:
    """Why ``ref`` is a weak judge of an output, in words; empty when it is a fair one.

    The words do not depend on the case's size, so a cell says each once (the numbers
    are in the result). All NaN/Inf, all zeros, constant, subnormal (below the dtype's smallest normal
    number, which runtimes may flush to zero), below the comparison's resolution (an
    all-zero output would pass), or full of ties (the order of anything ranked by it,
    top-k or NMS, is then arbitrary; not looked for in ``exact`` and ``set`` modes).

    Args:
        ref: the reference array.
        check: the rule it is judged by.
        atol: the absolute ``atol`` that rule applies to it.
    """
    ref = np.asarray(ref)
    if ref.size == 0:
        return []
    r = as_float64(ref)
    values = r[np.isfinite(r)]
    if values.size == 0:
        return ["the reference has no finite value (all NaN/Inf)"]
    out = []
    peak = float(np.abs(values).max())
    if peak == 0:
        text = "the reference is all zeros: an output stuck at 0 matches it"
        if check.relative and check.mode in ("allclose", "set"):
            text += f"; it has no scale, so it is compared with the absolute atol={fmt(atol)}"
        return [text]
    if values.size > 1 and bool(np.all(values == values[0])):
        out.append(
            f"the reference is constant (every value {values[0]:.6g}): an output that ignores "
            "its input matches it, and an order built on it is arbitrary"
        )
    is_float = str(ref.dtype) in DEFAULT_TOLERANCES
    if is_float:
        # bfloat16 (not a numpy dtype) has float32's exponent range.
        tiny = float(np.finfo(ref.dtype if ref.dtype.kind == "f" else np.float32).tiny)
        if peak < tiny:
            out.append(
                f"the reference is subnormal (below {ref.dtype}'s smallest normal number, "
                f"{fmt(tiny)}): runtimes may flush it to zero"
            )
    if check.mode in ("allclose", "set") and not (check.relative and check.norm is not None):
        zeros_pass = bool(
            np.all(np.abs(values) <= allowed(np.abs(values), atol=atol, rtol=check.rtol))
        )
        if zeros_pass:
            out.append(
                "the reference is below the comparison's resolution (every |ref| is within "
                f"atol={fmt(atol)} + rtol={fmt(check.rtol)}*|ref|): an all-zero output would "
                "pass; give a smaller atol, or leave atol to the scale-aware default"
            )
    if is_float and check.mode in ("allclose", "cosine") and not out:
        tied, nonzero = _ties_within_rows(r)
        if tied >= max(MIN_TIES, TIES_FRACTION * nonzero):
            out.append(
                f"the reference is full of ties ({TIES_FRACTION:.0%} or more of its non-zero "
                "values equal another of their row): the order of anything ranked by it (top-k, NMS, sort) "
                "is arbitrary; compare such outputs with --compare NAME:set"
            )
    return out


# -- helpers ------------------------------------------------------------------------


def _ties_within_rows(r: np.ndarray) -> tuple[int, int]:
    """How many finite non-zero values equal another value of their own row (the last
    axis: what a top-k, an argmax or a sort ranks), and how many there are.

    Rows that repeat each other (a padding mask gives every masked position one row)
    rank nothing against each other: they are no ties.
    """
    rows = np.sort(r.reshape(-1, r.shape[-1]) if r.ndim else r.reshape(1, 1), axis=-1)
    valid = np.isfinite(rows) & (rows != 0)
    same = (rows[:, 1:] == rows[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    tied = np.zeros(rows.shape, dtype=bool)
    tied[:, 1:] |= same
    tied[:, :-1] |= same
    return int(tied.sum()), int(valid.sum())


def allowed(mag: np.ndarray, *, atol: float, rtol: float) -> np.ndarray:
    """``atol + rtol * |ref|`` per element; ``atol`` alone where the reference is 0.

    (So an infinite ``rtol`` never meets ``0 * inf``.)
    """
    with np.errstate(invalid="ignore", over="ignore"):
        slack = np.where(mag == 0, 0.0, rtol * mag)
    return atol + slack


def passes(diff: np.ndarray, mag: np.ndarray, *, atol: float, rtol: float) -> bool:
    """The element-wise rule on precomputed ``|got - ref|`` and ``|ref|`` (float64)."""
    return bool(np.all(diff <= allowed(mag, atol=atol, rtol=rtol)))


#: Steps the would-have-passed search takes past its closed form, at most.
_SEARCH_STEPS = 64


def _smallest_passing(
    start: float, ok: Callable[[float], bool], step: Callable[[float], float]
) -> float | None:
    """The first value from ``start`` up for which ``ok`` holds, in at most
    :data:`_SEARCH_STEPS` growing steps (rounding leaves a closed form an ulp short)."""
    need = start
    for k in range(_SEARCH_STEPS):
        if ok(need):
            return need
        need = need + step(need) * 2.0**k
        if not math.isfinite(need):
            return None
    return need if ok(need) else None


def min_atol(diff: np.ndarray, mag: np.ndarray, *, rtol: float) -> float | None:
    """The smallest ``atol`` for which every element passes at ``rtol``.

    ``max(diff - rtol * |ref|)``, then raised until the rule, evaluated exactly as
    :func:`passes` does, holds. Bounded: never more than ``max(diff)``, which always
    passes; None for a NaN ``rtol`` or an infinite difference.
    """
    if not diff.size:
        return 0.0
    top = float(np.max(diff))
    if math.isnan(rtol) or not math.isfinite(top):
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        slack = np.where(mag == 0, 0.0, rtol * mag)
        need = float(np.max(diff - slack))
    need = min(max(need, 0.0), top) if math.isfinite(need) else 0.0

    def ok(atol: float) -> bool:
        return passes(diff, mag, atol=atol, rtol=rtol)

    def step(atol: float) -> float:  # one ulp of the largest allowance still short
        room = atol + slack
        worst = float(np.max(room[diff > room]))
        return float(np.spacing(max(worst, atol, np.finfo(float).tiny)))

    found = _smallest_passing(need, ok, step)
    return top if found is None or found > top else found


def min_rtol(diff: np.ndarray, mag: np.ndarray, *, atol: float) -> float | None:
    """The smallest ``rtol`` for which every element passes at ``atol``; None if none can.

    None when some element is off by more than ``atol`` where the reference is zero, or
    when the needed ``rtol`` is not a finite number (NaN ``atol``, huge ratios).
    """
    if math.isnan(atol):
        return None
    over = diff > atol
    if not over.any():
        return 0.0
    if np.any(mag[over] == 0):
        return None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        need = float(np.max((diff[over] - atol) / mag[over]))
    if not math.isfinite(need):
        return None
    need = max(need, 0.0)

    def ok(rtol: float) -> bool:
        return passes(diff, mag, atol=atol, rtol=rtol)

    def step(rtol: float) -> float:
        return float(np.spacing(max(rtol, np.finfo(float).tiny)))

    return _smallest_passing(need, ok, step)


def sort_items(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with the items along ``axis`` in order: numbers along the last axis, else the
    slices along ``axis`` (each flattened), lexicographically; NaN last.

    Raises:
        numpy.exceptions.AxisError: ``axis`` is out of range.
    """
    a = np.asarray(a)
    axis = int(np.lib.array_utils.normalize_axis_index(axis, a.ndim)) if a.ndim else -1
    if a.ndim == 0:
        raise np.exceptions.AxisError(axis, 0)
    if axis == a.ndim - 1:
        return np.sort(a, axis=-1)
    lead, n = a.shape[:axis], a.shape[axis]
    items = a.reshape(int(np.prod(lead, dtype=np.int64)), n, -1).copy()
    for group in items:
        order = np.lexsort(group.T[::-1])
        group[...] = group[order]
    return items.reshape(a.shape)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened: 1 when both are zero, 0 when one is."""
    na, nb = _norm(a), _norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    if not (math.isfinite(na) and math.isfinite(nb)):
        return math.nan
    value = float(np.dot((a / na).ravel(), (b / nb).ravel()))
    return min(max(value, -1.0), 1.0)


def _norm(a: np.ndarray) -> float:
    """The 2-norm, without overflow for huge values."""
    if a.size == 0:
        return 0.0
    peak = float(np.max(np.abs(a)))
    if peak == 0 or not math.isfinite(peak):
        return peak
    return peak * float(np.sqrt(np.sum(np.square(a / peak))))


def _magnitudes(a: np.ndarray) -> tuple[float, float]:
    """(max |a|, RMS of a) over the finite values; (0, 0) for none."""
    values = a[np.isfinite(a)]
    if values.size == 0:
        return 0.0, 0.0
    return float(np.max(np.abs(values))), _norm(values) / math.sqrt(values.size)


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def _element_ratio(diff: np.ndarray, mag: np.ndarray, *, atol: float, rtol: float) -> float:
    if not diff.size:
        return 0.0
    room = allowed(mag, atol=atol, rtol=rtol)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(
            room > 0, diff / np.where(room > 0, room, 1.0), np.where(diff > 0, np.inf, 0.0)
        )
    return float(np.max(ratios))


def as_float64(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    return a.astype(np.float64, copy=False)
