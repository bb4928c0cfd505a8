"""Validate an ONNX file and summarise it.

``onnx.checker`` with ``full_check`` (which runs strict shape inference), then a summary
a person can read: IR version, opsets, inputs and outputs, operator counts, parameters,
size, metadata. Only onnx is imported: no torch, no runtime.
"""

from __future__ import annotations

import os
import re
import stat
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

    require_sound_external_data(model, path)
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # onnx raises bare ValueError/OSError here
        raise ModelFileError(f"cannot load the external data of {path}: {first_line(e)}") from None


def require_sound_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse a model whose external data is missing, escapes its folder or is too short.

    Raises:
        ModelFileError: the first problem :func:`external_data_problems` finds.
    """
    problems = external_data_problems(model, path)
    if problems:
        raise ModelFileError(f"{path} is not a valid ONNX model: {problems[0]}")


def external_data_problems(model: onnx.ModelProto, path: Path) -> list[str]:
    """Why the external data of ``model`` (read from ``path``) cannot be used; [] if it can.

    Checked from the file system's metadata alone, never by reading the data: a 40-byte
    tensor in a 2 GB file costs a ``stat``. Each external tensor (initializers, sparse
    initializers and tensor attributes, in every subgraph) must name a regular file
    inside the model's folder (no absolute path, no ``..``, no symbolic link: the
    CVE-2024-27318 class), and its offset and length must fit the file and give exactly
    the tensor's byte size (without a length, the data runs to the end of the file).

    Raises:
        ModelFileError: an external data file that does not exist (the model cannot be
            read at all, rather than being invalid).
    """
    folder = path.parent
    problems: list[str] = []
    missing: set[str] = set()
    for tensor in _external_tensors(model):
        where = _external_fields(tensor)
        location = where.get("location", "")
        why = _location_problem(location, folder)
        if why:
            problems.append(f"external data of tensor {tensor.name!r}: {why}")
            continue
        try:
            st = os.stat(folder / location)
        except FileNotFoundError:
            missing.add(location)
            continue
        except OSError as e:
            problems.append(f"external data {location!r}: {e.strerror or e}")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"external data {location!r} of tensor {tensor.name!r} is not a file")
            continue
        why = _extent_problem(tensor, where, st.st_size)
        if why:
            problems.append(f"external data {location!r} of tensor {tensor.name!r}: {why}")
    if missing:
        raise ModelFileError(
            f"{path} keeps its weights in external data that is missing: "
            f"{', '.join(sorted(missing))} (expected beside the model, in {folder})"
        )
    return problems


def _location_problem(location: str, folder: Path) -> str:
    """Why ``location`` must not be opened: it leaves ``folder`` or is a link; '' if fine."""
    if not location:
        return "no file named (no 'location')"
    if os.path.isabs(location) or location.startswith(("/", "\\")) or _DRIVE.match(location):
        return f"{location!r} is an absolute path; external data must sit in the model's folder"
    if ".." in re.split(r"[\\/]", location):
        return f"{location!r} climbs out of the model's folder ('..')"
    full = folder / location
    if os.path.islink(full):
        return (
            f"{location!r} is a symbolic link; external data must be a file in the model's folder"
        )
    inside = os.path.realpath(folder)
    if os.path.commonpath([inside, os.path.realpath(full)]) != inside:
        return f"{location!r} resolves outside the model's folder (through a symbolic link)"
    return ""


def _extent_problem(tensor: onnx.TensorProto, where: dict[str, str], file_size: int) -> str:
    """Why the bytes ``where`` points at cannot hold ``tensor``; '' if they can."""
    import onnx

    needed = tensor_nbytes(tensor)
    if needed is None:
        kind = onnx.TensorProto.DataType.Name(tensor.data_type)
        return f"a {kind} tensor cannot be stored as external data"
    fields = {}
    for key in ("offset", "length"):
        text = where.get(key)
        if text is None:
            continue
        if not text.strip().isdigit():
            return f"{key} {text!r} is not a non-negative integer"
        fields[key] = int(text)
    offset = fields.get("offset", 0)
    shape = f"{onnx_dtype_name(tensor.data_type)} {list(tensor.dims)}"
    if offset > file_size:
        return f"offset {offset} is past the end of the file ({file_size} bytes)"
    if "length" in fields:
        length = fields["length"]
        if length != needed:
            return f"length {length} does not match the {needed} bytes of a {shape} tensor"
        if offset + length > file_size:
            return (
                f"the tensor ({shape}) needs {needed} bytes at offset {offset}, but the file "
                f"holds only {file_size - offset} from there ({file_size} bytes in all)"
            )
        return ""
    if file_size - offset != needed:
        return (
            f"the tensor ({shape}) needs {needed} bytes, but with no length given its data "
            f"runs from offset {offset} to the end of the file: {file_size - offset} bytes"
        )
    return ""


def tensor_nbytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes a tensor's data takes in raw form; None for strings and unknown types."""
    import onnx

    count = 1
    for d in tensor.dims:
        count *= int(d)
    name = onnx.TensorProto.DataType.Name(tensor.data_type)
    bits = _PACKED_BITS.get(name)
    if bits is not None:
        return (count * bits + 7) // 8
    if name in ("STRING", "UNDEFINED"):
        return None
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    return count * itemsize


#: ONNX types stored packed, below one byte an element.
_PACKED_BITS = {
    "UINT4": 4,
    "INT4": 4,
    "FLOAT4E2M1": 4,
    "UINT2": 2,
    "INT2": 2,
    "FLOAT6E2M3": 6,
    "FLOAT6E3M2": 6,
}
_DRIVE = re.compile(r"^[A-Za-z]:")


def _external_fields(tensor: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


def _external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Every tensor of ``model`` stored as external data, in every (sub)graph."""
    import onnx

    tensors: list[onnx.TensorProto] = []
    for g in _graphs(model.graph):
        tensors.extend(g.initializer)
        for sparse in g.sparse_initializer:
            tensors.extend((sparse.values, sparse.indices))
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors.append(attr.t)
                tensors.extend(attr.tensors)
                if attr.HasField("sparse_tensor"):
                    tensors.extend((attr.sparse_tensor.values, attr.sparse_tensor.indices))
                for sparse in attr.sparse_tensors:
                    tensors.extend((sparse.values, sparse.indices))
    return [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


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
    model = load_model_file(p, external_data=False)  # external data: checked, never read
    problems = external_data_problems(model, p)
    try:
        summary = summarize(model, p)
    except Exception as e:  # a model too broken to summarise is still an invalid model
        return CheckResult(False, [*problems, f"cannot summarise: {first_line(e)}"])
    if problems:
        return CheckResult(False, problems, summary)
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
    require_sound_external_data(model, p)
    try:
        onnx.checker.check_model(str(p))
    except Exception as e:  # ValidationError, and others on malformed fields
        raise ModelFileError(f"{p} is not a valid ONNX model: {first_line(e)}") from None
    return model


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
    from nnkit.spec import parse_spec, split_specs

    return tuple(parse_spec(s) for s in split_specs(metadata(model).get("nnkit.inputs", "")))


def io_of(model: onnx.ModelProto) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The declared inputs (initializers excluded) and outputs of ``model``."""
    inputs = tuple(value_info(v) for v in _graph_inputs(model.graph))
    outputs = tuple(value_info(v) for v in model.graph.output)
    return inputs, outputs
