"""Graph edits: the changes nnkit makes to an ONNX model, each in one place.

- :func:`strip_value_info`: drop the intermediate shape hints (``value_info``). They
  change no value, but tract reads them as facts and the onnxruntime quantizer refuses
  a file whose hints disagree with shape inference.
- :func:`strip_stack_traces`: drop the dynamo exporter's per-node Python stack traces.
- :func:`set_metadata`: set the model's metadata, replacing keys of a prefix.
- :func:`expose`, :func:`add_outputs`: intermediate values as graph outputs.
- :func:`extract_subgraph`: the part of the graph between chosen values, as a model.

The strips and :func:`set_metadata` change the model in place; :func:`add_outputs` and
:func:`extract_subgraph` return a new model and leave theirs as it was. Both check their
names first and name the values that do exist; both give models the ONNX checker
accepts. Only onnx is used, imported where needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nnkit.errors import NnkitError, first_line
from nnkit.onnxfile.graph import graphs

if TYPE_CHECKING:
    import onnx

#: Node metadata the dynamo exporter writes that holds absolute local paths.
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"
#: Value names an error message lists at most.
_SHOWN = 8


class GraphEditError(NnkitError):
    """A graph edit that cannot be made: a name that is no value of the graph, a value
    without a type, a cut that leaves a value undefined."""


def strip_value_info(model: onnx.ModelProto) -> int:
    """Drop the intermediate shape hints (``value_info``) of every (sub)graph; the count dropped.

    Graph inputs and outputs keep their declarations: only the hints on intermediate
    values go, which no runtime needs and which change no value.
    """
    dropped = 0
    for graph in graphs(model.graph):
        dropped += len(graph.value_info)
        del graph.value_info[:]
    return dropped


def strip_stack_traces(model: onnx.ModelProto) -> int:
    """Drop the dynamo exporter's per-node Python stack traces; the count dropped.

    They name files by absolute local paths (a machine's layout, in a file that is
    shipped) and are most of the file's metadata (1.1 MB on swin_t). The module scopes
    (``pkg.torch.onnx.name_scopes``) stay: they map nodes to modules.
    """
    dropped = 0
    for graph in graphs(model.graph):
        for node in graph.node:
            kept = [(p.key, p.value) for p in node.metadata_props if p.key != STACK_TRACE_KEY]
            if len(kept) != len(node.metadata_props):
                dropped += len(node.metadata_props) - len(kept)
                _replace_props(node.metadata_props, kept)
    return dropped


def set_metadata(
    model: onnx.ModelProto, values: Mapping[str, str], *, replace_prefix: str | None = None
) -> None:
    """Set the model's metadata ``values``, after the entries it keeps.

    An entry with one of the keys given is replaced; with ``replace_prefix``, every entry
    whose key starts with it goes too (a stamp that replaces the previous stamp whole).
    """
    kept = [
        (p.key, p.value)
        for p in model.metadata_props
        if p.key not in values and not (replace_prefix and p.key.startswith(replace_prefix))
    ]
    _replace_props(model.metadata_props, [*kept, *values.items()])


def expose(model: onnx.ModelProto, names: Iterable[str], *, where: str = "") -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are exactly the values ``names``, in that order.

    What a backend loads to return chosen values (``Backend(path, outputs=[...])``).
    Each is a value of the main graph: a graph input, an initializer, an intermediate
    value or an output (a value inside an If/Loop body is not). It keeps the type the
    file declares or hints; else the type ONNX shape inference finds; else none (the
    runtime then infers it).

    Raises:
        GraphEditError: no name, or a name that is no value of the main graph (the message
            lists the values there are).
    """
    import onnx

    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise GraphEditError(f"no value named to expose{_of(where)}: give at least one")
    _require_values(model.graph, wanted, where=where)
    types = _value_types(model, wanted, strict=False)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.extend(types[n] for n in wanted)
    return out


