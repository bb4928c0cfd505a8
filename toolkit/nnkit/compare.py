"""Output comparison: metrics, the tolerance policy, and verdicts as values.

The reference is PyTorch; every output of a runtime is compared with the reference's
output of the same name, by one of four modes (``--compare NAME:MODE``):

``allclose`` (the default)
    Every element within ``atol + rtol * |ref|``. By default the rule is
    **scale-aware**: ``atol`` is a fraction of the reference's RMS (over its finite
    values), and the error's RMS must also stay within ``atol`` times the reference's
    RMS (the relative error norm ``||got - ref|| / ||ref|| <= atol``)::

        |got - ref| <= atol * rms(ref) + rtol * |ref|    for every element
        ||got - ref|| <= atol * ||ref||                  over the whole output

    so an output of scale 1e-9 is judged at its own scale, and an output stuck at zero
    fails whatever its scale (its relative error norm is 1). ``atol``/``rtol`` come from
    :data:`DEFAULT_TOLERANCES` for the output's dtype, or from the zoo model (in the same,
    relative, units). A tolerance the user gives (``--atol``/``--rtol``, or
    ``NAME:allclose:atol=X,rtol=Y``) is an explicit override: ``atol`` is then
    **absolute**, and the rule is the element-wise one alone, as :func:`numpy.isclose`
    (an ``atol`` left out stays relative to the RMS). A reference that is all zeros has
    no scale: its default ``atol`` is the dtype's number taken as absolute.
``exact``
    Equal values (``-0.0`` equals ``0.0``). Integer and boolean outputs are compared so
    by default, unless the user gives a tolerance.
``cosine``
    The cosine similarity of the two outputs (flattened) at least ``min``
    (:data:`DEFAULT_MIN_COSINE`): it ignores the scale, so ``2 * ref`` passes.
``set``
    Order-insensitive, for top-k and NMS outputs: both outputs are sorted along
    ``axis`` (default the last) and then compared by ``allclose``. With the last axis each
    row is a multiset of numbers; with another axis the slices along it are the items
    (a box of 4 coordinates), ordered lexicographically.

In every mode shapes and dtypes must be equal, and NaN and infinities are compared by
position: a NaN where the reference has a NaN passes, an infinity where it has the
same infinity passes, anything else there fails. Metrics cover the elements where both
values are finite.

Every result is a value whose truth is the verdict, so a test reads ``assert result``.
It carries the magnitudes of both outputs (``max |.|``, RMS), the cosine and relative
error norm, the share of the tolerance it used, warnings about a degenerate reference
(all zeros, constant, subnormal, below the comparison's resolution, full of ties) and,
beside a failure, the smallest ``atol`` (at the given ``rtol``) and the smallest ``rtol``
(at the given ``atol``) that would have passed as explicit overrides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnkit.errors import NnkitError

#: The comparison modes of ``--compare NAME:MODE``.
MODES = ("allclose", "exact", "cosine", "set")
#: (atol, rtol) per floating dtype where neither the user nor the model says. ``atol`` is
#: relative: a fraction of the reference's RMS, and the bound of the relative error norm.
#: float32's are 84 and 840 machine epsilons; the half types' atol is about 10 and 6
#: epsilons (their runtimes round every element, so a tighter norm fails correct files).
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-8, 1e-7),
    "float32": (1e-5, 1e-4),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
#: The least cosine similarity ``cosine`` mode passes, unless ``min=`` says.
DEFAULT_MIN_COSINE = 0.9999
#: A float reference is "full of ties" when at least this share of its non-zero values
#: (and at least :data:`MIN_TIES` of them) equal another of its values.
TIES_FRACTION = 0.1
MIN_TIES = 3
#: The quantile of the absolute difference that results report (``p99_abs_diff``).
QUANTILE = 0.99
#: ``ref_dtype`` of results that compare no numbers (:func:`compare_value`): a failure's
#: ``reason`` says it all.
NON_NUMERIC = ("string", "sequence", "none", "value")

#: Options each mode takes in ``NAME:MODE:key=value,...``.
_OPTIONS = {
    "allclose": ("atol", "rtol"),
    "exact": (),
    "cosine": ("min",),
    "set": ("axis", "atol", "rtol"),
}


class ToleranceError(NnkitError):
    """A tolerance or comparison rule that cannot be used (NaN, negative, unknown mode)."""


def check_tolerance(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite number >= 0, else a :class:`ToleranceError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ToleranceError(f"{what} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ToleranceError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Rule:
    """How one output is compared: ``--compare NAME:MODE[:key=value,...]``.

    ``atol`` and ``rtol`` given here are explicit (``atol`` absolute) and win over
    ``--atol``/``--rtol``; None keeps the policy's. ``min_cosine`` is ``cosine``'s
    threshold and ``axis`` ``set``'s axis.

    Raises:
        ToleranceError: an unknown mode, an option the mode does not take, a NaN,
            infinite or negative tolerance, a ``min`` outside (0, 1].
    """

    mode: str = "allclose"
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    axis: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ToleranceError(
                f"unknown comparison mode {self.mode!r}: valid modes are {', '.join(MODES)}"
            )
        takes = _OPTIONS[self.mode]
        for key, value in (("atol", self.atol), ("rtol", self.rtol)):
            if value is not None:
                if key not in takes:
                    raise ToleranceError(f"mode {self.mode!r} takes no {key}")
                object.__setattr__(self, key, check_tolerance(value, key))
        if self.min_cosine is not None:
            if self.mode != "cosine":
                raise ToleranceError(f"mode {self.mode!r} takes no min (cosine's threshold)")
            try:
                m = float(self.min_cosine)
            except (TypeError, ValueError):
                m = math.nan
            if not (0 < m <= 1):
                raise ToleranceError(f"cosine min must be in (0, 1], got {self.min_cosine!r}")
            object.__setattr__(self, "min_cosine", m)
        if self.axis is not None:
            if self.mode != "set":
                raise ToleranceError(f"mode {self.mode!r} takes no axis")
            if isinstance(self.axis, bool) or not isinstance(self.axis, int):
                raise ToleranceError(f"set axis must be an integer, got {self.axis!r}")

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``MODE[:key=value,...]``: ``cosine:min=0.999``, ``allclose:atol=1e-3,rtol=1e-2``,
        ``set:axis=0``, ``exact``.

        Raises:
            ToleranceError: bad text; the message lists the modes or the mode's options.
        """
        mode, _, options = text.strip().partition(":")
        if mode not in MODES:
            raise ToleranceError(
                f"unknown comparison mode {mode!r} in {text!r}: valid modes are {', '.join(MODES)}"
            )
        takes = _OPTIONS[mode]
        values: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in options.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in takes:
                valid = ", ".join(f"{k}=" for k in takes) if takes else "none"
                raise ToleranceError(
                    f"bad option {item!r} for mode {mode!r} in {text!r}: its options are {valid}"
                )
            if key == "axis":
                try:
                    values["axis"] = int(value)
                except ValueError:
                    raise ToleranceError(
                        f"set axis must be an integer, got {value.strip()!r}"
                    ) from None
            else:
                try:
                    number = float(value)
                except ValueError:
                    raise ToleranceError(
                        f"{key} must be a number, got {value.strip()!r} in {text!r}"
                    ) from None
                values["min_cosine" if key == "min" else key] = number
        return cls(mode, **values)

    def text(self) -> str:
        """The canonical ``MODE[:key=value,...]`` form."""
        options = [
            f"{key}={_short(value) if isinstance(value, float) else value}"
            for key, value in (
                ("atol", self.atol),
                ("rtol", self.rtol),
                ("min", self.min_cosine),
                ("axis", self.axis),
            )
            if value is not None
        ]
        return self.mode + (":" + ",".join(options) if options else "")


