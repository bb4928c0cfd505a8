"""Numbers as the comparison's messages write them (and as its JSON keeps them)."""

from __future__ import annotations

import math


def short(x: float) -> str:
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


def fmt_cosine(x: float) -> str:
    """Cosine near 1 shows how near: ``1-3.2e-13``."""
    if math.isnan(x):
        return "nan"
    if 0.999 < x < 1:
        return f"1-{1 - x:.2g}"
    return fmt(x)


def used_text(ratio: float) -> str:
    """How much of the tolerance a result used: ``used 2.1% of the tolerance``."""
    if math.isinf(ratio):
        return "infinitely over the tolerance"
    if ratio > 1:
        return f"{ratio:.3g}x the tolerance"
    return f"used {100 * ratio:.2g}% of the tolerance"


def finite(x: float | None) -> float | None:
    """``x``, or None where it is None or not finite (JSON has no NaN or infinity)."""
    return x if x is not None and math.isfinite(x) else None
