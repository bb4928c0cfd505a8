"""The comparison policy: the modes, the rule of each output, the dtype's defaults.

A :class:`Tolerance` (what the user, the model and the dtype say) resolves into one
:class:`Check` per output; :func:`parse_compare` reads ``--compare NAME:MODE[:k=v,...]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnkit.compare.text import short
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
            f"{key}={short(value) if isinstance(value, float) else value}"
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
            assert rtol is not None
            return Check(mode, rel_atol, rtol, relative=True, fallback_atol=rel_atol, axis=axis)
        return Check(mode, atol, rel_rtol if rtol is None else rtol, axis=axis)

    def for_dtype(self, dtype: np.dtype | str) -> tuple[float, float]:
        """(atol, rtol) of an unnamed ``allclose`` output of ``dtype``; ``atol`` is relative
        to the output's RMS unless the user gave it."""
        check = self.check("", dtype)
        return check.atol, check.rtol