def parse_compare(text: str) -> tuple[str, Rule]:
    """``NAME:MODE[:key=value,...]`` -> (output name, rule).

    The name may itself hold colons (``scores:0:set``): the mode is the last part that
    names one.

    Raises:
        ToleranceError: no mode, or a bad rule.
    """
    parts = text.split(":")
    at = max((i for i, p in enumerate(parts) if i > 0 and p.strip() in MODES), default=None)
    if at is None or not ":".join(parts[:at]).strip():
        raise ToleranceError(
            f"bad --compare {text!r}: expected NAME:MODE[:key=value,...] with MODE one of "
            f"{', '.join(MODES)} (e.g. logits:cosine:min=0.999, labels:exact)"
        )
    return ":".join(parts[:at]).strip(), Rule.parse(":".join(parts[at:]))


def _rule(value: Rule | str) -> Rule:
    if isinstance(value, Rule):
        return value
    if isinstance(value, str):
        return Rule.parse(value)
    raise ToleranceError(f"a comparison rule is a Rule or text like 'cosine', got {value!r}")


@dataclass(frozen=True)
class Check:
    """The rule one output is compared by, resolved from the policy and its dtype.

    ``atol`` is a fraction of the reference's RMS when ``relative`` (the default rule,
    which then also bounds the relative error norm by ``norm``), else absolute.
    ``fallback_atol`` is the absolute ``atol`` of a relative rule whose reference has no
    scale (all zeros).
    """

    mode: str
    atol: float
    rtol: float
    relative: bool = False
    norm: float | None = None
    fallback_atol: float = 0.0
    min_cosine: float | None = None
    axis: int | None = None


