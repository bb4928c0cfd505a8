"""Reading a loaded ONNX model: its (sub)graphs, declared inputs and outputs, metadata.

Only onnx is used, imported where needed; nothing here reads a file (see
:mod:`nnkit.onnxfile.load`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from nnkit.backends.base import TensorInfo
    from nnkit.spec import TensorSpec


def graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    import onnx

    out = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out.extend(graphs(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    out.extend(graphs(g))
    return out


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old exporters list both)."""
    inits = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def io_of(model: onnx.ModelProto) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The declared inputs (initializers excluded) and outputs of ``model``."""
    inputs = tuple(value_info(v) for v in graph_inputs(model.graph))
    outputs = tuple(value_info(v) for v in model.graph.output)
    return inputs, outputs


def value_info(value: onnx.ValueInfoProto) -> TensorInfo:
    """A :class:`TensorInfo` from an ONNX value declaration.

    A sequence or an optional is described by its kind and its tensor's dims and dtype;
    a type nnkit cannot feed (a map, a sparse tensor) by its ONNX type, in ``kind``.
    """
    from nnkit.backends.base import TensorInfo

    wrappers, inner = _unwrap(value.type)
    which = inner.WhichOneof("value")
    if which not in ("tensor_type", None):
        return TensorInfo(value.name, (), "undefined", _type_text(value.type))
    t = inner.tensor_type
    dims: list[int | str | None] = []
    ranked = t.HasField("shape")
    if ranked:
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
    kind = " ".join(wrappers) or "tensor"
    if kind not in ("tensor", "sequence", "optional", "optional sequence"):
        kind = _type_text(value.type)
    return TensorInfo(value.name, tuple(dims), onnx_dtype_name(t.elem_type), kind, ranked)


def _unwrap(type_proto: onnx.TypeProto) -> tuple[list[str], onnx.TypeProto]:
    """The sequence/optional wrappers around a type (outermost first), and what they hold."""
    wrappers = []
    while True:
        which = type_proto.WhichOneof("value")
        if which == "sequence_type":
            wrappers.append("sequence")
            type_proto = type_proto.sequence_type.elem_type
        elif which == "optional_type":
            wrappers.append("optional")
            type_proto = type_proto.optional_type.elem_type
        else:
            return wrappers, type_proto


def _type_text(type_proto: onnx.TypeProto) -> str:
    """A type in ONNX's notation on nnkit's dtype names: ``map(int64, seq(float32))``."""
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        return onnx_dtype_name(type_proto.tensor_type.elem_type)
    if which == "sparse_tensor_type":
        return f"sparse_tensor({onnx_dtype_name(type_proto.sparse_tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({_type_text(type_proto.sequence_type.elem_type)})"
    if which == "optional_type":
        return f"optional({_type_text(type_proto.optional_type.elem_type)})"
    if which == "map_type":
        key = onnx_dtype_name(type_proto.map_type.key_type)
        return f"map({key}, {_type_text(type_proto.map_type.value_type)})"
    return which or "undefined"


def onnx_dtype_name(elem_type: int) -> str:
    """The numpy name of an ONNX element type (``float32``); ``string`` for strings, the
    ``ml_dtypes`` name where numpy has none (``bfloat16``), else ONNX's name."""
    import onnx

    if elem_type == onnx.TensorProto.STRING:
        return "string"
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    name = str(np_dtype)
    return "bool" if name == "bool_" else name


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata properties, key -> value."""
    return {p.key: p.value for p in model.metadata_props}


def stamped_specs(model: onnx.ModelProto) -> tuple[TensorSpec, ...]:
    """The input specs nnkit stamped into a file it exported (``nnkit.inputs``); () if none.

    Raises:
        SpecError: the metadata holds something that is not a spec.
    """
    from nnkit.spec import parse_spec, split_specs

    return tuple(parse_spec(s) for s in split_specs(metadata(model).get("nnkit.inputs", "")))
