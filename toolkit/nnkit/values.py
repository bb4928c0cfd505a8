"""ONNX values in numpy: every tensor dtype, sequences, optionals, and binding them to inputs.

A *value* is what an ONNX input or output holds:

* a tensor: a numpy array. Strings are object arrays of ``str`` (as onnxruntime and
  ``onnx.numpy_helper`` give them). The dtypes numpy lacks (bfloat16, the float8
  family, float4e2m1, int4/uint4, int2/uint2) are ``ml_dtypes`` arrays, unpacked, one
  value per byte, as ``onnx.numpy_helper`` and ``ml_dtypes`` hold them;
* a sequence: a Python list of arrays (of any sizes);
* an optional: its element's value, or None when it is empty.

Files (``nnkit infer --input`` reads them, ``--save`` writes them) have the ``.npz``
layout :mod:`nnkit.npzfile` documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from nnkit.errors import InputError

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo

#: An ONNX value in numpy: a tensor, a sequence of tensors, or None (an empty optional).
Value: TypeAlias = "np.ndarray | list[np.ndarray] | None"

#: The dtype name of ONNX string tensors.
STRING = "string"
#: dtype name -> bits per value, for the dtypes numpy lacks (``ml_dtypes`` names them).
LOW_PRECISION: dict[str, int] = {
    "bfloat16": 16,
    "float8_e4m3fn": 8,
    "float8_e4m3fnuz": 8,
    "float8_e5m2": 8,
    "float8_e5m2fnuz": 8,
    "float8_e8m0fnu": 8,
    "float4_e2m1fn": 4,
    "int4": 4,
    "uint4": 4,
    "int2": 2,
    "uint2": 2,
}
#: The member of a saved ``.npz`` that records the dtypes stored as raw bits
#: (:mod:`nnkit.npzfile`); binding skips it.
META_KEY = "__nnkit__"
#: The suffix of a sequence's length key (``s.len``).
LEN_SUFFIX = ".len"


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name: numpy's own, or ``ml_dtypes``' (``bfloat16``, ``int4``).

    Raises:
        TypeError: no such dtype (``string`` has none: strings are object arrays).
    """
    if name in LOW_PRECISION:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    if name == STRING:
        raise TypeError("ONNX strings have no numpy dtype")
    return np.dtype(name)


def onnx_elem_type(name: str) -> int:
    """The ONNX ``TensorProto`` element type of a dtype name (``bfloat16`` -> 16)."""
    import onnx

    if name == STRING:
        return onnx.TensorProto.STRING
    return int(onnx.helper.np_dtype_to_tensor_dtype(numpy_dtype(name)))


def is_low_precision(dtype: np.dtype | str) -> bool:
    """True for a dtype numpy lacks (bfloat16, float8, float4, int4, int2 ...)."""
    return str(dtype) in LOW_PRECISION


def raw_bits_dtype(name: str) -> np.dtype:
    """The unsigned dtype that stores a low-precision dtype's bits (``uint16``, ``uint8``)."""
    return np.dtype(np.uint16 if LOW_PRECISION[name] == 16 else np.uint8)


def is_string_array(arr: np.ndarray) -> bool:
    """True for an array of strings: ``<U``, ``<S``, or an object array holding only str/bytes."""
    if arr.dtype.kind in "US":
        return True
    if arr.dtype.kind != "O":
        return False
    return all(isinstance(v, str | bytes) for v in arr.ravel().tolist())


def as_strings(arr: np.ndarray, *, what: str) -> np.ndarray:
    """An array of strings as an object array of ``str`` (bytes decoded as UTF-8).

    Raises:
        InputError: bytes that are not UTF-8.
    """
    values = arr.ravel().tolist()
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{what}: element {i} is not UTF-8 text ({e.reason} at byte {e.start})"
                ) from None
        out[i] = v
    return out.reshape(arr.shape)


def dtype_name(arr: np.ndarray) -> str:
    """The dtype name nnkit reports for an array: ``string`` for strings, else numpy's."""
    return STRING if is_string_array(arr) else str(arr.dtype)


def value_dtype(value: Value) -> str:
    """The dtype of a value's tensors: ``float32``, ``string``, ... (``-`` for none)."""
    if isinstance(value, list):
        return dtype_name(value[0]) if value else "-"
    return "-" if value is None else dtype_name(np.asarray(value))


def pack_bits(arr: np.ndarray) -> np.ndarray:
    """A 4- or 2-bit array packed as runtimes hold it: ``uint8``, the first value in the
    lowest bits (ONNX's layout for int4, uint4, float4e2m1, int2, uint2)."""
    bits = LOW_PRECISION[str(arr.dtype)]
    per_byte = 8 // bits
    flat = np.require(arr, requirements="C").view(np.uint8).ravel() & ((1 << bits) - 1)
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, dtype=np.uint8)
    padded[: flat.size] = flat
    lanes = padded.reshape(-1, per_byte)
    packed = np.zeros(lanes.shape[0], dtype=np.uint8)
    for lane in range(per_byte):
        packed |= lanes[:, lane] << (lane * bits)
    return packed