@dataclass(frozen=True)
class Tolerance:
    """The comparison policy of a run: what the user, the model and the dtype say.

    ``atol``/``rtol`` are the user's explicit overrides (``atol`` absolute) for every
    output; ``model_atol``/``model_rtol`` the model's (in the units of
    :data:`DEFAULT_TOLERANCES`: ``atol`` relative to the output's RMS); ``compare`` a
    rule per output name (text such as ``"cosine:min=0.999"`` or a :class:`Rule`),
    which wins over both for its output.

    Raises:
        ToleranceError: a NaN, infinite or negative tolerance, or a bad rule.
    """

    atol: float | None = None
    rtol: float | None = None
    model_atol: float | None = None
    model_rtol: float | None = None
    compare: Mapping[str, Rule | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, what in (
            ("atol", "atol"),
            ("rtol", "rtol"),
            ("model_atol", "the model's atol"),
            ("model_rtol", "the model's rtol"),
        ):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, check_tolerance(value, what))
        rules = {}
        for name, value in dict(self.compare).items():
            if not isinstance(name, str) or not name:
                raise ToleranceError(f"an output name in compare must be text, got {name!r}")
            rules[name] = _rule(value)
        object.__setattr__(self, "compare", rules)

    def rule(self, name: str) -> Rule:
        """The rule of output ``name``: its own, else the default ``allclose``."""
        rule = self.compare.get(name)
        return rule if isinstance(rule, Rule) else Rule()  # compare holds Rules only

    def check(self, name: str, dtype: np.dtype | str) -> Check:
        """How output ``name`` of ``dtype`` is compared."""
        dtype_name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
        rule = self.rule(name)
        atol = rule.atol if rule.atol is not None else self.atol
        rtol = rule.rtol if rule.rtol is not None else self.rtol
        if rule.mode == "cosine":
            return Check("cosine", 0.0, 0.0, min_cosine=rule.min_cosine or DEFAULT_MIN_COSINE)
        if rule.mode == "exact":
            return Check("exact", 0.0, 0.0)
        mode = rule.mode
        axis = -1 if rule.axis is None and mode == "set" else rule.axis
        if dtype_name not in DEFAULT_TOLERANCES:  # integers and booleans: exact unless told
            if atol is None and rtol is None:
                return Check("exact" if mode == "allclose" else mode, 0.0, 0.0, axis=axis)
            return Check(mode, atol or 0.0, rtol or 0.0, axis=axis)
        default_atol, default_rtol = DEFAULT_TOLERANCES[dtype_name]
        rel_atol = self.model_atol if self.model_atol is not None else default_atol
        rel_rtol = self.model_rtol if self.model_rtol is not None else default_rtol
        if atol is None and rtol is None:
            return Check(
                mode,
                rel_atol,
                rel_rtol,
                relative=True,
                norm=rel_atol,
                fallback_atol=rel_atol,
                axis=axis,
            )
        if atol is None:  # only rtol given: atol stays relative, the rule element-wise
            return Check(mode, rel_atol, rtol, relative=True, fallback_atol=rel_atol, axis=axis)
        return Check(mode, atol, rel_rtol if rtol is None else rtol, axis=axis)

    def for_dtype(self, dtype: np.dtype | str) -> tuple[float, float]:
        """(atol, rtol) of an unnamed ``allclose`` output of ``dtype``; ``atol`` is relative
        to the output's RMS unless the user gave it."""
        check = self.check("", dtype)
        return check.atol, check.rtol


