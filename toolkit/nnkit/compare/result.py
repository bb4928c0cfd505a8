"""Comparison results as values whose truth is the verdict: one output, or a whole run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nnkit.compare.text import finite, fmt, fmt_cosine, used_text


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
    # -- the metrics of rewrites that change the math (nnkit.compare.agreement) --
    #: Signal-to-noise ratio in dB, ``10*log10(||ref||^2 / ||got-ref||^2)`` (inf: equal).
    snr_db: float | None = None
    #: Pearson's r (the cosine with the means removed); None where the reference is constant.
    correlation: float | None = None
    #: Class-score-like outputs (2-D, more than one class): the share of rows whose
    #: argmax agrees, and whose reference argmax is in the runtime's top 5 (None else).
    top1: float | None = None
    top5: float | None = None
    #: The variant's budget this output was judged by (``fp16: atol=0.01,...``), or None.
    budget: str | None = None

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
            f"rel_err_norm={fmt(self.rel_err_norm)} cosine={fmt_cosine(self.cosine)}"
            f"{self.agreement()}; {self.magnitudes()}"
        )

    def agreement(self) -> str:
        """`` snr=41.2dB top1=1 top5=1``: the metrics that exist for this output."""
        text = ""
        if self.snr_db is not None and not math.isnan(self.snr_db):
            text += f" snr={self.snr_db:.1f}dB" if math.isfinite(self.snr_db) else " snr=inf"
        if self.correlation is not None and not math.isnan(self.correlation):
            text += f" corr={fmt_cosine(self.correlation)}"
        if self.top1 is not None:
            text += f" top1={self.top1:.3g}"
        if self.top5 is not None:
            text += f" top5={self.top5:.3g}"
        return text

    def detail(self) -> str:
        """One line for any result: the verdict, the metrics, the share of tolerance used."""
        head = f"{self.name!r} {'pass' if self.passed else 'FAIL'} ({self.mode}): "
        if not self.compared or self.got_dtype != self.ref_dtype:
            return head + self.reason
        used = f"; {used_text(self.error_ratio)}" if self.error_ratio is not None else ""
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
            "atol": finite(self.atol),
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
            "max_abs_diff": finite(self.max_abs_diff),
            "max_rel_diff": finite(self.max_rel_diff),
            "mean_abs_diff": finite(self.mean_abs_diff),
            "p99_abs_diff": finite(self.p99_abs_diff),
            "rel_err_norm": finite(self.rel_err_norm),
            "cosine": finite(self.cosine),
            "ref_max_abs": finite(self.ref_max_abs),
            "ref_rms": finite(self.ref_rms),
            "got_max_abs": finite(self.got_max_abs),
            "got_rms": finite(self.got_rms),
            "error_ratio": finite(self.error_ratio),
            "mismatches": self.mismatches,
            "nonfinite": self.nonfinite,
            "nonfinite_mismatches": self.nonfinite_mismatches,
            "min_atol": finite(self.min_atol),
            "min_rtol": finite(self.min_rtol),
            "warnings": list(self.warnings),
            "reason": self.reason,
            "snr_db": finite(self.snr_db),
            "correlation": finite(self.correlation),
            "top1": self.top1,
            "top5": self.top5,
            "budget": self.budget,
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
