"""Input arrays: seeded generation (from specs or a file's declared inputs), and loading
user feeds from .npy/.npz.

Generated inputs are a pure function of (inputs, sizes, seed): every backend of a run,
and every run of a CI job, sees the same numbers. Feeds from files are loaded with
``allow_pickle=False``: an object array or a pickle is refused, never unpickled.

Sizes are checked before anything is allocated: the bytes of generated inputs from
their shapes, and those of arrays in files from their ``.npy`` headers (inside an
``.npz``, before a member is inflated). Over :func:`input_bytes_limit` (a quarter of the
memory this process may use; ``NNKIT_MAX_INPUT_BYTES`` overrides it) the request is
refused with the size, instead of running the machine out of memory.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from nnkit.errors import InputError
from nnkit.render import human_bytes
from nnkit.spec import TensorSpec, ValueRange, Values, ValueSet, concrete_shape

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo

#: Default seed of generated inputs.
DEFAULT_SEED = 0
#: The values of a generated integer input whose spec names none.
DEFAULT_INT_RANGE = ValueRange(0, 9)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a dtype name (bfloat16, float8, int4 ... through ml_dtypes)."""
    from nnkit.values import numpy_dtype as dtype_of

    return dtype_of(name)


def random_array(
    shape: tuple[int, ...],
    dtype: str,
    rng: np.random.Generator,
    *,
    value_range: Values | None = None,
) -> np.ndarray:
    """One array of ``shape`` and ``dtype`` drawn from ``rng``.

    Without ``value_range``: floats are standard normal, integers uniform in 0..9
    (:data:`DEFAULT_INT_RANGE`), booleans fair coin flips. With a set, each element is
    one of its values; with a range, integers are uniform over its whole numbers and
    floats uniform within it (never on an open bound).
    """
    dt = numpy_dtype(dtype)
    if isinstance(value_range, ValueSet):
        return rng.choice(np.array(value_range.values), size=shape).astype(dt)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        lo, hi = (value_range or DEFAULT_INT_RANGE).int_bounds
        return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64).astype(dt)
    if value_range is None:
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)
    return _uniform(shape, dt, rng, value_range)


def _uniform(
    shape: tuple[int, ...], dt: np.dtype, rng: np.random.Generator, values: ValueRange
) -> np.ndarray:
    """Uniform in ``values``, in ``dt``: a draw that rounds onto an open bound (or past a
    closed one) is replaced by the middle of the range, so every value lies within it."""
    arr = rng.uniform(values.low, values.high, size=shape).astype(dt)
    wide = arr.astype(np.float64)
    outside = (
        (wide < values.low)
        | (wide > values.high)
        | ((wide == values.low) & (not values.low_closed))
        | ((wide == values.high) & (not values.high_closed))
    )
    if outside.any():
        arr[outside] = np.asarray((values.low + values.high) / 2).astype(dt)
    return arr


def describe_values(spec: TensorSpec) -> str:
    """The values nnkit generates for ``spec``, e.g. ``int64 in [0,9] (the default ...)``."""
    if spec.value_range is not None:
        return f"{spec.dtype} in {spec.value_range}"
    if spec.dtype == "bool":
        return "bool in {0,1}"
    if np.issubdtype(numpy_dtype(spec.dtype), np.integer):
        return f"{spec.dtype} in {DEFAULT_INT_RANGE} (the default for integers without a range)"
    return f"{spec.dtype} from a standard normal (the default for floats without a range)"


def generated_hint(specs: Iterable[TensorSpec]) -> str:
    """What nnkit generated for the integer inputs among ``specs``, and how to change it.

    For the message of a model that fails on generated inputs: an ``Embedding(5)`` fed
    ids 0..9 fails with an index error that says nothing of where the ids came from.
    Empty when no input is an integer.
    """
    ints = [s for s in specs if np.issubdtype(numpy_dtype(s.dtype), np.integer)]
    if not ints:
        return ""
    said = "; ".join(f"{s.name}: {describe_values(s)}" for s in ints)
    example = next((s for s in ints if s.value_range is None), ints[0])
    plain = replace(example, value_range=None)
    return (
        f"; nnkit generated the integer inputs ({said}): give the values the model takes in "
        f"the spec, e.g. --input {plain}[0,N) or {plain}{{0,1}}"
    )


#: Environment variable that sets :func:`input_bytes_limit` (bytes, or 512M, 8G, 1T).
LIMIT_ENV = "NNKIT_MAX_INPUT_BYTES"
#: Share of the memory this process may use that one run's inputs may take.
LIMIT_SHARE = 4


