"""Graph edits the backends make to a model before their runtime sees it.

:func:`expose` makes chosen values of the graph (intermediate ones too) its outputs, so
any runtime returns them (``Backend(path, outputs=[...])``); :func:`strip_value_info`
drops the intermediate shape hints a runtime may read as facts. They work on the
protobuf, with onnx's own helpers, and never change a value the graph computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nnkit.errors import NnkitError

if TYPE_CHECKING:
    import onnx

#: Value names an error lists before it says how many more there are.
SHOWN_NAMES = 20


def value_names(model: onnx.ModelProto) -> list[str]:
    """The values of the main graph, in graph order: its inputs (initializers aside),
    then every node's outputs. These are the names :func:`expose` takes."""
    inits = {t.name for t in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in inits]
    names += [out for node in model.graph.node for out in node.output if out]
    return list(dict.fromkeys(names))


def expose(model: onnx.ModelProto, names: Sequence[str], *, where: str = "") -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are exactly the values ``names``, in that order.

    A value keeps the type the file declares for it (as an input, an output or a
    ``value_info`` hint); any other gets the type onnx's shape inference finds, or none
    (the runtime then infers it). Values inside a subgraph (an ``If`` branch, a ``Loop``
    body) are not the main graph's and cannot be exposed.

    Args:
        model: the model (its external weights need not be loaded).
        names: value names, each from :func:`value_names`; repeats are kept once.
        where: the file, for the error message.

    Raises:
        NnkitError: no name, or a name that is no value of the graph (the message lists
            the values there are).
    """
    import onnx

    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise NnkitError(f"outputs=: no value named{_in(where)}: give at least one")
    exist = value_names(model)
    unknown = [n for n in wanted if n not in set(exist)]
    if unknown:
        shown = ", ".join(map(repr, exist[:SHOWN_NAMES]))
        more = f" (and {len(exist) - SHOWN_NAMES} more)" if len(exist) > SHOWN_NAMES else ""
        raise NnkitError(
            f"outputs=: no value {unknown[0]!r} in the graph{_in(where)}; its values are "
            f"{shown}{more}"
        )
    typed = _declared_types(model)
    if any(n not in typed for n in wanted):
        typed = {**_inferred_types(model), **typed}
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    del edited.graph.output[:]
    for name in wanted:
        info = onnx.ValueInfoProto(name=name)
        if name in typed:
            info.type.CopyFrom(typed[name])
        edited.graph.output.append(info)
    return edited


def strip_value_info(model: onnx.ModelProto) -> bool:
    """Drop the graph's intermediate shape hints (``value_info``), in place; whether it
    had any. They are hints only: no value changes."""
    had = len(model.graph.value_info) > 0
    del model.graph.value_info[:]
    return had


def _in(where: str) -> str:
    return f" of {where}" if where else ""


def _declared_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    g = model.graph
    return {v.name: v.type for v in (*g.value_info, *g.input, *g.output) if v.type.ByteSize()}


def _inferred_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Value name -> type from onnx's shape inference; {} where it cannot run on the model
    (an operator it does not know is no error: the runtime infers that output)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a file too large to serialise, a domain inference rejects
        return {}
    types = _declared_types(inferred)
    for t in types.values():  # a dim inference names ``unk__0`` is a dim it does not know
        for d in t.tensor_type.shape.dim if t.HasField("tensor_type") else ():
            if d.dim_param.startswith("unk__"):
                d.ClearField("dim_param")
    return types
