"""Concrete shapes for a model file's declared inputs, before nnkit generates them.

Every dim is sized by one rule, :func:`nnkit.spec.concrete_shape`; this module holds
the ways a request says which sizes to give it:

- ``nnkit infer --shape NAME:DIMS``: :func:`resolve_shapes` checks each override against
  the file and sizes the other inputs' symbolic dims the same way.
- ``nnkit bench --batch N``: :func:`batch_shapes` puts each batch size on the batch
  axis (the dim labelled ``batch``, else axis 0).
- The example sizes nnkit stamped into a file it exported: :func:`stamped_sizes`.

Nothing here imports torch or a runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nnkit.errors import NnkitError, SpecError
from nnkit.spec import DEFAULT_DIM, concrete_shape, example_sizes

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo

#: The label of the batch dimension; axis 0 where no input dim carries it.
BATCH_LABEL = "batch"

__all__ = [
    "BATCH_LABEL",
    "DEFAULT_DIM",
    "batch_axis",
    "batch_shapes",
    "resolve_shapes",
    "stamped_sizes",
]


def resolve_shapes(
    declared: Sequence[TensorInfo], overrides: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every declared input (``nnkit infer --shape``).

    An input in ``overrides`` takes that shape, checked against its rank and fixed dims;
    elsewhere a symbolic dim takes the size another input's override gave the same
    symbol, else :data:`~nnkit.spec.DEFAULT_DIM`, as does a dim the file leaves unknown.

    Raises:
        SpecError: an override names no input, or its rank or a fixed dim does not fit.
    """
    overrides = dict(overrides or {})
    names = [t.name for t in declared]
    for name in overrides:
        if name not in names:
            raise SpecError(
                f"--shape names {name!r}, which is not an input: the model takes "
                f"{', '.join(map(repr, names))}"
            )
    symbols: dict[str, int] = {}
    for info in declared:
        shape = overrides.get(info.name)
        if info.is_sequence or info.unsupported:
            continue  # never generated: nnkit.inputs.generate says what to give instead
        if shape is None:
            if not info.ranked:
                raise SpecError(
                    f"input {info.name!r} has no declared shape: give one with "
                    f"--shape {info.name}:DIMS, or the input with --input"
                )
            continue
        if not info.ranked:
            continue
        if len(shape) != len(info.dims):
            raise SpecError(
                f"--shape {info.name}: rank {len(shape)} != {len(info.dims)}: "
                f"expected {info.shape_text()}, given {list(shape)}"
            )
        for axis, (want, got) in enumerate(zip(info.dims, shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise SpecError(
                    f"--shape {info.name}: dim {axis} is fixed at {want} in the model, given "
                    f"{got}: expected {info.shape_text()}, given {list(shape)}"
                )
            if isinstance(want, str):
                symbols.setdefault(want, got)
    return {
        info.name: overrides.get(info.name) or concrete_shape(info.dims, symbols)
        for info in declared
    }


def batch_axis(info: TensorInfo, *, labelled: bool) -> int | None:
    """The axis of ``info`` that is the batch: the dim labelled ``batch``, else axis 0.

    Args:
        info: a declared input.
        labelled: some input of the model labels a dim ``batch``; then an input
            without that label has no batch axis.
    """
    if BATCH_LABEL in info.dims:
        return info.dims.index(BATCH_LABEL)
    if labelled or not info.dims:
        return None
    return 0


def batch_shapes(
    declared: Sequence[TensorInfo], batch: int, sizes: Mapping[str, int] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every input at ``batch`` (``nnkit bench --batch``).

    The batch axis (:func:`batch_axis`) takes ``batch``; another symbolic dim takes its
    size in ``sizes`` (by label), else 1, as does a dim the file leaves unknown.

    Raises:
        SpecError: an input whose batch dim is fixed at another size.
    """
    if batch < 1:
        raise SpecError(f"batch sizes are 1 or more, given {batch}")
    sizes = dict(sizes or {})
    labelled = any(BATCH_LABEL in info.dims for info in declared)
    shapes: dict[str, tuple[int, ...]] = {}
    for info in declared:
        axis = batch_axis(info, labelled=labelled)
        dims = list(info.dims)
        if axis is not None:
            fixed = dims[axis]
            if isinstance(fixed, int) and fixed != batch:
                raise SpecError(
                    f"the model cannot run at batch {batch}: input {info.name!r} has a fixed "
                    f"batch dim of {fixed} ({info.shape_text()}); export it with a dynamic "
                    f"batch (e.g. --input {info.name}:batch=2x...) or bench --batch {fixed}"
                )
            dims[axis] = batch
        shapes[info.name] = concrete_shape(dims, sizes)
    return shapes


def stamped_sizes(proto: Any) -> dict[str, int]:
    """Example sizes of symbolic dims, from the input specs nnkit stamps into its exports."""
    from nnkit.onnxfile import stamped_specs

    try:
        specs = stamped_specs(proto)
    except NnkitError:  # metadata nnkit did not write: no example sizes, dims take 1
        return {}
    return example_sizes(specs)
