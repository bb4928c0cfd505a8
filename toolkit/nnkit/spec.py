"""Tensor specs: the ``name:dims[:dtype][values]`` syntax and dynamic dimensions.

A spec names one model input, its dimensions and its dtype. A dimension is either a
fixed size (``3``) or a dynamic one with a label and an example size (``batch=2``)::

    x:batch=2x3x32x32:float32   ->  TensorSpec("x", (Dim("batch", 2), 3, 32, 32), "float32")

The example size is what the exporter traces with; the label becomes the symbolic
dimension name in the ONNX file.

The values nnkit generates for the input can follow, written right after the dtype (or
after the dims when the dtype is left out): a range with closed ``[ ]`` or open ``( )``
bounds, or a set of values::

    input_ids:batch=2xseq=16:int64[0,30522)      token ids 0 .. 30521
    attention_mask:batch=2xseq=16:int64{0,1}      only 0 or 1
    x:batch=2x3:float32[-1,1]                     uniform in -1 .. 1

A name that holds ``:``, ``=`` or a space (TensorFlow's ``input:0``) is written in
double quotes, in a spec and wherever a name is given (``--shape``, ``--input
NAME=FILE``)::

    "input:0":batch=2x3:float32   ->  TensorSpec("input:0", (Dim("batch", 2), 3), "float32")

Quoting, rather than splitting at the last separator, because a file path may hold
``=`` and a spec's dtype is optional: only quotes make every name and every path
unambiguous, the same way in every option.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnkit.errors import SpecError

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo

#: dtypes a spec may name, in the spelling numpy uses.
DTYPES = (
    "float32",
    "float16",
    "float64",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
DEFAULT_DTYPE = "float32"

_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A value range or set at the end of a spec: ``[0,10)``, ``(0,1]``, ``{0,1}``.
_VALUES = re.compile(r"(?P<values>[\[(][^\[\](){}]*[\])]|\{[^\[\](){}]*\})$")
#: The values each numeric dtype can hold: (lowest, highest).
_LIMITS: dict[str, tuple[float, float]] = {
    **{f"int{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    "uint8": (0, 255),
    "float16": (-65504.0, 65504.0),
    "bfloat16": (-3.3895313892515355e38, 3.3895313892515355e38),
    "float32": (-3.4028234663852886e38, 3.4028234663852886e38),
    "float64": (-1.7976931348623157e308, 1.7976931348623157e308),
    "bool": (0, 1),
}


@dataclass(frozen=True)
class Dim:
    """A dynamic dimension: a symbolic ``label`` and the ``example`` size to trace with."""

    label: str
    example: int

    def __str__(self) -> str:
        return f"{self.label}={self.example}"


DimLike = int | Dim
Number = int | float


@dataclass(frozen=True)
class ValueRange:
    """Generated values lie between ``low`` and ``high``; each bound closed or open.

    Integers are drawn uniformly from the whole numbers in the range; floats uniformly
    from it (an open bound is never drawn).
    """

    low: Number
    high: Number
    low_closed: bool = True
    high_closed: bool = True

    @property
    def int_bounds(self) -> tuple[int, int]:
        """The smallest and largest whole number in the range."""
        lo = math.ceil(self.low) if self.low_closed else math.floor(self.low) + 1
        hi = math.floor(self.high) if self.high_closed else math.ceil(self.high) - 1
        return int(lo), int(hi)

    def __str__(self) -> str:
        return (
            f"{'[' if self.low_closed else '('}{_number(self.low)},"
            f"{_number(self.high)}{']' if self.high_closed else ')'}"
        )


@dataclass(frozen=True)
class ValueSet:
    """Generated values are drawn uniformly from ``values``."""

    values: tuple[Number, ...]

    def __str__(self) -> str:
        return "{" + ",".join(_number(v) for v in self.values) + "}"


Values = ValueRange | ValueSet


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: its dims (fixed ints or :class:`Dim`) and dtype."""

    name: str
    dims: tuple[DimLike, ...]
    dtype: str = DEFAULT_DTYPE
    #: The values generated for this input (token ids, masks); the dtype's default when None.
    value_range: Values | None = None

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape with every dynamic dim at its example size."""
        return tuple(d.example if isinstance(d, Dim) else d for d in self.dims)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> label, for the dynamic dims only."""
        return {i: d.label for i, d in enumerate(self.dims) if isinstance(d, Dim)}

    def shape_with(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with dynamic dims taken from ``sizes`` (by label), else their example."""
        return concrete_shape(self.dims, sizes)

    def __str__(self) -> str:
        dims = "x".join(str(d) for d in self.dims) if self.dims else "scalar"
        return f"{quote_name(self.name)}:{dims}:{self.dtype}{self.value_range or ''}"


#: The size of a symbolic or unknown dim that nothing else sizes (no example, no override).
DEFAULT_DIM = 1


def concrete_shape(
    dims: Sequence[DimLike | str | None], sizes: Mapping[str, int], *, default: int = DEFAULT_DIM
) -> tuple[int, ...]:
    """A concrete shape: the one rule that sizes every dynamic dim nnkit generates.

    A fixed size stays; a :class:`Dim` (a spec's) takes ``sizes[label]``, else its
    example size; a symbolic dim of a model file (its label, a str) takes
    ``sizes[label]``, else ``default``, as does a dim the file leaves unknown (None, or
    an empty label).

    Args:
        dims: a spec's dims, or a declared input's (:attr:`TensorInfo.dims`).
        sizes: dynamic dim label -> size.
        default: the size of a symbolic dim ``sizes`` does not give, and of an unknown one.
    """

    def size(d: DimLike | str | None) -> int:
        if isinstance(d, int):
            return d
        if isinstance(d, Dim):
            return sizes.get(d.label, d.example)
        return sizes.get(d, default) if d else default

    return tuple(size(d) for d in dims)


def example_sizes(specs: Iterable[TensorSpec]) -> dict[str, int]:
    """Dynamic dim label -> its example size, over every spec (``{"batch": 2, "seq": 7}``).

    Where specs disagree on a label's example, the last one names its size.
    """
    return {d.label: d.example for s in specs for d in s.dims if isinstance(d, Dim)}


def tensor_infos(specs: Iterable[TensorSpec]) -> tuple[TensorInfo, ...]:
    """The declared inputs specs describe, as a model file declares them: dynamic dims by
    label (a :class:`~nnkit.backends.base.TensorInfo` per spec, in order)."""
    from nnkit.backends.base import TensorInfo

    return tuple(
        TensorInfo(s.name, tuple(d.label if isinstance(d, Dim) else d for d in s.dims), s.dtype)
        for s in specs
    )


def quote_name(name: str) -> str:
    """``name`` as written in a spec: in double quotes where it holds ``:``, ``=`` or a space."""
    return f'"{name}"' if _NEEDS_QUOTES.search(name) or name.startswith('"') else name


def split_name(text: str, sep: str, *, what: str) -> tuple[str, str, str]:
    """Split ``text`` at the ``sep`` that ends its leading name, as ``str.partition`` does.

    The name may be quoted (``"input:0"=x.npy``); then the quotes are removed and it
    ends at the closing quote, which ``sep`` must follow.

    Raises:
        SpecError: an unclosed quote, or a quoted name not followed by ``sep``.
    """
    if not text.startswith('"'):
        return text.partition(sep)
    close = text.find('"', 1)
    if close < 0:
        raise SpecError(f"bad {what} {text!r}: the quoted name has no closing quote")
    name, rest = text[1:close], text[close + 1 :]
    if not name:
        raise SpecError(f"bad {what} {text!r}: the quoted name is empty")
    if rest and not rest.startswith(sep):
        raise SpecError(f"bad {what} {text!r}: expected {sep!r} after the quoted name {name!r}")
    return name, rest[:1], rest[1:]


def split_specs(text: str) -> list[str]:
    """Split a space-separated list of specs, keeping quoted names whole."""
    return _SPEC_TOKEN.findall(text)


_DIMS = re.compile(r"(\w+=)?\d+(x(\w+=)?\d+)*")
_NEEDS_QUOTES = re.compile(r'[:=\s"]')
_SPEC_TOKEN = re.compile(r'(?:"[^"]*"|[^\s"])+')
_QUOTE_HINT = (
    "; a name holding ':' or '=' goes in double quotes, e.g. '\"input:0\":1x3' "
    "(single quotes around it for the shell)"
)


def parse_dim(text: str, *, spec: str) -> DimLike:
    """Parse one dimension: ``N`` (fixed) or ``label=N`` (dynamic, example size N)."""
    label, sep, size = text.partition("=")
    if not sep:
        label, size = "", text
    if not size.isdigit() or int(size) < 1:
        raise SpecError(
            f"bad dimension {text!r} in spec {spec!r}: a dimension is a positive size (3) "
            "or a label and an example size (batch=2)"
        )
    if not sep:
        return int(size)
    if not _LABEL.match(label):
        raise SpecError(
            f"bad dimension label {label!r} in spec {spec!r}: a label is a Python identifier"
        )
    if int(size) < 2:
        raise SpecError(
            f"dynamic dimension {text!r} in spec {spec!r} needs an example size of at least 2: "
            "exporters fix a dimension traced at size 1"
        )
    return Dim(label, int(size))


def parse_spec(text: str) -> TensorSpec:
    """Parse ``name:dims[:dtype][values]``, dims joined by ``x``; ``scalar`` for rank 0.

    ``values`` is a range (``[0,30522)``, ``[-1.5,1.5]``) or a set (``{0,1}``) of the
    values to generate; see :class:`ValueRange` and :class:`ValueSet`.

    Raises:
        SpecError: the text is not a spec; the message shows the expected form.
    """
    name, _, rest = split_name(text, ":", what="input spec")
    match = _VALUES.search(rest)
    body, values_text = (rest[: match.start()], match["values"]) if match else (rest, "")
    if not match and any(c in rest for c in "[]{}()"):
        raise SpecError(
            f"bad values in spec {text!r}: after the dtype comes a range [low,high] "
            "(( ) for open bounds) or a set {a,b}, e.g. input_ids:batch=2x16:int64[0,30522)"
        )
    parts = body.split(":")
    if len(parts) not in (1, 2) or not name or not parts[0]:
        raise SpecError(
            f"bad input spec {text!r}: expected name:dims[:dtype], e.g. "
            f"x:batch=2x3x32x32:float32{_QUOTE_HINT}"
        )
    dims_text = parts[0]
    dtype = parts[1] if len(parts) == 2 else DEFAULT_DTYPE
    if dtype not in DTYPES:
        # "input:0:2x3": the dims moved to the dtype's place; a quoted name fixes it.
        hint = _QUOTE_HINT if _DIMS.fullmatch(dtype) else ""
        raise SpecError(
            f"bad dtype {dtype!r} in spec {text!r}: valid dtypes are {', '.join(DTYPES)}{hint}"
        )
    dims = (
        ()
        if dims_text == "scalar"
        else tuple(parse_dim(d, spec=text) for d in dims_text.split("x"))
    )
    labels = [d.label for d in dims if isinstance(d, Dim)]
    if len(labels) != len(set(labels)):
        raise SpecError(f"bad input spec {text!r}: a label names one dimension of a tensor")
    values = parse_values(values_text, dtype=dtype, spec=text) if values_text else None
    return TensorSpec(name, dims, dtype, values)


def parse_values(text: str, *, dtype: str, spec: str) -> Values:
    """Parse a value range (``[lo,hi]``, ``[lo,hi)``, ``(lo,hi]``) or set (``{a,b}``).

    Raises:
        SpecError: a bound or member that is not a number of ``dtype``, an empty range,
            ``lo > hi``, or values ``dtype`` cannot hold.
    """
    where = f"in spec {spec!r}"
    if dtype not in _LIMITS:
        raise SpecError(f"dtype {dtype} takes no value range {where}")
    items = [t.strip() for t in text[1:-1].split(",")]
    if text.startswith("{"):
        if items == [""]:
            raise SpecError(f"empty value set {text!r} {where}: name at least one value")
        members = tuple(_parse_number(t, dtype=dtype, where=where) for t in items)
        if len(set(members)) != len(members):
            raise SpecError(f"value set {text!r} {where} names a value twice")
        for v in members:
            _check_limits(v, dtype=dtype, what=f"value {_number(v)}", where=where)
        return ValueSet(members)
    if dtype == "bool":
        raise SpecError(
            f"bool input {where} takes a set, not a range: {{0,1}} (the default), {{1}} or {{0}}"
        )
    if len(items) != 2:
        raise SpecError(
            f"bad value range {text!r} {where}: expected [low,high], with [ ] for closed and "
            "( ) for open bounds, e.g. [0,30522)"
        )
    low, high = (_parse_number(t, dtype=dtype, where=where) for t in items)
    values = ValueRange(low, high, text[0] == "[", text[-1] == "]")
    if low > high:
        raise SpecError(f"value range {text!r} {where} has low > high")
    integer = isinstance(low, int)
    empty = (
        values.int_bounds[0] > values.int_bounds[1]
        if integer
        else low == high and not (values.low_closed and values.high_closed)
    )
    if empty:
        raise SpecError(f"value range {text!r} {where} holds no {dtype} value")
    ends = values.int_bounds if integer else (low, high)
    for v in ends:
        _check_limits(v, dtype=dtype, what=f"value range {text!r}", where=where)
    return values


def _parse_number(text: str, *, dtype: str, where: str) -> Number:
    if dtype == "bool" and text.lower() in ("true", "false"):
        return int(text.lower() == "true")
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        if not re.fullmatch(r"[+-]?\d+", text):
            raise SpecError(f"bad value {text!r} {where}: {dtype} values are whole numbers")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"bad value {text!r} {where}: {dtype} values are numbers") from None
    if not math.isfinite(value):
        raise SpecError(f"bad value {text!r} {where}: values are finite numbers")
    return value


def _check_limits(value: Number, *, dtype: str, what: str, where: str) -> None:
    lo, hi = _LIMITS[dtype]
    if not lo <= value <= hi:
        raise SpecError(
            f"{what} {where} is outside what {dtype} holds ({_number(lo)} .. {_number(hi)})"
        )


def _number(value: Number) -> str:
    """A number as a spec writes it: ints plainly, floats so they read back the same."""
    return str(value) if isinstance(value, int) else repr(float(value))


def parse_shape_override(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``name:dims`` with concrete dims only (``x:4x3x32x32``), for ``--shape``.

    Dims hold no ``:``, so an unquoted name ends at the last one: ``input:0:1x3`` is
    input ``input:0``. A quoted name (``"input:0":1x3``) works too.
    """
    if text.startswith('"'):
        name, sep, dims_text = split_name(text, ":", what="shape")
    else:
        name, sep, dims_text = text.rpartition(":")
    if not sep or not name or not dims_text:
        raise SpecError(f"bad shape {text!r}: expected name:dims, e.g. x:4x3x32x32")
    dims = []
    for d in dims_text.split("x"):
        if not d.isdigit():
            raise SpecError(
                f"bad shape {text!r}: dims are sizes joined by x, e.g. x:4x3x32x32{_QUOTE_HINT}"
            )
        dims.append(int(d))
    return name, tuple(dims)


def parse_sizes(text: str) -> dict[str, int]:
    """Parse chosen sizes of dynamic dims, ``batch=1,seq=1`` (for ``--case``).

    Raises:
        SpecError: not ``label=N`` pairs joined by commas, N a positive size.
    """
    sizes: dict[str, int] = {}
    for item in text.split(","):
        label, sep, size = (part.strip() for part in item.partition("="))
        if not sep or not _LABEL.match(label) or not size.isdigit() or int(size) < 1:
            raise SpecError(
                f"bad case {text!r}: expected sizes of dynamic dims as label=N joined by "
                "commas, e.g. batch=1,seq=128"
            )
        if label in sizes:
            raise SpecError(f"bad case {text!r}: {label!r} is given twice")
        sizes[label] = int(size)
    return sizes


def check_unique_names(specs: list[TensorSpec]) -> None:
    """Refuse two specs with one name."""
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise SpecError(f"input {s.name!r} is given twice")
        seen.add(s.name)
