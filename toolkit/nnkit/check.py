"""Validate an ONNX file and summarise it.

``onnx.checker`` with ``full_check`` (which runs strict shape inference), then a summary
a person can read: IR version, opsets, inputs and outputs, operator counts, parameters,
size, metadata. Only onnx is imported: no torch, no runtime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import ModelFileError, describe, first_line

if TYPE_CHECKING:
    import onnx

    from nnkit.backends.base import TensorInfo
    from nnkit.spec import TensorSpec


@dataclass
class ModelSummary:
    """What is in an ONNX file."""

    path: str
    size_bytes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    operators: dict[str, int]
    node_count: int
    parameter_count: int
    metadata: dict[str, str]


@dataclass
class CheckResult:
    """The checker's verdict on a file; true when valid."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    summary: ModelSummary | None = None

    def __bool__(self) -> bool:
        return self.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors,
            "summary": asdict(self.summary) if self.summary else None,
        }


def load_model_file(path: str | Path, *, external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX file, or say in one line why it cannot be read.

    Raises:
        ModelFileError: missing, a directory, empty, not a protobuf, not a model, or an
            external data file that is missing.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file {str(p)!r} does not exist")
    if not p.is_file():
        raise ModelFileError(f"model file {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise ModelFileError(f"model file {str(p)!r} is empty")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(
            f"{p} is not an ONNX model (cannot parse it: {first_line(e)})"
        ) from None
    except OSError as e:
        raise ModelFileError(f"cannot read {p}: {e.strerror or e}") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelFileError(
            f"{p} parses as protobuf but is not an ONNX model (no graph or IR version)"
        )
    if external_data:
        _load_external(model, p)
    return model


def _load_external(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    _require_external_files(model, path)
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # onnx raises bare ValueError/OSError here
        raise ModelFileError(f"cannot load the external data of {path}: {first_line(e)}") from None


def _require_external_files(model: onnx.ModelProto, path: Path) -> None:
    missing = sorted(
        {
            _external_location(t)
            for t in _all_initializers(model)
            if _uses_external(t) and not (path.parent / _external_location(t)).is_file()
        }
    )
    if missing:
        raise ModelFileError(
            f"{path} keeps its weights in external data that is missing: {', '.join(missing)} "
            f"(expected beside the model, in {path.parent})"
        )


def _external_location(tensor: onnx.TensorProto) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def _all_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for g in _graphs(model.graph) for t in g.initializer]


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    import onnx

    out = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out.extend(_graphs(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    out.extend(_graphs(g))
    return out


def check_file(path: str | Path) -> CheckResult:
    """Run the full checker on ``path`` and summarise the model.

    Returns:
        The verdict; ``errors`` holds the checker's message when invalid.

    Raises:
        ModelFileError: the file cannot be read at all (exit status 2, not a verdict).
    """
    import onnx

    p = Path(path)
    model = load_model_file(p)
    try:
        summary = summarize(model, p)
    except Exception as e:  # a model too broken to summarise is still an invalid model
        return CheckResult(False, [f"cannot summarise: {first_line(e)}"])
    try:
        # The path form handles models over 2 GB and external data.
        onnx.checker.check_model(str(p), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return CheckResult(False, [first_line(e)], summary)
    except Exception as e:  # the checker raises other types on malformed fields
        return CheckResult(False, [describe(e)], summary)
    return CheckResult(True, [], summary)


def summarize(model: onnx.ModelProto, path: Path) -> ModelSummary:
    """A :class:`ModelSummary` of ``model``, read from ``path``."""
    import numpy as np
    import onnx

    ops: Counter[str] = Counter()
    nodes = 0
    for g in _graphs(model.graph):
        for n in g.node:
            ops[f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type] += 1
            nodes += 1
    # Parameters are the floating-point initializers; int64 ones are shapes and indices.
    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
    params = sum(int(np.prod(t.dims)) for t in _all_initializers(model) if t.data_type in floats)
    return ModelSummary(
        path=str(path),
        size_bytes=path.stat().st_size,
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        inputs=[_info_dict(v) for v in _graph_inputs(model.graph)],
        outputs=[_info_dict(v) for v in model.graph.output],
        operators=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        node_count=nodes,
        parameter_count=params,
        metadata=metadata(model),
    )


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old exporters list both)."""
    inits = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in inits]


def _info_dict(value: onnx.ValueInfoProto) -> dict[str, Any]:
    info = value_info(value)
    return {
        "name": info.name,
        "shape": list(info.dims) if info.ranked else None,
        "dtype": info.dtype,
        "kind": info.kind,
        "type": info.type_text(),
    }


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


def preflight(path: str | Path) -> onnx.ModelProto:
    """Refuse a file no runtime should be handed: unreadable, or rejected by the checker.

    Runtimes are native code: some crash the interpreter on a malformed file instead of
    raising. Every backend calls this before its runtime sees the file. The check is the
    checker without full shape inference: fast, and enough to turn a truncated or
    mutated file into one clear error.

    Raises:
        ModelFileError: the file is missing, unreadable, not a model, has missing
            external data, or the checker rejects it.

    Returns:
        The model, its weights not loaded: for its declared inputs and outputs.
    """
    import onnx

    p = Path(path)
    model = load_model_file(p, external_data=False)
    _require_external_files(model, p)
    try:
        onnx.checker.check_model(str(p))
    except Exception as e:  # ValidationError, and others on malformed fields
        raise ModelFileError(f"{p} is not a valid ONNX model: {first_line(e)}") from None
    return model


def _uses_external(tensor: onnx.TensorProto) -> bool:
    import onnx

    return tensor.data_location == onnx.TensorProto.EXTERNAL


def read_io(path: str | Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The declared inputs and outputs of the ONNX file at ``path`` (weights not loaded)."""
    return io_of(load_model_file(path, external_data=False))


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata properties, key -> value."""
    return {p.key: p.value for p in model.metadata_props}


def stamped_specs(model: onnx.ModelProto) -> tuple[TensorSpec, ...]:
    """The input specs nnkit stamped into a file it exported (``nnkit.inputs``); () if none.

    Raises:
        SpecError: the metadata holds something that is not a spec.
    """
    from nnkit.spec import parse_spec

    return tuple(parse_spec(s) for s in metadata(model).get("nnkit.inputs", "").split())


def io_of(model: onnx.ModelProto) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The declared inputs (initializers excluded) and outputs of ``model``."""
    inputs = tuple(value_info(v) for v in _graph_inputs(model.graph))
    outputs = tuple(value_info(v) for v in model.graph.output)
    return inputs, outputs
