"""External data: where a model's weights live outside the file, checked before use.

A tensor stored as external data names a file and a byte range; a model from
elsewhere can point anywhere (``../../etc/passwd``, a symbolic link, a truncated file).
Everything here is decided from the file system's metadata, never by reading the data.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from nnkit.errors import ModelFileError
from nnkit.onnxfile.graph import graphs, onnx_dtype_name

if TYPE_CHECKING:
    import onnx


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
    for g in graphs(model.graph):
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
