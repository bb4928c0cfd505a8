"""The one interface every runtime implements.

A backend loads a model, runs a dict of named numpy arrays and returns a dict of named
arrays, then closes. :meth:`Backend.run` checks state and feeds once, against the
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


@dataclass(frozen=True)
class TensorInfo:
    """A declared model input or output.

    ``dims`` holds an int for a fixed size, a str for a symbolic one and None where the
    file says nothing; ``dtype`` is the numpy dtype name (``float32``).
    """

    name: str
    dims: tuple[int | str | None, ...]
    dtype: str

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"


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

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on ``feeds`` (input name -> array); return output name -> array."""
        self._require_loaded()
        check_feeds(self.inputs, feeds)
        try:
            return self.run_impl(dict(feeds))
        except NnkitError:
            raise
        except Exception as e:
            raise self.error(f"cannot run {self.path}", e) from e

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Check ``feeds`` and put them where the runtime reads them; for timed runs."""
        self._require_loaded()
        check_feeds(self.inputs, feeds)
        return self.prepare_impl(dict(feeds))

    def run_prepared(self, prepared: Any) -> Any:
        """Run on what :meth:`prepare` returned; the result stays where the runtime put it.

        This is the call the latency harness times: no checks, no copies it can avoid.
        The result is the runtime's own object; :meth:`fetch` turns it into arrays.
        """
        return self.run_impl(prepared)

    def fetch(self, result: Any) -> dict[str, np.ndarray]:
        """What :meth:`run_prepared` returned, as output name -> numpy array (on the host)."""
        return {name: np.asarray(value) for name, value in result.items()}

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
    def run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on checked feeds; return every output by name, as numpy arrays."""

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Any:
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


def check_feeds(declared: tuple[TensorInfo, ...], feeds: Mapping[str, np.ndarray]) -> None:
    """Check feeds against the declared inputs: names, ranks, fixed dims, dtypes.

    A symbolic dim must have one size across all inputs that name it.

    Raises:
        InputError: what was expected and what was given.
    """
    names = [t.name for t in declared]
    missing = [n for n in names if n not in feeds]
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
        arr = feeds[info.name]
        if not isinstance(arr, np.ndarray):
            raise InputError(
                f"input {info.name!r}: expected a numpy array, given {type(arr).__name__}"
            )
        given = f"given {tuple(arr.shape)} {arr.dtype}"
        expected = f"expected {info.shape_text()} {info.dtype}"
        if arr.ndim != len(info.dims):
            raise InputError(
                f"input {info.name!r}: rank {arr.ndim} != {len(info.dims)}: {expected}, {given}"
            )
        for axis, (want, got) in enumerate(zip(info.dims, arr.shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise InputError(
                    f"input {info.name!r}: dim {axis} is {got}, must be {want}: {expected}, {given}"
                )
            if isinstance(want, str):
                seen = symbols.setdefault(want, (got, info.name))
                if seen[0] != got:
                    raise InputError(
                        f"input {info.name!r}: dim {axis} ({want!r}) is {got}, but {seen[1]!r} "
                        f"gives {want!r} = {seen[0]}"
                    )
        if str(arr.dtype) != info.dtype:
            raise InputError(
                f"input {info.name!r}: dtype {arr.dtype} != {info.dtype}: {expected}, {given}"
            )