@dataclass
class OutputCompareResult:
    """How one output of a runtime compares with the reference; true when it passed.

    The diffs cover the elements where both values are finite. ``max_rel_diff`` is
    ``|got - ref| / |ref|`` over the elements where the reference is not zero.
    ``atol`` is the absolute ``atol`` applied (``relative_atol`` times ``ref_rms`` under
    the default rule); ``norm_tol`` the bound of ``rel_err_norm`` (None where the rule has
    none). ``error_ratio`` is how much of the tolerance the worst element (or the norm, or
    the cosine) used: 1 is the limit. ``min_atol`` / ``min_rtol`` are the smallest explicit
    tolerances that would have passed with the other one as applied; None where none
    would (non-finite values in different places; for ``min_rtol``, a difference beyond
    ``atol`` where the reference is zero; modes other than ``allclose`` and ``set``).
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
    mode: str = "allclose"
    relative_atol: float | None = None
    norm_tol: float | None = None
    min_cosine: float | None = None
    axis: int | None = None
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    mean_abs_diff: float = 0.0
    p99_abs_diff: float = 0.0
    #: ``||got - ref|| / ||ref||`` (0 when both are zero, inf when only the reference is).
    rel_err_norm: float = 0.0
    #: Cosine similarity of the two, flattened (1 when both are zero, 0 when one is).
    cosine: float = 1.0
    ref_max_abs: float = 0.0
    ref_rms: float = 0.0
    got_max_abs: float | None = None
    got_rms: float | None = None
    error_ratio: float | None = 0.0
    #: Elements outside the tolerance, non-finite values in different places included.
    mismatches: int = 0
    #: Positions where the NaN/Inf pattern of the two differs.
    nonfinite_mismatches: int = 0
    #: Positions where the reference is NaN or infinite (and the runtime agrees or not).
    nonfinite: int = 0
    min_atol: float | None = 0.0
    min_rtol: float | None = 0.0
    #: What makes the reference a weak judge (all zeros, constant, ties, ...).
    warnings: list[str] = field(default_factory=list)
    #: Why it failed, in words ("shape (2, 7, 20) != (2, 13, 20)"); empty when it passed.
    reason: str = ""
    #: Whether the values were compared (not when shapes differ or a set axis is wrong).
    compared: bool = False

    def __bool__(self) -> bool:
        return self.passed

    def rule(self) -> str:
        """The rule applied, in words: ``|got-ref| <= 1e-05*rms(ref) + 0.0001*|ref|, ...``."""
        if self.mode == "exact":
            return "got == ref"
        if self.mode == "cosine":
            return f"cosine(got, ref) >= {self.min_cosine:.6g}"
        if self.relative_atol is not None:
            atol = f"{fmt(self.relative_atol)}*rms(ref)"
        else:
            atol = fmt(self.atol)
        text = f"|got-ref| <= {atol} + {fmt(self.rtol)}*|ref|"
        if self.norm_tol is not None:
            text += f" and ||got-ref|| <= {fmt(self.norm_tol)}*||ref||"
        if self.mode == "set":
            text = f"sorted along axis {self.axis}, {text}"
        return text

    def magnitudes(self) -> str:
        """``max|ref|=... rms(ref)=... max|got|=... rms(got)=...``."""
        text = f"max|ref|={fmt(self.ref_max_abs)} rms(ref)={fmt(self.ref_rms)}"
        if self.got_max_abs is not None:
            text += f" max|got|={fmt(self.got_max_abs)} rms(got)={fmt(self.got_rms)}"
        return text

    def metrics(self) -> str:
        """The diffs, the norms and the magnitudes, on one line."""
        return (
            f"max_abs_diff={fmt(self.max_abs_diff)} max_rel_diff={fmt(self.max_rel_diff)} "
            f"mean_abs_diff={fmt(self.mean_abs_diff)} p99_abs_diff={fmt(self.p99_abs_diff)} "
            f"rel_err_norm={fmt(self.rel_err_norm)} cosine={_fmt_cosine(self.cosine)}; "
            f"{self.magnitudes()}"
        )

    def detail(self) -> str:
        """One line for any result: the verdict, the metrics, the share of tolerance used."""
        head = f"{self.name!r} {'pass' if self.passed else 'FAIL'} ({self.mode}): "
        if not self.compared or self.got_dtype != self.ref_dtype:
            return head + self.reason
        used = f"; {_used(self.error_ratio)}" if self.error_ratio is not None else ""
        return head + self.metrics() + used

    def summary(self) -> str:
        """One line: the verdict, the numbers, and what would have passed."""
        head = f"{self.name!r}: "
        if not self.compared or self.got_dtype != self.ref_dtype:
            return head + self.reason
        if self.passed:
            return head + "pass " + self.metrics()
        parts = [self.reason, self.metrics()]
        if self.mode in ("allclose", "set"):
            parts.append(self.would_pass())
        return head + "; ".join(parts)

    def would_pass(self) -> str:
        """The smallest explicit tolerances that would have passed, in words."""
        if self.min_atol is None and self.min_rtol is None:
            if self.nonfinite_mismatches:
                return "no tolerance would pass (NaN/Inf in different places)"
            return "no tolerance would pass"
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
        """JSON-ready: every field (``compared`` aside); non-finite floats as None."""
        return {
            "name": self.name,
            "passed": self.passed,
            "mode": self.mode,
            "rule": self.rule(),
            "atol": _finite(self.atol),
            "rtol": self.rtol,
            "relative_atol": self.relative_atol,
            "norm_tol": self.norm_tol,
            "min_cosine": self.min_cosine,
            "axis": self.axis,
            "ref_shape": list(self.ref_shape),
            "got_shape": None if self.got_shape is None else list(self.got_shape),
            "ref_dtype": self.ref_dtype,
            "got_dtype": self.got_dtype,
            "size": self.size,
            "max_abs_diff": _finite(self.max_abs_diff),
            "max_rel_diff": _finite(self.max_rel_diff),
            "mean_abs_diff": _finite(self.mean_abs_diff),
            "p99_abs_diff": _finite(self.p99_abs_diff),
            "rel_err_norm": _finite(self.rel_err_norm),
            "cosine": _finite(self.cosine),
            "ref_max_abs": _finite(self.ref_max_abs),
            "ref_rms": _finite(self.ref_rms),
            "got_max_abs": _finite(self.got_max_abs),
            "got_rms": _finite(self.got_rms),
            "error_ratio": _finite(self.error_ratio),
            "mismatches": self.mismatches,
            "nonfinite": self.nonfinite,
            "nonfinite_mismatches": self.nonfinite_mismatches,
            "min_atol": _finite(self.min_atol),
            "min_rtol": _finite(self.min_rtol),
            "warnings": list(self.warnings),
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

    @property
    def warnings(self) -> list[str]:
        """Every output's warnings, each prefixed with the output's name."""
        return [f"output {o.name!r}: {w}" for o in self.outputs for w in o.warnings]

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
    r, g = _as_float64(ref), _as_float64(got)
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
    if check.mode == "set":
        axis = -1 if check.axis is None else check.axis
        try:
            ref, got = sort_items(ref, axis), sort_items(got, axis)
        except np.exceptions.AxisError:
            result.reason = f"set axis {check.axis} is out of range for a {r.ndim}-d output"
            result.min_atol = result.min_rtol = result.error_ratio = None
            return result
        r, g = _as_float64(ref), _as_float64(got)
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
        result.reason = f"cosine {_fmt_cosine(result.cosine)} < {threshold:.6g}"


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
    r = _as_float64(ref)
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
        nonzero = values[values != 0]
        _, counts = np.unique(nonzero, return_counts=True)
        tied = int(counts[counts > 1].sum())
        if tied >= max(MIN_TIES, TIES_FRACTION * nonzero.size):
            out.append(
                f"the reference is full of ties ({TIES_FRACTION:.0%} or more of its non-zero "
                "values equal another): the order of anything ranked by it (top-k, NMS, sort) "
                "is arbitrary; compare such outputs with --compare NAME:set"
            )
    return out


# -- helpers ------------------------------------------------------------------------


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


def _short(x: float) -> str:
    """The shortest text that reads back as ``x``: ``0.001``, ``1e-05``, ``0.99999999``."""
    text = f"{x:g}"
    return text if float(text) == x else repr(x)


def fmt(x: float | None) -> str:
    """A number for people: 3 significant digits, or ``-`` for None."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _fmt_cosine(x: float) -> str:
    """Cosine near 1 shows how near: ``1-3.2e-13``."""
    if math.isnan(x):
        return "nan"
    if 0.999 < x < 1:
        return f"1-{1 - x:.2g}"
    return fmt(x)


def _used(ratio: float) -> str:
    """How much of the tolerance a result used: ``used 2.1% of the tolerance``."""
    if math.isinf(ratio):
        return "infinitely over the tolerance"
    if ratio > 1:
        return f"{ratio:.3g}x the tolerance"
    return f"used {100 * ratio:.2g}% of the tolerance"


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