def add_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the values ``names``, after its own outputs.

    As :func:`expose`, with the model's own outputs first (a name already an output is
    left as it is), and every added value typed.

    Raises:
        GraphEditError: a name that is no value of the main graph, or one whose type
            neither the file nor shape inference gives.
    """
    present = [o.name for o in model.graph.output]
    wanted = [n for n in dict.fromkeys(names) if n not in present]
    _require_values(model.graph, wanted)
    _value_types(model, wanted, strict=True)  # every added value has a type, or refused
    return expose(model, [*present, *wanted])


def extract_subgraph(
    model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str]
) -> onnx.ModelProto:
    """The part of ``model`` that computes ``outputs`` from ``inputs``, as a model.

    The nodes kept are those the outputs depend on, back to the inputs (through the
    values an If/Loop/Scan body reads from outside too); with the initializers they read,
    the opsets, IR version and local functions of ``model``. Metadata is not copied: it
    describes the whole model. A model whose weights are external data keeps them
    there: load it with its data (:func:`~nnkit.onnxfile.load_model_file`) to save the
    extract elsewhere.

    Args:
        model: the model to cut.
        inputs: values of the main graph that become the extract's inputs (graph inputs,
            intermediate values or initializers), in order.
        outputs: values of the main graph that become its outputs, in order.

    Raises:
        GraphEditError: no outputs, a name given twice or that is no value of the main
            graph, a value without a type, or outputs that need a graph input not among
            ``inputs`` (the message names what to add).
    """
    import onnx
    from onnx import helper

    inputs, outputs = list(inputs), list(outputs)
    if not outputs:
        raise GraphEditError("a subgraph needs at least one output")
    for what, names in (("inputs", inputs), ("outputs", outputs)):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GraphEditError(f"{what} of a subgraph name {', '.join(map(repr, twice))} twice")
    graph = model.graph
    _require_values(graph, [*inputs, *outputs])
    nodes, used = _needed(graph, set(inputs), outputs)
    initializers = [t for t in graph.initializer if t.name in used and t.name not in inputs]
    loose = [v.name for v in graph.input if v.name in used and v.name not in inputs]
    loose = [n for n in loose if n not in {t.name for t in initializers}]
    if loose:
        raise GraphEditError(
            f"outputs {', '.join(map(repr, outputs))} also need the graph input"
            f"{'s' if len(loose) > 1 else ''} {', '.join(map(repr, loose))}: add "
            f"{'them' if len(loose) > 1 else 'it'} to the subgraph's inputs"
        )
    types = _value_types(model, [*inputs, *outputs], strict=True)
    boundary = {*inputs, *outputs}
    hints = [v for v in graph.value_info if v.name not in boundary and v.name in _produced(nodes)]
    sub = helper.make_graph(
        nodes,
        f"{graph.name or 'graph'} [{', '.join(inputs)} -> {', '.join(outputs)}]",
        [types[n] for n in inputs],
        [types[n] for n in outputs],
        initializer=initializers,
        value_info=hints,
    )
    out = helper.make_model(
        sub,
        opset_imports=list(model.opset_import),
        functions=_functions(model, nodes),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
    )
    out.ir_version = model.ir_version
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as e:  # e.g. a cut through a node's outputs
        raise GraphEditError(
            f"the subgraph from {', '.join(map(repr, inputs))} to "
            f"{', '.join(map(repr, outputs))} is not a valid model: {first_line(e)}"
        ) from None
    return out


# -- helpers -------------------------------------------------------------------------------


def _replace_props(props: Any, pairs: Sequence[tuple[str, str]]) -> None:
    """Replace a repeated ``StringStringEntryProto`` field's entries with ``pairs``."""
    pairs = list(pairs)
    del props[:]
    for key, value in pairs:
        entry = props.add()
        entry.key, entry.value = key, value


def _value_names(graph: onnx.GraphProto) -> dict[str, None]:
    """Every value of ``graph`` (not of its bodies), in graph order: inputs, initializers,
    node outputs."""
    names = [v.name for v in graph.input]
    names += [t.name for t in graph.initializer]
    names += [o for node in graph.node for o in node.output if o]
    return dict.fromkeys(names)


