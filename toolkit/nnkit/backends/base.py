"""The one interface every runtime implements.

A backend loads an ONNX file, runs a dict of named values and returns a dict of named
values, then closes; a value is a numpy array, a list of arrays (an ONNX sequence) or
None (an empty optional), as :mod:`nnkit.values` defines.

Every run takes one path, three steps: :meth:`Backend.prepare` puts checked feeds where
the runtime reads them (on the device, for ``cuda``), :meth:`Backend.run_prepared` runs
the compiled model on them and :meth:`Backend.fetch` brings the results back as values.
:meth:`Backend.run` is exactly those three after the checks, built here once, so parity
(which calls ``run``) verifies the very model that bench (which times ``run_prepared``)
times. Each runtime writes only its hooks: ``load_impl``, ``prepare_impl``,
``run_prepared``, ``fetch`` and ``close_impl``. Timing belongs to the harness
(``nnkit.bench``), never to a backend.
"""

from __future__ import annotations

import abc
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast, final

import numpy as np

from nnkit.errors import BackendError, InputError, NnkitError, describe

#: What :meth:`Backend.prepare` returns and :meth:`Backend.run_prepared` takes.
PreparedT = TypeVar("PreparedT")
#: What :meth:`Backend.run_prepared` returns and :meth:`Backend.fetch` reads.
ResultT = TypeVar("ResultT")
T = TypeVar("T")
B = TypeVar("B", bound="Backend[Any, Any]")

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


