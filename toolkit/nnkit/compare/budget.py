"""Budgets: how far from PyTorch each variant (a rewritten file) may be.

Element-wise tolerances are right for rewrites that keep the math and wrong for those
that change it by design. Each variant has a budget (:data:`DEFAULT_BUDGETS`):

``slim``, ``optimized``
    the base's own rule (``--atol``/``--rtol``/``--compare``, else the scale-aware
    default), unchanged; a budget given for them can only add checks (cosine, corr,
    snr, top1, top5), never loosen the base's verdict.
``fp16``
    the scale-aware element-wise rule with ``atol=0.01`` (times the reference's RMS, and
    the bound of the relative error norm) and ``rtol=0.01``; cosine and correlation
    >= 0.999.
``int8-dynamic``, ``int8-static``
    cosine and correlation >= 0.99, and for class-score-like outputs (2-D, more than one
    class) top-1 agreement >= 0.9; no element-wise rule.

The correlation (Pearson's r, the cosine with the means removed) is there because cosine
alone passes an output stuck near the reference's mean when the mean dwarfs the
variation (features around 5 +- 0.1: a constant 5 has cosine 0.9998).

In every budget shapes, dtypes and the places of NaN/Inf must still match exactly, and
integer outputs are compared exactly. ``--budget VARIANT:metric=value[,...]``
(:func:`parse_budget`) overrides a budget's numbers: ``atol``/``rtol`` (element-wise,
scale-aware; not for slim/optimized), ``cosine`` and ``corr`` (in (0, 1]), ``snr`` (dB),
``top1`` and ``top5`` (in [0, 1]). A failure says the numbers and the budget that would
have passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnkit.compare.result import CompareResult, OutputCompareResult
from nnkit.compare.rules import DEFAULT_TOLERANCES, Rule, Tolerance, ToleranceError
from nnkit.compare.text import fmt, fmt_cosine, short

#: The metrics a budget sets.
METRICS = ("atol", "rtol", "cosine", "corr", "snr", "top1", "top5")
#: Variants judged by the base's rule (the math is the same): budgets only add checks.
SAME_MATH = ("slim", "optimized")


@dataclass(frozen=True)
class Budget:
    """A variant's budget; None leaves a metric unchecked.

    With ``atol`` or ``rtol`` set, floating outputs are judged by the scale-aware
    element-wise rule with them (``atol`` relative to the reference's RMS, and the bound
    of the relative error norm); with neither, by ``cosine`` alone, or (``same_math``)
    by the base's rule. ``cosine``, ``snr``, ``top1``, ``top5`` are further checks.
    """

    atol: float | None = None
    rtol: float | None = None
    cosine: float | None = None
    corr: float | None = None
    snr: float | None = None
    top1: float | None = None
    top5: float | None = None
    #: Judged by the base's rule first (slim, optimized).
    same_math: bool = False

    def text(self) -> str:
        """``atol=0.01,rtol=0.01,cosine=0.999``, or ``base rule`` (and its additions)."""
        parts = [f"{k}={short(v)}" for k in METRICS if (v := getattr(self, k)) is not None]
        if self.same_math:
            parts.insert(0, "base rule")
        return ",".join(parts) or "base rule"


#: Each variant's budget where ``--budget`` does not say.
DEFAULT_BUDGETS: dict[str, Budget] = {
    "slim": Budget(same_math=True),
    "optimized": Budget(same_math=True),
    "fp16": Budget(atol=1e-2, rtol=1e-2, cosine=0.999, corr=0.999),
    "int8-dynamic": Budget(cosine=0.99, corr=0.99, top1=0.9),
    "int8-static": Budget(cosine=0.99, corr=0.99, top1=0.9),
}


def parse_budget(text: str) -> tuple[str, dict[str, float]]:
    """``VARIANT:metric=value[,...]`` -> (variant, metric -> value).

    Raises:
        ToleranceError: no variant or an unknown one, an unknown metric, a value out of
            range; the message lists the valid choices.
    """
    variant, sep, rest = text.partition(":")
    variant = variant.strip()
    if not sep or not rest.strip():
        raise ToleranceError(
            f"bad --budget {text!r}: expected VARIANT:metric=value[,...], e.g. "
            "int8-dynamic:cosine=0.995,top1=0.95"
        )
    if variant not in DEFAULT_BUDGETS:
        raise ToleranceError(
            f"bad --budget {text!r}: unknown variant {variant!r}; variants with a budget are "
            f"{', '.join(DEFAULT_BUDGETS)} (base is judged by --atol/--rtol/--compare)"
        )
    values: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or key not in METRICS:
            raise ToleranceError(
                f"bad --budget {text!r}: unknown metric {key!r}; metrics are {', '.join(METRICS)}"
            )
        if key in ("atol", "rtol") and variant in SAME_MATH:
            raise ToleranceError(
                f"bad --budget {text!r}: {variant} is judged by the base's rule (--atol, "
                "--rtol, --compare); its budget can only add cosine, corr, snr, top1, top5"
            )
        values[key] = _value(key, value, text)
    return variant, values


def _value(key: str, value: str, text: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    ok = {
        "cosine": 0 < number <= 1,
        "corr": 0 < number <= 1,
        "top1": 0 <= number <= 1,
        "top5": 0 <= number <= 1,
        "snr": math.isfinite(number),
    }.get(key, math.isfinite(number) and number >= 0)
    if not ok:
        want = {
            "cosine": "a number in (0, 1]",
            "corr": "a number in (0, 1]",
            "top1": "a share in [0, 1]",
            "top5": "a share in [0, 1]",
            "snr": "a finite number of dB",
        }.get(key, "a finite number >= 0")
        raise ToleranceError(f"bad --budget {text!r}: {key} must be {want}, got {value!r}")
    return number


def budgets(overrides: Sequence[tuple[str, Mapping[str, float]]] = ()) -> dict[str, Budget]:
    """Every variant's budget: the defaults with ``overrides`` (later ones win).

    Raises:
        ToleranceError: an override for an unknown variant or metric, or out of range
            (checked as :func:`parse_budget` checks ``--budget``).
    """
    out = dict(DEFAULT_BUDGETS)
    for variant, values in overrides:
        text = f"{variant}:" + ",".join(f"{k}={v!r}" for k, v in values.items())
        name, checked = parse_budget(text)
        changes: dict[str, Any] = dict(checked)
        out[name] = dataclasses.replace(out[name], **changes)
    return out


def budget_tolerance(budget: Budget, base: Tolerance, reference: Mapping[str, Any]) -> Tolerance:
    """The comparison policy of a variant's outputs: the base's for ``same_math``; the
    budget's element-wise rule, or cosine (floating outputs), otherwise. Integer and
    boolean outputs stay exact, as ever."""
    if budget.same_math:
        return base
    if budget.atol is not None or budget.rtol is not None:
        return Tolerance(model_atol=budget.atol or 0.0, model_rtol=budget.rtol or 0.0)
    threshold = budget.cosine if budget.cosine is not None else 1.0
    rules = {
        name: Rule("cosine", min_cosine=threshold)
        for name, value in reference.items()
        if _floating(value)
    }
    return Tolerance(compare=rules)


def _floating(value: Any) -> bool:
    if value is None or isinstance(value, list | tuple):
        return False
    dtype = np.asarray(value).dtype
    return str(dtype) in DEFAULT_TOLERANCES


def apply_budget(compared: CompareResult, variant: str, budget: Budget) -> None:
    """Judge ``compared`` (made with :func:`budget_tolerance`) by the budget's further
    checks, in place: a check can only fail an output, never pass one."""
    for output in compared.outputs:
        output.budget = f"{variant}: {budget.text()}"
        if not output.compared or output.ref_dtype not in DEFAULT_TOLERANCES:
            continue
        failed = _failed_checks(output, budget)
        if failed:
            output.passed = False
            output.reason = "; ".join(filter(None, (output.reason, *failed)))
        if not output.passed:
            hint = _would_pass(output, variant, budget)
            if hint:
                output.reason += f"; {hint}"


def _failed_checks(o: OutputCompareResult, b: Budget) -> list[str]:
    out = []
    judged = o.mode == "cosine" and o.min_cosine == b.cosine  # by compare_with already
    if b.cosine is not None and not judged and not o.cosine >= b.cosine:  # NaN fails
        out.append(f"cosine {fmt_cosine(o.cosine)} < {short(b.cosine)}")
    if b.corr is not None and o.correlation is not None and not o.correlation >= b.corr:
        out.append(f"correlation {fmt_cosine(o.correlation)} < {short(b.corr)}")
    if b.snr is not None and not (o.snr_db is not None and o.snr_db >= b.snr):
        out.append(f"snr {fmt(o.snr_db)}dB < {short(b.snr)}dB")
    if b.top1 is not None and o.top1 is not None and not o.top1 >= b.top1:
        out.append(f"top-1 agreement {o.top1:.3g} < {short(b.top1)}")
    if b.top5 is not None and o.top5 is not None and not o.top5 >= b.top5:
        out.append(f"top-5 agreement {o.top5:.3g} < {short(b.top5)}")
    return out


def _ceil(x: float, digits: int = 3) -> float:
    """``x`` rounded up to ``digits`` significant digits (a bound that still holds)."""
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(x))) if x > 0 else 1.0
    return math.ceil(x * scale * (1 + 1e-12)) / scale


def _would_pass(o: OutputCompareResult, variant: str, b: Budget) -> str:
    """``would pass with --budget int8-dynamic:cosine=0.95,top1=0.5`` (the numbers it got);
    empty where no budget would (NaN/Inf in other places, another shape)."""
    if o.nonfinite_mismatches or math.isnan(o.cosine):
        return ""
    need: dict[str, float] = {}
    if b.cosine is not None and o.cosine < b.cosine:
        need["cosine"] = math.floor(o.cosine * 1e6) / 1e6
    if b.corr is not None and o.correlation is not None and o.correlation < b.corr:
        need["corr"] = math.floor(o.correlation * 1e6) / 1e6
    if b.snr is not None and o.snr_db is not None and o.snr_db < b.snr:
        need["snr"] = math.floor(o.snr_db * 10) / 10
    if b.top1 is not None and o.top1 is not None and o.top1 < b.top1:
        need["top1"] = o.top1
    if b.top5 is not None and o.top5 is not None and o.top5 < b.top5:
        need["top5"] = o.top5
    elementwise = not b.same_math and (b.atol is not None or b.rtol is not None)
    if elementwise and o.mode == "allclose" and o.error_ratio is not None and o.error_ratio > 1:
        if o.min_atol is None or o.ref_rms <= 0:
            return ""
        relative = max(o.min_atol / o.ref_rms, o.rel_err_norm)
        need["atol"] = _ceil(relative)
    if not need:
        return ""
    shown = ",".join(f"{k}={short(v)}" for k, v in need.items())
    return f"would pass with --budget {variant}:{shown}"