def input_bytes_limit() -> int:
    """The most bytes one run's inputs may take.

    ``NNKIT_MAX_INPUT_BYTES`` where set; else a quarter of the memory this process may
    use (physical memory, or the cgroup's limit where that is lower): the runtime needs
    room for its outputs and intermediate tensors too.

    Raises:
        InputError: ``NNKIT_MAX_INPUT_BYTES`` is not a size.
    """
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        match = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?B)?", text, flags=re.IGNORECASE)
        if not match:
            raise InputError(
                f"{LIMIT_ENV}={text!r} is not a size: give bytes, or a number with K, M, G "
                "or T (e.g. 8G)"
            )
        return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return usable_memory() // LIMIT_SHARE


def usable_memory() -> int:
    """Bytes of memory this process may use: physical memory, capped by a cgroup limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def check_input_bytes(
    arrays: Iterable[tuple[str, tuple[int, ...], np.dtype]], *, what: str
) -> None:
    """Refuse inputs whose bytes, all together, exceed :func:`input_bytes_limit`.

    Args:
        arrays: ``(name, shape, dtype)`` of each input, before any is allocated.
        what: how the message names them ("generated inputs", "x.npz").

    Raises:
        InputError: naming the total, the largest input and the limit.
    """
    sizes = [(name, shape, dt, math.prod(shape) * dt.itemsize) for name, shape, dt in arrays]
    total = sum(n for *_, n in sizes)
    limit = input_bytes_limit()
    if total <= limit:
        return
    name, shape, dt, nbytes = max(sizes, key=lambda s: s[3])
    source = (
        f"set by {LIMIT_ENV}"
        if os.environ.get(LIMIT_ENV, "").strip()
        else (
            f"a quarter of this machine's {human_bytes(usable_memory())} of memory; "
            f"set {LIMIT_ENV} to change it"
        )
    )
    raise InputError(
        f"{what} need {human_bytes(total)} ({name!r} {list(shape)} {_dtype_name(dt)}: "
        f"{human_bytes(nbytes)}), over nnkit's limit of {human_bytes(limit)} ({source})"
    )


def _dtype_name(dt: np.dtype) -> str:
    return "bool" if dt == np.bool_ else str(dt)


def generate(
    tensors: Iterable[TensorSpec | TensorInfo],
    *,
    sizes: Mapping[str, int] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
    """Seeded arrays for a model's input specs or a model file's declared inputs.

    One generator for both: a spec (:class:`~nnkit.spec.TensorSpec`, a PyTorch model's
    input) and a declared input (:class:`~nnkit.backends.base.TensorInfo`, read from an
    ONNX file) are drawn alike, in order, from one generator seeded with ``seed``.
    Floats are standard normal and integers uniform in 0..9 unless a spec names its
    values; strings, int4/int2 and the low-precision floats are drawn as
    :func:`nnkit.values.random_value` says.

    Args:
        tensors: the inputs to make.
        sizes: dynamic dim label -> size; a spec's label not given takes its example
            size, a file's symbolic dim 1 (see :func:`nnkit.spec.concrete_shape`).
        shapes: input name -> concrete shape, overriding ``sizes`` for that input.
        seed: the seed; the same seed gives the same arrays.

    Returns:
        Input name -> array, in the order of ``tensors``.

    Raises:
        InputError: a declared input nnkit cannot generate (a sequence, a map, a dtype
            it has no values for), or inputs too large for memory (checked before any is
            allocated).
    """
    from nnkit.values import LEN_SUFFIX, random_value

    tensors = list(tensors)
    sizes = sizes or {}
    shapes = shapes or {}
    for t in tensors:
        if not isinstance(t, TensorSpec) and (t.is_sequence or t.unsupported):
            how = (
                f", a sequence as the arrays {t.name}.0, {t.name}.1, ... "
                f"({t.name}{LEN_SUFFIX} = 0 for an empty one)"
                if t.is_sequence
                else ""
            )
            raise InputError(
                f"input {t.name!r} is a {t.type_text()}, which nnkit does not generate: "
                f"give it in an .npz file (--input FILE.npz){how}"
            )
    concrete = {t.name: shapes.get(t.name) or concrete_shape(t.dims, sizes) for t in tensors}
    check_input_bytes(
        ((t.name, tuple(concrete[t.name]), _generated_dtype(t.dtype)) for t in tensors),
        what="the generated inputs",
    )
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for t in tensors:
        shape = tuple(concrete[t.name])
        values = t.value_range if isinstance(t, TensorSpec) else None
        try:
            special = random_value(shape, t.dtype, rng) if values is None else None
            arrays[t.name] = (
                special
                if special is not None
                else random_array(shape, t.dtype, rng, value_range=values)
            )
        except TypeError:
            raise InputError(
                f"input {t.name!r} has dtype {t.dtype}, which nnkit cannot generate: "
                "give it as an array file (--input NAME=FILE.npy)"
            ) from None
    return arrays


def _generated_dtype(name: str) -> np.dtype:
    """The dtype an input of ONNX dtype ``name`` is generated as (1 byte for unknown ones:
    :func:`generate` refuses those with their own message)."""
    try:
        return numpy_dtype(name)
    except (TypeError, ImportError):
        return np.dtype(np.uint8)


def load_feeds(items: Iterable[tuple[str | None, Path]]) -> dict[str, np.ndarray]:
    """Load user feeds: ``(name, file.npy)`` pairs, or ``(None, file.npz)`` for many at once.

    The result is by file key, in the layout of :mod:`nnkit.values` (a sequence ``s`` as
    ``s.0``, ``s.1``, ...; :func:`nnkit.values.bind_values` binds the keys to a model's
    inputs). ``(name, file.npz)`` takes ``name`` from the archive, or the keys of the
    sequence ``name``. Arrays ``--save`` stored as raw bits get their dtypes back.

    Every file's array headers are read first, and the declared sizes checked against
    the files' lengths and :func:`input_bytes_limit`, before any array is loaded.

    Raises:
        InputError: a file that is missing, not an array, an object array or a pickle,
            truncated, or whose arrays are too large.
    """
    from nnkit.npzfile import restore_dtypes
    from nnkit.values import sequence_keys_of

    items = list(items)
    declared = [
        (f"{path}[{key}]" if key else str(path), shape, dt, available)
        for _, path in items
        for key, shape, dt, available in _array_headers(path)
    ]
    check_input_bytes(
        ((what, shape, dt) for what, shape, dt, _ in declared),
        what=f"the input arrays in {', '.join(str(p) for _, p in items)}",
    )
    for what, shape, dt, available in declared:
        needed = math.prod(shape) * dt.itemsize
        if available < needed:
            raise InputError(
                f"{what} is truncated: its header declares {list(shape)} {_dtype_name(dt)} "
                f"({needed:,} bytes), the file holds {max(available, 0):,}"
            )
    feeds: dict[str, np.ndarray] = {}
    for name, path in items:
        loaded = _load_array_file(path)
        if isinstance(loaded, np.ndarray):
            if name is None:
                raise InputError(f"{path}: a .npy file holds one array; give it as NAME={path}")
            arrays = {name: loaded}
        else:
            arrays = restore_dtypes(loaded, where=str(path))
            if name is not None:
                keys = [name] if name in arrays else sequence_keys_of(name, arrays)
                if not keys:
                    raise InputError(
                        f"{path} has no array {name!r}; it holds {', '.join(arrays) or 'none'}"
                    )
                arrays = {k: arrays[k] for k in keys}
        for key, arr in arrays.items():
            if key in feeds:
                raise InputError(f"input {key!r} is given twice")
            feeds[key] = arr
    return feeds


def _array_headers(path: Path) -> list[tuple[str, tuple[int, ...], np.dtype, int]]:
    """``(member, shape, dtype, bytes there)`` of each array in a ``.npy`` (member '')
    or ``.npz``, read from the headers alone: nothing is inflated or allocated.

    Raises:
        InputError: not a regular file, not an array file, or an ``.npz`` member that
            is not an array.
    """
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} is not a regular file")
    try:
        with path.open("rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            if magic.startswith(b"PK"):
                return _npz_headers(path)
            f.seek(0)
            shape, dt, header = _npy_header(f, str(path))
            return [("", shape, dt, path.stat().st_size - header)]
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{path} is not a readable .npy/.npz array file: {_why(e)}") from None


def _npz_headers(path: Path) -> list[tuple[str, tuple[int, ...], np.dtype, int]]:
    found = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            what = f"{path}[{info.filename}]"
            if not info.filename.endswith(".npy"):
                raise InputError(f"{what} is not an array (an .npz holds NAME.npy members only)")
            with zf.open(info) as member:  # inflates only as far as the header
                shape, dt, header = _npy_header(member, what)
            found.append((info.filename[: -len(".npy")], shape, dt, info.file_size - header))
    return found


def _npy_header(f: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and header length of the ``.npy`` array at ``f``'s position."""
    version = np.lib.format.read_magic(f)
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise InputError(
            f"{what} is a .npy file of format {version[0]}.{version[1]} (structured arrays); "
            "nnkit feeds plain arrays"
        )
    shape, _, dt = readers[version](f)
    if dt.hasobject or dt.fields:
        raise InputError(f"{what} is not a numeric array (dtype {dt}); nnkit feeds plain arrays")
    return tuple(int(d) for d in shape), dt, f.tell()


_NPY_MAGIC = b"\x93NUMPY"


def _load_array_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return _checked(loaded, str(path))
        with loaded:
            return {k: _checked(loaded[k], f"{path}[{k}]") for k in loaded.files}
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{path} is not a readable .npy/.npz array file: {_why(e)}") from None


def _checked(arr: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.hasobject or arr.dtype.fields:
        raise InputError(
            f"{what} is not a numeric array (dtype {arr.dtype}); nnkit feeds plain arrays"
        )
    return arr


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
