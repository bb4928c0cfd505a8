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

The package, a module a job: :mod:`~nnkit.compare.rules` (the modes, :class:`Rule`,
:class:`Tolerance`, :class:`Check`, :func:`parse_compare`), :mod:`~nnkit.compare.metrics`
(the numeric comparison, the degenerate-reference warnings, the would-have-passed
search), :mod:`~nnkit.compare.values` (strings, sequences, optionals, and a run's
outputs), :mod:`~nnkit.compare.result` (the result values), :mod:`~nnkit.compare.text`
(numbers in messages). Import from ``nnkit.compare``: the names below are its API.
"""

from __future__ import annotations

from nnkit.compare.metrics import (
    MIN_TIES,
    QUANTILE,
    TIES_FRACTION,
    allowed,
    compare_arrays,
    compare_with,
    cosine,
    degenerate,
    min_atol,
    min_rtol,
    passes,
    sort_items,
)
from nnkit.compare.result import CompareResult, OutputCompareResult
from nnkit.compare.rules import (
    DEFAULT_MIN_COSINE,
    DEFAULT_TOLERANCES,
    MODES,
    Check,
    Rule,
    Tolerance,
    ToleranceError,
    check_tolerance,
    parse_compare,
)
from nnkit.compare.text import fmt
from nnkit.compare.values import NON_NUMERIC, compare_outputs, compare_strings, compare_value

__all__ = [
    "DEFAULT_MIN_COSINE",
    "DEFAULT_TOLERANCES",
    "MIN_TIES",
    "MODES",
    "NON_NUMERIC",
    "QUANTILE",
    "TIES_FRACTION",
    "Check",
    "CompareResult",
    "OutputCompareResult",
    "Rule",
    "Tolerance",
    "ToleranceError",
    "allowed",
    "check_tolerance",
    "compare_arrays",
    "compare_outputs",
    "compare_strings",
    "compare_value",
    "compare_with",
    "cosine",
    "degenerate",
    "fmt",
    "min_atol",
    "min_rtol",
    "parse_compare",
    "passes",
    "sort_items",
]
