"""Tensor specs: the ``name:dims[:dtype]`` syntax and dynamic dimensions.

A spec names one model input, its dimensions and its dtype. A dimension is either a
fixed size (``3``) or a dynamic one with a label and an example size (``batch=2``)::

    x:batch=2x3x32x32:float32   ->  TensorSpec("x", (Dim("batch", 2), 3, 32, 32), "float32")

The example size is what the exporter traces with; the label becomes the symbolic
dimension name in the ONNX file.
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
        return f"{self.name}:{dims}:{self.dtype}"


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
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SpecError(
            f"bad input spec {text!r}: expected name:dims[:dtype], e.g. x:batch=2x3x32x32:float32"
        )
    name, dims_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else DEFAULT_DTYPE
    if dtype not in DTYPES:
        raise SpecError(
            f"bad dtype {dtype!r} in spec {text!r}: valid dtypes are {', '.join(DTYPES)}"
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
    """Parse ``name:dims`` with concrete dims only (``x:4x3x32x32``), for ``--shape``."""
    name, sep, dims_text = text.partition(":")
    if not sep or not name or not dims_text:
        raise SpecError(f"bad shape {text!r}: expected name:dims, e.g. x:4x3x32x32")
    dims = []
    for d in dims_text.split("x"):
        if not d.isdigit():
            raise SpecError(f"bad shape {text!r}: dims are sizes joined by x, e.g. x:4x3x32x32")
        dims.append(int(d))
    return name, tuple(dims)


def check_unique_names(specs: list[TensorSpec]) -> None:
    """Refuse two specs with one name."""
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise SpecError(f"input {s.name!r} is given twice")
        seen.add(s.name)