class Backend(abc.ABC, Generic[PreparedT, ResultT]):
    """A runtime that runs an ONNX file.

    Use as a context manager, or call :meth:`load` and :meth:`close`. ``PreparedT`` is
    the type of the prepared feeds, ``ResultT`` the runtime's own result.

    Args:
        path: the ONNX file.
        threads: threads the runtime may use (None: its default).
        outputs: the values :meth:`run` returns, by name and in this order: any of the
            graph's outputs and intermediate values (see :func:`nnkit.onnxfile.expose`).
            None: the outputs the file declares. An intermediate value becomes an output
            of a copy of the file (a graph edit), which is what the runtime then loads.
    """

    #: Registry name (``cpu``, ``openvino`` ...).
    name: ClassVar[str]
    #: What a user installs to get this runtime (shown when it is missing).
    requirement: ClassVar[str]

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        outputs: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        #: The value names asked for with ``outputs=`` (None: the file's outputs).
        self.requested_outputs: tuple[str, ...] | None = None if outputs is None else tuple(outputs)
        #: The declared inputs, once loaded.
        self.inputs: tuple[TensorInfo, ...] = ()
        #: What :meth:`run` returns, once loaded: the file's outputs, or those asked for.
        self.outputs: tuple[TensorInfo, ...] = ()
        #: The file the runtime loads: ``path``, or the edited copy ``outputs=`` needs.
        self.runtime_path = self.path
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._loaded = False

    @property
    def device(self) -> str:
        """Where prepared inputs and :meth:`run_prepared`'s results live: ``cpu``, or
        ``cuda:N`` for the GPU backends. :meth:`run` and :meth:`fetch` always give host
        arrays."""
        return "cpu"

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

        Raises:
            ModelFileError: the file cannot be read or the checker rejects it.
            NnkitError: ``outputs=`` names a value the graph does not have.
            BackendError: the runtime cannot load it.
        """
        from nnkit.onnxfile import io_of, preflight

        self._drop_workdir()
        model = preflight(self.path)
        self.inputs, self.outputs = io_of(model)
        loaded = False
        try:
            if self.requested_outputs is not None:
                self._expose(model)
            self.load_impl()
            loaded = True
        except NnkitError:  # ours already (BackendUnavailableError too): keep it
            raise
        except Exception as e:  # a runtime's own exception type: wrap, keep the cause
            raise self.error(f"cannot load {self.path}", e) from e
        finally:
            if not loaded:
                self._drop_workdir()
        self._loaded = True

    def _expose(self, model: Any) -> None:
        """Write the copy of the file whose outputs are the values asked for."""
        import onnx

        from nnkit.onnxfile import expose, io_of, load_model_file

        assert self.requested_outputs is not None
        edited = expose(model, self.requested_outputs, where=str(self.path))
        external = any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
        )
        if external:  # the copy lives elsewhere: it takes its weights along
            weights = load_model_file(self.path)
            del weights.graph.output[:]
            weights.graph.output.extend(edited.graph.output)
            edited = weights
        self._workdir = tempfile.TemporaryDirectory(prefix=f"nnkit-{self.name}-")
        self.runtime_path = Path(self._workdir.name) / self.path.name
        onnx.save(
            edited,
            str(self.runtime_path),
            save_as_external_data=external,
            location=f"{self.path.name}.data",
        )
        self.outputs = io_of(edited)[1]

    @final
    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run once on ``feeds`` (input name -> value); return output name -> value.

        Exactly ``fetch(run_prepared(prepare(feeds)))``. A value is an array, a list of
        arrays (a sequence), or None (an empty optional): see :mod:`nnkit.values`.

        Raises:
            InputError: feeds that do not fit the declared inputs (the runtime never
                sees them).
            BackendError: the runtime failed, in one line.
        """
        self._check(feeds)
        return self.guarded(
            f"cannot run {self.path}",
            lambda: self.fetch(self.run_prepared(self.prepare_impl(dict(feeds)))),
        )

    @final
    def prepare(self, feeds: Mapping[str, Any]) -> PreparedT:
        """Check ``feeds`` and put them where the runtime reads them (:attr:`device`)."""
        self._check(feeds)
        return self.guarded(
            f"cannot take the inputs of {self.path}", lambda: self.prepare_impl(dict(feeds))
        )

    @abc.abstractmethod
    def run_prepared(self, prepared: PreparedT) -> ResultT:
        """Run on what :meth:`prepare` returned; the result stays where the runtime put it.

        This is the call the latency harness times: no checks, no copies it can avoid.
        The result is the runtime's own object; :meth:`fetch` turns it into values.
        """

    def fetch(self, result: ResultT) -> dict[str, Any]:
        """What :meth:`run_prepared` returned, as output name -> value (on the host).

        The default reads a mapping of output name -> the runtime's value.
        """
        return {name: fetched(value) for name, value in cast(Mapping, result).items()}

    def close(self) -> None:
        """Release the session (and the edited copy of the file); it can be loaded again."""
        if self._loaded:
            self.close_impl()
        self._loaded = False
        self._drop_workdir()

    def __enter__(self: B) -> B:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hooks for each runtime -------------------------------------------------------
    @abc.abstractmethod
    def load_impl(self) -> None:
        """Create the runtime's session for ``self.runtime_path`` (``self.outputs`` named)."""

    def prepare_impl(self, feeds: dict[str, Any]) -> PreparedT:
        """The checked feeds as :meth:`run_prepared` takes them (default: as they are)."""
        return cast(PreparedT, feeds)

    def close_impl(self) -> None:
        """Drop the session."""

    def guarded(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, a runtime's own exception turned into this backend's one-line
        :class:`BackendError` (``what``: the cause); ours pass as they are. A runtime
        that logs its reason (onnxruntime) overrides this to read the log."""
        try:
            return call()
        except NnkitError:
            raise
        except Exception as e:
            raise self.error(what, e) from e

    # -- helpers ----------------------------------------------------------------------
    def error(self, what: str, cause: BaseException) -> BackendError:
        """A :class:`BackendError` for this backend and file, with the cause's first line."""
        reason = describe(cause)
        return BackendError(
            f"{self.name}: {what}: {reason}", backend=self.name, model_path=str(self.path)
        )

    def _check(self, feeds: Mapping[str, Any]) -> None:
        if not self._loaded:
            raise RuntimeError(f"backend {self.name!r} is not loaded: call load() first")
        check_feeds(self.inputs, feeds)

    def _drop_workdir(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self.runtime_path = self.path


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
