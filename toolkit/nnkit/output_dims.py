"""Output dims of an export: which follow which input dim, found by running the model,
and how the exported file declares them.

Exporters declare output dims they cannot name after their own nodes
(``Concath_n_dim_1``, ``Reshapeoutput_dim_2``) or fix them at the example's size (the
dynamo LSTM's sequence axis, pytorch#191855). :func:`probe_output_dims` runs the model
eagerly to see which output axes move with which input dim; :func:`declare_dynamic_outputs`
and :func:`name_exporter_dims` edit the file's output declarations to say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnkit.spec import example_sizes

if TYPE_CHECKING:
    from nnkit.resolve import ResolvedModel


@dataclass(frozen=True)
class ProbedDims:
    """What eager runs of the model show about its output dims.

    ``moving``: output name -> axis -> the dynamic input label whose size that axis
    takes. ``derived``: axes that change with a label without taking its size (``2 *
    batch``), named after their output (``y_dim0``). ``sizes``: output name -> its shape
    at the example sizes, None at an axis that changed between runs on inputs of the
    same shape (a data-dependent size, such as the count of a ``nonzero``).
    """

    moving: dict[str, dict[int, str]]
    derived: dict[str, dict[int, str]]
    sizes: dict[str, tuple[int | None, ...]]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Every output axis that changes with an input dim, and its name."""
        names = set(self.moving) | set(self.derived)
        return {n: {**self.derived.get(n, {}), **self.moving.get(n, {})} for n in names}


def probe_output_dims(model: ResolvedModel) -> ProbedDims:
    """Which output axes follow which dynamic input dim, found by running the model.

    Exporters declare output dims they cannot name after their own nodes
    (``Concath_n_dim_1``, ``Reshapeoutput_dim_2``) or fixed at the example's size (the
    dynamo LSTM's sequence axis). Running eagerly once more per label, with that dim
    one larger, shows which output axes take the label's size; one more run on other
    values at the example sizes shows which dims depend on the values, not the shapes.
    """
    import torch

    from nnkit.inputs import generate
    from nnkit.reference import to_torch
    from nnkit.resolve import flatten_outputs

    def shapes(sizes: dict[str, int], seed: int = 0) -> list[tuple[int, ...]] | None:
        arrays = generate(model.inputs, sizes=sizes, seed=seed)
        try:
            with torch.inference_mode():
                result = model.module(*(to_torch(arrays[s.name]) for s in model.inputs))
        except Exception:
            return None
        return [tuple(t.shape) for t in flatten_outputs(result)]

    labels = example_sizes(model.inputs)
    base = shapes({})
    axes: dict[str, dict[int, str]] = {}
    derived: dict[str, dict[int, str]] = {}
    for label, example in labels.items():
        moved = shapes({label: example + 1})
        if base is None or moved is None or len(moved) != len(base):
            continue
        for name, before, after in zip(model.outputs, base, moved, strict=True):
            for axis, (b, a) in enumerate(zip(before, after, strict=False)):
                if (b, a) == (example, example + 1):
                    axes.setdefault(name, {})[axis] = label
                elif a != b:
                    derived.setdefault(name, {})[axis] = f"{name}_dim{axis}"
    for name, found in axes.items():
        for axis in found:
            derived.get(name, {}).pop(axis, None)
    other = shapes({}, seed=1)
    sizes: dict[str, tuple[int | None, ...]] = {}
    if base is not None and other is not None and len(other) == len(base):
        for name, seen, again in zip(model.outputs, base, other, strict=True):
            sizes[name] = tuple(x if x == y else None for x, y in zip(seen, again, strict=False))
    return ProbedDims(axes, derived, sizes)


def declare_dynamic_outputs(proto: Any, probed: ProbedDims) -> list[str]:
    """Declare output dims that follow a dynamic input dim as symbolic.

    An axis that takes a label's size is declared under that label; one that changes
    with it otherwise (``2 * batch``) keeps the exporter's symbolic name, or is named
    after its output where the exporter declared it fixed. The dynamo exporter declares
    an LSTM's sequence axis as the example's length (pytorch#191855) while computing
    correct values at other lengths, and the tracer names dynamic axes after internal
    nodes. Returns the fixed dims that were wrong.
    """
    wrong = []
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        for axes, exact in ((probed.moving, True), (probed.derived, False)):
            for axis, name in axes.get(out.name, {}).items():
                if axis >= len(dims):
                    continue
                d = dims[axis]
                if d.HasField("dim_value"):
                    wrong.append(f"{out.name}[{axis}]: {d.dim_value} -> {name}")
                    d.dim_param = name  # clears dim_value: the two are a oneof
                elif exact and d.dim_param != name:
                    d.dim_param = name
    return wrong


def name_exporter_dims(proto: Any, probed: ProbedDims) -> list[str]:
    """Symbolic output dims named after the exporter's own nodes, made meaningful.

    A dim no input label moves and that keeps one size over runs on other values is
    declared fixed at that size; one whose size depends on the values is named after its
    output (``boxes_dim0``). Labels of the model's inputs are left as they are.
    """
    labels = {label for axes in probed.moving.values() for label in axes.values()}
    changed = []
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        sizes = probed.sizes.get(out.name)
        for axis, d in enumerate(dims):
            if not d.HasField("dim_param") or d.dim_param in labels:
                continue
            if axis in probed.dynamic_axes().get(out.name, {}):
                continue
            old = d.dim_param
            size = sizes[axis] if sizes is not None and axis < len(sizes) else None
            if sizes is not None and size is not None:
                d.dim_value = size  # clears dim_param: the two are a oneof
                changed.append(f"{out.name}[{axis}]: {old} -> {size}")
            elif sizes is not None and not old.startswith(f"{out.name}_dim"):
                d.dim_param = f"{out.name}_dim{axis}"
                changed.append(f"{out.name}[{axis}]: {old} -> {d.dim_param}")
    return changed