def _require_values(graph: onnx.GraphProto, names: Iterable[str], *, where: str = "") -> None:
    known = _value_names(graph)
    unknown = [n for n in names if n not in known]
    if unknown:
        shown = list(known)[:_SHOWN]
        more = f", ... ({len(known)} in all)" if len(known) > _SHOWN else ""
        raise GraphEditError(
            f"{', '.join(map(repr, unknown))} "
            f"{'is no value' if len(unknown) == 1 else 'are no values'} of the main graph"
            f"{_of(where)}; its values are {', '.join(map(repr, shown))}{more}"
        )


def _of(where: str) -> str:
    return f" of {where}" if where else ""


def _value_types(model: onnx.ModelProto, names: Sequence[str], *, strict: bool) -> dict[str, Any]:
    """A ``ValueInfoProto`` for each of ``names``: the file's declaration or hint, an
    initializer's type, else what ONNX shape inference gives (a dim it names ``unk__N``
    is one it does not know: left unnamed); else, unless ``strict``, an untyped one.

    Raises:
        GraphEditError: ``strict``, and a value no source types.
    """
    import onnx
    from onnx import helper

    graph = model.graph
    found: dict[str, Any] = {}
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.type.WhichOneof("value"):
            found.setdefault(v.name, v)
    for t in graph.initializer:
        found.setdefault(t.name, helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    if any(n not in found for n in names):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph.value_info
        except Exception:  # too large, or a graph inference cannot follow: no more types
            inferred = []
        for v in inferred:
            if v.type.WhichOneof("value"):
                for d in v.type.tensor_type.shape.dim if v.type.HasField("tensor_type") else ():
                    if d.dim_param.startswith("unk__"):
                        d.ClearField("dim_param")
                found.setdefault(v.name, v)
    untyped = [n for n in names if n not in found]
    if untyped and strict:
        raise GraphEditError(
            f"value{'s' if len(untyped) > 1 else ''} {', '.join(map(repr, untyped))} "
            "has no type: the file declares none and ONNX shape inference infers none"
        )
    out = {}
    for n in names:
        v = onnx.ValueInfoProto(name=n)
        if n in found:
            v.CopyFrom(found[n])
        out[n] = v
    return out


def _needed(
    graph: onnx.GraphProto, stop: set[str], outputs: Sequence[str]
) -> tuple[list[Any], set[str]]:
    """The nodes ``outputs`` depend on back to the ``stop`` values (in graph order), and
    every value they read."""
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output if o}
    keep: set[int] = set()
    used: set[str] = set()
    todo = [n for n in outputs if n not in stop]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        index = producer.get(name)
        if name in stop or index is None or index in keep:
            continue
        keep.add(index)
        node = graph.node[index]
        todo += [n for n in (*node.input, *_outer_names(node)) if n and n not in stop]
    return [graph.node[i] for i in sorted(keep)], used


def _outer_names(node: Any) -> set[str]:
    """Values a node's If/Loop/Scan bodies read from the enclosing graph."""
    import onnx

    outer: set[str] = set()
    for attr in node.attribute:
        bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for body in bodies:
            defined = {*(v.name for v in body.input), *(t.name for t in body.initializer)}
            defined |= {o for n in body.node for o in n.output}
            read = {i for n in body.node for i in n.input if i} | set().union(
                *(_outer_names(n) for n in body.node)
            )
            outer |= read - defined
    return outer


def _produced(nodes: Iterable[Any]) -> set[str]:
    return {o for node in nodes for o in node.output if o}


def _functions(model: onnx.ModelProto, nodes: Sequence[Any]) -> list[Any]:
    """The model's local functions that ``nodes`` call, directly or through a function."""
    local = {(f.domain, f.name): f for f in model.functions}
    called: dict[tuple[str, str], Any] = {}
    todo = list(nodes)
    while todo:
        node = todo.pop()
        key = (node.domain, node.op_type)
        if key in local and key not in called:
            called[key] = local[key]
            todo += list(local[key].node)
    return [f for key, f in local.items() if key in called]
