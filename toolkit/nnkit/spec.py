"""Tensor specs: the ``name:dims[:dtype]`` syntax and dynamic dimensions.

A spec names one model input, its dimensions and its dtype. A dimension is either a
fixed size (``3``) or a dynamic one with a label and an example size (``batch=2``)::

    x:batch=2x3x32x32:float32   ->  TensorSpec("x", (Dim("batch", 2), 3, 32, 32), "float32")

The example size is what the exporter traces with; the label becomes the symbolic
dimension name in the ONNX file.

A name that holds ``:``, ``=`` or a space (TensorFlow's ``input:0``) is written in
double quotes, in a spec and wherever a name is given (``--shape``, ``--input
NAME=FILE``)::

    "input:0":batch=2x3:float32   ->  TensorSpec("input:0", (Dim("batch", 2), 3), "float32")

Quoting, rather than splitting at the last separator, because a file path may hold
``=`` and a spec's dtype is optional: only quotes make every name and every path
unambiguous, the same way in every option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nnkit.errors import SpecError

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


@dataclass(frozen=True)
class Dim:
    """A dynamic dimension: a symbolic ``label`` and the ``example`` size to trace with."""

    label: str
    example: int

    def __str__(self) -> str:
        return f"{self.label}={self.example}"


DimLike = int | Dim


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: its dims (fixed ints or :class:`Dim`) and dtype."""

    name: str
    dims: tuple[DimLike, ...]
    dtype: str = DEFAULT_DTYPE
    #: Inclusive value range for generated integer inputs (token ids, class indices).
    value_range: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape with every dynamic dim at its example size."""
        return tuple(d.example if isinstance(d, Dim) else d for d in self.dims)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> label, for the dynamic dims only."""
        return {i: d.label for i, d in enumerate(self.dims) if isinstance(d, Dim)}

    def shape_with(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The shape with dynamic dims taken from ``sizes`` (by label), else their example."""
        return tuple(sizes.get(d.label, d.example) if isinstance(d, Dim) else d for d in self.dims)

    def __str__(self) -> str:
        dims = "x".join(str(d) for d in self.dims) if self.dims else "scalar"
        return f"{quote_name(self.name)}:{dims}:{self.dtype}"


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
    """Parse ``name:dims[:dtype]``, dims joined by ``x``; ``scalar`` for rank 0.

    Raises:
        SpecError: the text is not a spec; the message shows the expected form.
    """
    name, _, rest = split_name(text, ":", what="input spec")
    parts = rest.split(":")
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
    return TensorSpec(name, dims, dtype)


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


def check_unique_names(specs: list[TensorSpec]) -> None:
    """Refuse two specs with one name."""
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise SpecError(f"input {s.name!r} is given twice")
        seen.add(s.name)