def from_bits(raw: bytes | np.ndarray, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """An array of ``dtype`` and ``shape`` from the raw bytes a runtime holds it in
    (packed for the 4- and 2-bit types, as :func:`pack_bits` writes them)."""
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw.view(np.uint8)
    data = data.ravel()
    bits = LOW_PRECISION[dtype]
    count = int(np.prod(shape, dtype=np.int64))
    if bits < 8:
        per_byte = 8 // bits
        lanes = [(data >> (lane * bits)) & ((1 << bits) - 1) for lane in range(per_byte)]
        data = np.stack(lanes, axis=1).ravel()[:count].astype(np.uint8)
    else:
        data = data[: count * bits // 8].copy()
    return data.view(raw_bits_dtype(dtype)).view(numpy_dtype(dtype)).reshape(tuple(shape))


# -- reading: a declared tensor from what a file gave ---------------------------------------


def as_declared(arr: np.ndarray, dtype: str, *, what: str) -> np.ndarray:
    """``arr`` as a tensor of the declared ``dtype``, by the dtype rule of this module.

    Strings (``<U``, ``<S``, object arrays of str) become object arrays of ``str`` for a
    string input; raw bits become the declared low-precision dtype. Other arrays are
    returned as they are (the feed check compares their dtype with the declared one).

    Raises:
        InputError: raw bits of the wrong width or out of range, bytes that are not UTF-8.
    """
    if dtype == STRING:
        if arr.dtype.kind in "USO" and is_string_array(arr):
            return as_strings(arr, what=what)
        return arr
    if dtype not in LOW_PRECISION or str(arr.dtype) == dtype:
        return arr
    bits = LOW_PRECISION[dtype]
    width = raw_bits_dtype(dtype)
    raw = arr.dtype.kind == "V" and not arr.dtype.fields and arr.dtype.itemsize == width.itemsize
    if not raw and arr.dtype != width:
        raise InputError(
            f"{what}: the model declares {dtype}, given {arr.dtype}: give an ml_dtypes "
            f"{dtype} array, or its raw bits as {width} (or |V{width.itemsize}) "
            f"of the same shape{_packed_hint(dtype)}"
        )
    bits_view = arr.view(width)
    if bits < 8 and bits_view.size and int(bits_view.max()) >= 1 << bits:
        index = int(np.argmax(bits_view.ravel() >= 1 << bits))
        raise InputError(
            f"{what}: {dtype} takes one {bits}-bit value per byte (below {1 << bits}), as "
            f"ml_dtypes and onnx.numpy_helper hold it; element {index} is "
            f"{int(bits_view.ravel()[index])}"
        )
    return bits_view.view(numpy_dtype(dtype))


def _packed_hint(dtype: str) -> str:
    if LOW_PRECISION[dtype] >= 8:
        return ""
    return ", one value per byte (not packed)"


def bind_values(
    declared: Sequence[TensorInfo], given: Mapping[str, Any], *, what: str = "input"
) -> dict[str, Value]:
    """The value of every declared input (or output) from what a file or a caller gave.

    ``given`` holds file keys (``x``, ``s.0``, ``s.len`` ...) or values by name (a list
    for a sequence, None for an empty optional). Each declared name takes its value by
    the layout of this module: a tensor from its key, a sequence from its element keys,
    an optional from its key or, with no key, empty.

    Raises:
        InputError: a key no declared value takes, a missing tensor or sequence, a sequence
            given as one array or with a gap, a value kind nnkit cannot give a runtime.
    """
    used: set[str] = set()
    out: dict[str, Value] = {}
    names = {info.name for info in declared}
    missing = []
    for info in declared:
        value = _bind_one(info, given, used, names, what=what)
        if isinstance(value, _Missing):
            missing.append(info.name)
        else:
            out[info.name] = value
    extra = [k for k in given if k not in used and k != META_KEY]
    if missing or extra:
        parts = [f"missing {', '.join(map(repr, missing))}"] if missing else []
        parts += [f"unexpected {', '.join(map(repr, extra))}"] if extra else []
        taken = ", ".join(
            repr(i.name) if i.kind == "tensor" else f"{i.name!r} ({i.type_text()})"
            for i in declared
        )
        raise InputError(
            f"{what}s do not match the model ({'; '.join(parts)}): it takes {taken or 'none'}"
        )
    return out


class _Missing:
    pass


_MISSING: Any = _Missing()


def _bind_one(
    info: TensorInfo, given: Mapping[str, Any], used: set[str], names: set[str], *, what: str
) -> Value | _Missing:
    label = f"{what} {info.name!r}"
    if info.unsupported:
        if info.name in given or any(_element_index(k, info.name) is not None for k in given):
            raise InputError(
                f"{label} is a {info.type_text()}, which nnkit cannot give a runtime "
                "(tensors, sequences of tensors and optionals only)"
            )
        return _MISSING
    elements = _sequence_keys(info.name, given, names) if info.is_sequence else None
    if info.name in given:
        value = given[info.name]
        if info.is_sequence and isinstance(value, np.ndarray):
            raise InputError(
                f"{label} is a {info.type_text()}: give its elements as "
                f"{info.name + '.0'!r}, {info.name + '.1'!r}, ... (and "
                f"{info.name + LEN_SUFFIX!r} = 0 for an empty one), not one array"
            )
        if elements is not None:
            raise InputError(f"{label} is given twice: as {info.name!r} and as its elements")
        used.add(info.name)
        return _convert(value, info, label)
    if elements is not None:
        order, keys = elements
        used.update(keys)
        return [_convert_tensor(given[k], info, f"{label}[{i}]") for i, k in enumerate(order)]
    if info.is_optional:
        return None
    return _MISSING


def _element_index(key: str, name: str) -> int | None:
    prefix = name + "."
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    return int(rest) if rest.isdigit() and (rest == "0" or not rest.startswith("0")) else None


def _sequence_keys(
    name: str, given: Mapping[str, Any], names: set[str]
) -> tuple[list[str], list[str]] | None:
    """The element keys ``name.0`` ... ``name.N-1`` of a sequence in ``given``, in order,
    and every key it takes (``name.len`` too), checked; None when there are none."""
    found = {
        index: key
        for key in given
        if key not in names and (index := _element_index(key, name)) is not None
    }
    length_key = name + LEN_SUFFIX
    has_length = length_key in given and length_key not in names
    if not found and not has_length:
        return None
    if set(found) != set(range(len(found))):
        gap = min(set(range(max(found) + 1)) - set(found))
        raise InputError(f"sequence {name!r}: element {name}.{gap} is missing")
    keys = list(found.values())
    if has_length:
        length = np.asarray(given[length_key])
        if length.ndim != 0 or length.dtype.kind not in "iu" or int(length) != len(found):
            raise InputError(
                f"sequence {name!r}: {length_key!r} says {length.tolist()!r}, "
                f"{len(found)} elements given"
            )
        keys.append(length_key)
    return [found[i] for i in range(len(found))], keys


def _convert(value: Any, info: TensorInfo, label: str) -> Value:
    if value is None:
        if not info.is_optional:
            raise InputError(f"{label} is a {info.type_text()}, given none")
        return None
    if isinstance(value, list | tuple):
        if not info.is_sequence:
            raise InputError(f"{label} is a {info.type_text()}, given a sequence")
        return [_convert_tensor(v, info, f"{label}[{i}]") for i, v in enumerate(value)]
    return _convert_tensor(value, info, label)


def _convert_tensor(value: Any, info: TensorInfo, label: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InputError(f"{label}: expected a numpy array, given {type(value).__name__}")
    return as_declared(value, info.dtype, what=label)


def group_values(arrays: Mapping[str, np.ndarray]) -> dict[str, Value]:
    """File keys grouped without a model: every ``s.len`` makes ``s.0`` ... a sequence."""
    sequences = {k[: -len(LEN_SUFFIX)] for k in arrays if k.endswith(LEN_SUFFIX)}
    out: dict[str, Value] = {}
    taken: set[str] = set()
    for name in sorted(sequences):
        elements = _sequence_keys(name, arrays, set())
        if elements is not None:
            out[name] = [arrays[k] for k in elements[0]]
            taken.update(elements[1])
    for key, arr in arrays.items():
        if key not in taken and key != META_KEY:
            out[key] = arr
    return out


def sequence_keys_of(name: str, keys: Mapping[str, Any]) -> list[str]:
    """The keys of the sequence ``name`` among ``keys`` (``name.0`` ..., ``name.len``)."""
    return [k for k in keys if _element_index(k, name) is not None or k == name + LEN_SUFFIX]


def random_value(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> Any:
    """A seeded array for the dtypes this module owns, or None for numpy's own dtypes.

    Strings are lowercase words; int4/uint4/int2/uint2 integers over their whole range;
    the low-precision floats standard normal, rounded to the dtype.
    """
    if dtype == STRING:
        return random_strings(shape, rng)
    if dtype not in LOW_PRECISION:
        return None
    dt = numpy_dtype(dtype)
    if dtype in ("int4", "uint4", "int2", "uint2"):
        bits = LOW_PRECISION[dtype]
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype[0] == "i" else (0, (1 << bits) - 1)
        )
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    normal = rng.standard_normal(shape, dtype=np.float32)
    return (np.abs(normal) if dtype == "float8_e8m0fnu" else normal).astype(dt)  # e8m0: no sign


def random_strings(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Seeded lowercase words (1 to 8 letters) as an object array of ``str``."""
    size = int(np.prod(shape, dtype=np.int64))
    lengths = rng.integers(1, 9, size=size)
    letters = rng.integers(0, 26, size=int(lengths.sum()))
    words, start = [], 0
    for n in lengths.tolist():
        words.append("".join(chr(97 + c) for c in letters[start : start + n].tolist()))
        start += n
    out = np.empty(size, dtype=object)
    out[:] = words
    return out.reshape(shape)
