"""Input arrays: seeded generation from specs, and loading user feeds from .npy/.npz.

Generated inputs are a pure function of (specs, sizes, seed): every backend of a run,
and every run of a CI job, sees the same numbers. Feeds from files are loaded with
``allow_pickle=False``: an object array or a pickle is refused, never unpickled.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnkit.errors import InputError
from nnkit.spec import TensorSpec

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo

#: Default seed of generated inputs.
DEFAULT_SEED = 0


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a dtype name (bfloat16, float8, int4 ... through ml_dtypes)."""
    from nnkit.values import numpy_dtype as dtype_of

    return dtype_of(name)


def random_array(
    shape: tuple[int, ...],
    dtype: str,
    rng: np.random.Generator,
    *,
    value_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """One array of ``shape`` and ``dtype`` drawn from ``rng``.

    Floats are standard normal; integers uniform in ``value_range`` (inclusive, default
    0..9); booleans fair coin flips.
    """
    dt = numpy_dtype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        lo, hi = value_range or (0, 9)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    return rng.standard_normal(shape, dtype=np.float32).astype(dt)


def generate(
    specs: Iterable[TensorSpec],
    *,
    sizes: Mapping[str, int] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
    """Seeded arrays for ``specs``.

    Args:
        specs: the tensors to make.
        sizes: dynamic dim label -> size; a label not given takes its example size.
        shapes: input name -> concrete shape, overriding ``sizes`` for that input.
        seed: the seed; the same seed gives the same arrays.

    Returns:
        Input name -> array, in the order of ``specs``.
    """
    rng = np.random.default_rng(seed)
    sizes = sizes or {}
    shapes = shapes or {}
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = shapes.get(spec.name) or spec.shape_with(dict(sizes))
        out[spec.name] = random_array(shape, spec.dtype, rng, value_range=spec.value_range)
    return out


def declared_arrays(
    declared: Iterable[TensorInfo], shapes: Mapping[str, tuple[int, ...]], *, seed: int
) -> dict[str, np.ndarray]:
    """Seeded arrays for a model file's declared inputs, at concrete ``shapes`` (by name).

    Raises:
        InputError: an input whose dtype nnkit cannot generate.
    """
    from nnkit.values import LEN_SUFFIX, random_value

    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for info in declared:
        if info.is_sequence or info.unsupported:
            how = (
                f", a sequence as the arrays {info.name}.0, {info.name}.1, ... "
                f"({info.name}{LEN_SUFFIX} = 0 for an empty one)"
                if info.is_sequence
                else ""
            )
            raise InputError(
                f"input {info.name!r} is a {info.type_text()}, which nnkit does not generate: "
                f"give it in an .npz file (--input FILE.npz){how}"
            )
        try:
            special = random_value(shapes[info.name], info.dtype, rng)
            feeds[info.name] = (
                special if special is not None else random_array(shapes[info.name], info.dtype, rng)
            )
        except TypeError:
            raise InputError(
                f"input {info.name!r} has dtype {info.dtype}, which nnkit cannot generate: "
                "give it as an array file (--input NAME=FILE.npy)"
            ) from None
    return feeds


def load_feeds(items: Iterable[tuple[str | None, Path]]) -> dict[str, np.ndarray]:
    """Load user feeds: ``(name, file.npy)`` pairs, or ``(None, file.npz)`` for many at once.

    The result is by file key, in the layout of :mod:`nnkit.values` (a sequence ``s`` as
    ``s.0``, ``s.1``, ...; :func:`nnkit.values.bind_values` binds the keys to a model's
    inputs). ``(name, file.npz)`` takes ``name`` from the archive, or the keys of the
    sequence ``name``. Arrays ``--save`` stored as raw bits get their dtypes back.

    Raises:
        InputError: a file that is missing, not an array, an object array or a pickle.
    """
    from nnkit.values import restore_dtypes, sequence_keys_of

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


def _load_array_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} does not exist")
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
