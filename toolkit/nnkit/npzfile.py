"""The ``.npz`` files of ONNX values: what ``nnkit infer --input`` reads and ``--save`` writes.

Archives of plain ``.npy`` members, never pickled:

==================  ==========================================================
``x``               a tensor ``x``; strings as ``<U`` (or UTF-8 ``<S``) arrays
``s.0``, ``s.1``    the elements of the sequence ``s``, in order
``s.len``           the length of ``s`` (a 0-d integer): optional, but the one way
                    to give an empty sequence; ``--save`` always writes it
(no key)            an empty optional
``__nnkit__``       written by ``--save``: a 0-d JSON string,
                    ``{"format": "nnkit.values/1", "dtypes": {key: dtype}}``, naming
                    the dtype of every member stored as raw bits (below)
==================  ==========================================================

**The dtype rule.** A tensor whose dtype numpy lacks is stored as its raw bits, an
unsigned array of the same width (``uint16`` for bfloat16, ``uint8`` for the others,
one value per byte). Reading one for a declared low-precision input, nnkit takes an
``ml_dtypes`` array of that dtype as it is, and reinterprets (a ``view``, no
conversion) a raw ``|V2``/``|V1`` array or an unsigned array of the same width; for the
4- and 2-bit types every byte must hold one value (below 16, or below 4), as
``ml_dtypes`` stores them. Anything else is refused in one line that names the
declared dtype and what was given.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from nnkit.errors import InputError, NnkitError
from nnkit.values import (
    LEN_SUFFIX,
    LOW_PRECISION,
    META_KEY,
    Value,
    as_declared,
    as_strings,
    is_string_array,
    raw_bits_dtype,
)

#: The ``format`` stamp of that record.
META_FORMAT = "nnkit.values/1"


def file_arrays(values: Mapping[str, Value]) -> dict[str, np.ndarray]:
    """The members of the ``.npz`` that holds ``values``, by the layout of this module.

    Raises:
        NnkitError: two values whose keys clash (a sequence ``s`` beside a tensor
            ``s.0``), or strings that ``<U`` cannot hold (a trailing NUL).
    """
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}

    def put(key: str, arr: np.ndarray, owner: str) -> None:
        if key in arrays or key == META_KEY:
            raise NnkitError(
                f"cannot save {owner!r}: its key {key!r} clashes with another output's "
                f"in the .npz layout (s.0, s.1, ... and s.len hold a sequence s)"
            )
        arrays[key] = _storable(arr, key, dtypes)

    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, list):
            for index, element in enumerate(value):
                put(f"{name}.{index}", np.asarray(element), name)
            put(name + LEN_SUFFIX, np.array(len(value), dtype=np.int64), name)
        else:
            put(name, np.asarray(value), name)
    if dtypes:
        meta = json.dumps({"format": META_FORMAT, "dtypes": dtypes}, sort_keys=True)
        arrays[META_KEY] = np.array(meta)
    return arrays


def _storable(arr: np.ndarray, key: str, dtypes: dict[str, str]) -> np.ndarray:
    name = str(arr.dtype)
    if name in LOW_PRECISION:
        dtypes[key] = name
        return np.require(arr, requirements="C").view(raw_bits_dtype(name))  # rank kept
    if arr.dtype.kind == "O":
        if not is_string_array(arr):
            raise NnkitError(f"cannot save {key!r}: an object array that is not strings")
        strings = as_strings(arr, what=key)
        text = (
            np.array(strings.tolist(), dtype=str).reshape(arr.shape)
            if arr.size
            else (np.empty(arr.shape, dtype="<U1"))
        )
        if text.tolist() != strings.tolist():
            raise NnkitError(
                f"cannot save {key!r} faithfully: a string ends with a NUL character, "
                "which numpy's <U arrays drop"
            )
        return text
    if arr.dtype.kind == "V" or arr.dtype.fields:
        raise NnkitError(f"cannot save {key!r}: dtype {arr.dtype} is not an ONNX tensor type")
    return arr


def write_npz(target: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` (uncompressed), one ``KEY.npy`` member each.

    Unlike ``np.savez``, any key works, ``file`` and ``allow_pickle`` included (they are
    ``savez``'s own parameters), and nothing is pickled.
    """
    with zipfile.ZipFile(target, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def save_values(path: str | Path, values: Mapping[str, Value]) -> None:
    """Write ``values`` to ``path`` (an ``.npz``), faithfully: :func:`load_values` reads
    back the same values and dtypes. Not atomic by itself: callers write a temporary."""
    arrays = file_arrays(values)
    with Path(path).open("wb") as f:
        write_npz(f, arrays)


def restore_dtypes(arrays: dict[str, np.ndarray], *, where: str) -> dict[str, np.ndarray]:
    """Apply a saved file's ``__nnkit__`` record: raw bits back to their dtypes.

    Raises:
        InputError: a record that is not nnkit's, or names a member or dtype wrongly.
    """
    if META_KEY not in arrays:
        return arrays
    meta = arrays.pop(META_KEY)
    try:
        record = json.loads(str(meta.item())) if meta.dtype.kind == "U" and meta.ndim == 0 else {}
    except json.JSONDecodeError:
        record = {}
    if not isinstance(record, dict) or record.get("format") != META_FORMAT:
        raise InputError(f"{where}[{META_KEY}] is not an {META_FORMAT} record")
    for key, name in dict(record.get("dtypes", {})).items():
        if key not in arrays or name not in LOW_PRECISION:
            raise InputError(f"{where}[{META_KEY}] names {key!r} as {name!r}, which does not fit")
        arrays[key] = as_declared(arrays[key], name, what=f"{where}[{key}]")
    return arrays


def load_values(path: str | Path) -> dict[str, Any]:
    """The members of an ``.npz`` written by :func:`save_values`, dtypes restored, by key.

    Bind them to declared values with :func:`bind_values`; or, without a model, group
    them with :func:`group_values`.
    """
    from nnkit.inputs import load_feeds

    return load_feeds([(None, Path(path))])
