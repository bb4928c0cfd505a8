"""The one interface every runtime implements.

A backend loads a model, runs a dict of named values and returns a dict of named values,
then closes; a value is a numpy array, a list of arrays (an ONNX sequence) or None (an
empty optional), as :mod:`nnkit.values` defines. :meth:`Backend.run` checks state and feeds once, against the
model's declared inputs, then calls the subclass hook :meth:`Backend.run_impl`; each
runtime writes only its part. Timing belongs to the harness (``nnkit.bench``), never
to a backend: :meth:`prepare` / :meth:`run_prepared` let the harness time exactly the
run, with inputs already where the runtime wants them (on the device, for ``cuda``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnkit.errors import BackendError, InputError, NnkitError, describe

#: The value kinds nnkit feeds and reads back (:attr:`TensorInfo.kind`).
KINDS = ("tensor", "sequence", "optional", "optional sequence")


@dataclass(frozen=True)
class TensorInfo:
    """A declared model input or output.

    ``dims`` holds an int for a fixed size, a str for a symbolic one and None where the
    file says nothing; ``dtype`` is the numpy dtype name (``float32``), ``string`` for
    ONNX strings, an ``ml_dtypes`` name for the types numpy lacks (``bfloat16``).
    ``kind`` says what holds the tensor: one of :data:`KINDS`, or, for a type nnkit
    cannot feed (a map, a sparse tensor, a sequence of optionals), that type in ONNX's
    notation; ``dims`` and ``dtype`` then describe the innermost tensor, where it has one.
    ``ranked`` is False where the file does not give the tensor a shape at all (any
    rank: ``dims`` is then empty and means nothing).
    """

    name: str
    dims: tuple[int | str | None, ...]
    dtype: str
    kind: str = "tensor"
    ranked: bool = True

    def shape_text(self) -> str:
        if not self.ranked:
            return "[any shape]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"

    @property
    def is_sequence(self) -> bool:
        return self.kind in ("sequence", "optional sequence")

    @property
    def is_optional(self) -> bool:
        return self.kind in ("optional", "optional sequence")

    @property
    def unsupported(self) -> bool:
        """A value kind nnkit cannot give a runtime or read back (a map, a sparse tensor)."""
        return self.kind not in KINDS

    def type_text(self) -> str:
        """The value's type in ONNX's notation on nnkit's dtype names: ``float32``,
        ``seq(float32)``, ``optional(float32)``, ``optional(seq(int64))``, ``map(int64, float32)``."""
        if self.kind == "tensor":
            return self.dtype
        if self.kind == "sequence":
            return f"seq({self.dtype})"
        if self.kind == "optional":
            return f"optional({self.dtype})"
        if self.kind == "optional sequence":
            return f"optional(seq({self.dtype}))"
        return self.kind


class Backend(abc.ABC):
    """A runtime that runs an ONNX file (or, for ``torch``, the PyTorch model).

    Use as a context manager, or call :meth:`load` and :meth:`close`.
    """

    #: Registry name (``cpu``, ``openvino`` ...).
    name: ClassVar[str]
    #: What a user installs to get this runtime (shown when it is missing).
    requirement: ClassVar[str]

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.inputs: tuple[TensorInfo, ...] = ()
        self.outputs: tuple[TensorInfo, ...] = ()
        self._loaded = False

    # -- the public contract -------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def probe(cls) -> str:
        """Prove the runtime works here by running a tiny model; return its version.

        Raises:
            BackendUnavailableError: it cannot run here; the message says why.
        """

    def load(self) -> None:
        """Check the file, read its declared inputs and outputs, create the runtime session.

        The runtime never sees a file the ONNX checker rejects: some runtimes crash the
        interpreter on malformed files rather than raise.
        """
        from nnkit.check import io_of, preflight

        self.inputs, self.outputs = io_of(preflight(self.path))
        try:
            self.load_impl()
        except NnkitError:  # ours already (BackendUnavailableError too): keep it
            raise
        except Exception as e:  # a runtime's own exception type: wrap, keep the cause
            raise self.error(f"cannot load {self.path}", e) from e
        self._loaded = True

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run once on ``feeds`` (input name -> value); return output name -> value.

        A value is an array, a list of arrays (a sequence), or None (an empty optional):
        see :mod:`nnkit.values`.
        """
        return self._checked_call(self.run_impl, feeds, f"cannot run {self.path}")

    def prepare(self, feeds: Mapping[str, Any]) -> Any:
        """Check ``feeds`` and put them where the runtime reads them; for timed runs."""
        return self._checked_call(
            self.prepare_impl, feeds, f"cannot take the inputs of {self.path}"
        )

    def _checked_call(self, hook: Any, feeds: Mapping[str, Any], what: str) -> Any:
        """``hook(feeds)`` once loaded and the feeds checked; a runtime's own exception
        becomes this backend's :class:`BackendError` (``what``: the cause), ours pass."""
        self._require_loaded()
        check_feeds(self.inputs, feeds)
        try:
            return hook(dict(feeds))
        except NnkitError:
            raise
        except Exception as e:
            raise self.error(what, e) from e

    def run_prepared(self, prepared: Any) -> Any:
        """Run on what :meth:`prepare` returned; the result stays where the runtime put it.

        This is the call the latency harness times: no checks, no copies it can avoid.
        The result is the runtime's own object; :meth:`fetch` turns it into arrays.
        """
        return self.run_impl(prepared)

    def fetch(self, result: Any) -> dict[str, Any]:
        """What :meth:`run_prepared` returned, as output name -> value (on the host)."""
        return {name: fetched(value) for name, value in result.items()}

    def close(self) -> None:
        """Release the session; the backend can be loaded again."""
        if self._loaded:
            self.close_impl()
        self._loaded = False

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hooks for each runtime -------------------------------------------------------
    @abc.abstractmethod
    def load_impl(self) -> None:
        """Create the runtime's session for ``self.path``."""

    @abc.abstractmethod
    def run_impl(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run on checked feeds; return every output by name, as values (:func:`fetched`)."""

    def prepare_impl(self, feeds: dict[str, Any]) -> Any:
        return feeds

    def close_impl(self) -> None:  # noqa: B027 - optional hook
        """Drop the session."""

    # -- helpers ----------------------------------------------------------------------
    def error(self, what: str, cause: BaseException) -> BackendError:
        """A :class:`BackendError` for this backend and file, with the cause's first line."""
        reason = describe(cause)
        return BackendError(
            f"{self.name}: {what}: {reason}", backend=self.name, model_path=str(self.path)
        )

    def _require_loaded(self) -> None:
        if not self._loaded:
            raise RuntimeError(f"backend {self.name!r} is not loaded: call load() first")


def check_feeds(declared: tuple[TensorInfo, ...], feeds: Mapping[str, Any]) -> None:
    """Check feeds against the declared inputs: names, value kinds, ranks, fixed dims, dtypes.

    A symbolic dim must have one size across all inputs that name it (the elements of a
    sequence may differ). An optional input may be left out or given as None; a
    sequence is a list of arrays.

    Raises:
        InputError: what was expected and what was given.
    """
    names = [t.name for t in declared]
    missing = [t.name for t in declared if t.name not in feeds and not t.is_optional]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unexpected {', '.join(map(repr, extra))}")
        raise InputError(
            f"inputs do not match the model ({'; '.join(parts)}): it takes {', '.join(map(repr, names))}"
        )
    symbols: dict[str, tuple[int, str]] = {}
    for info in declared:
        if info.name not in feeds:
            continue
        value = feeds[info.name]
        label = f"input {info.name!r}"
        if info.unsupported:
            raise InputError(
                f"{label} is a {info.type_text()}, which nnkit cannot give a runtime "
                "(tensors, sequences of tensors and optionals only)"
            )
        if value is None:
            if not info.is_optional:
                raise InputError(f"{label}: expected {info.type_text()}, given none")
            continue
        if isinstance(value, list):
            if not info.is_sequence:
                raise InputError(f"{label}: expected a {info.type_text()} tensor, given a sequence")
            for index, element in enumerate(value):
                _check_tensor(info, element, f"{label}[{index}]", {})
            continue
        if info.is_sequence:
            raise InputError(
                f"{label}: expected a {info.type_text()} (a list of arrays), given "
                f"{type(value).__name__}"
            )
        _check_tensor(info, value, label, symbols)


def _check_tensor(
    info: TensorInfo, arr: Any, label: str, symbols: dict[str, tuple[int, str]]
) -> None:
    from nnkit.values import dtype_name

    if not isinstance(arr, np.ndarray):
        raise InputError(f"{label}: expected a numpy array, given {type(arr).__name__}")
    dtype = dtype_name(arr)
    given = f"given {tuple(arr.shape)} {dtype}"
    expected = f"expected {info.shape_text()} {info.dtype}"
    if info.ranked and arr.ndim != len(info.dims):
        raise InputError(f"{label}: rank {arr.ndim} != {len(info.dims)}: {expected}, {given}")
    # An unranked declaration has no dims: the loop checks nothing then.
    for axis, (want, got) in enumerate(zip(info.dims, arr.shape, strict=False)):
        if isinstance(want, int) and want != got:
            raise InputError(f"{label}: dim {axis} is {got}, must be {want}: {expected}, {given}")
        if isinstance(want, str):
            seen = symbols.setdefault(want, (got, info.name))
            if seen[0] != got:
                raise InputError(
                    f"{label}: dim {axis} ({want!r}) is {got}, but {seen[1]!r} "
                    f"gives {want!r} = {seen[0]}"
                )
    if dtype != info.dtype:
        raise InputError(f"{label}: dtype {dtype} != {info.dtype}: {expected}, {given}")


def contiguous(arr: np.ndarray) -> np.ndarray:
    """``arr`` C-contiguous, its rank kept: ``np.ascontiguousarray`` turns shape ``()``
    into ``(1,)`` (it returns at least one dimension, by contract)."""
    return arr if arr.flags.c_contiguous else np.array(arr, order="C")


def fetched(value: Any) -> Any:
    """A runtime's output as a value: an array, a list of arrays (a sequence), or None.

    Raises:
        TypeError: a sequence holding something other than tensors (a runtime's malformed
            answer: nnkit does not reshape it into another one).
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        for index, element in enumerate(value):
            if element is None or isinstance(element, list | tuple | dict):
                raise TypeError(
                    f"the runtime gave a sequence whose element {index} is a "
                    f"{type(element).__name__}, not a tensor"
                )
        return [np.asarray(v) for v in value]
    return np.asarray(value)
