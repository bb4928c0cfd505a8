"""Run one ONNX file on one backend: feeds, outputs, their statistics, a quick latency.

The library behind ``nnkit infer``. Nothing here imports torch; the backend's runtime is
imported when the backend is loaded. A backend that was asked for and cannot run raises
:class:`~nnkit.errors.BackendUnavailableError`: nothing else runs in its place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.errors import SpecError
from nnkit.inputs import DEFAULT_SEED, generate
from nnkit.shapes import resolve_shapes

if TYPE_CHECKING:
    from nnkit.backends.base import Backend, TensorInfo
    from nnkit.timing import LatencyStats


def random_feeds(
    declared: Sequence[TensorInfo],
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
    """Seeded arrays for a model's declared inputs (shapes as
    :func:`nnkit.shapes.resolve_shapes`).

    Raises:
        SpecError: a shape override that does not fit.
        InputError: an input whose dtype nnkit cannot generate.
    """
    return generate(declared, shapes=resolve_shapes(declared, shapes), seed=seed)


#: Strings of a string output shown (``nnkit infer``) or kept in ``--json``, at most.
SHOWN_STRINGS = 20


@dataclass(frozen=True)
class OutputStats:
    """What a person wants to see of a value. Statistics over finite numbers only.

    A numeric tensor gets min, max and mean; a string tensor its first
    :data:`SHOWN_STRINGS` strings in ``values`` instead. A sequence gets the statistics
    over all its elements, its ``length``, and each element's in ``elements``; an empty
    optional (``kind`` ``none``) has no shape and no statistics.
    """

    name: str
    shape: list[int] | None
    dtype: str
    min: float | None
    max: float | None
    mean: float | None
    nan_count: int
    inf_count: int
    #: ``tensor``, ``sequence`` or ``none`` (an empty optional).
    kind: str = "tensor"
    #: A sequence's number of elements; None for a tensor.
    length: int | None = None
    #: A sequence's elements, each as a dict of these fields; None for a tensor.
    elements: list[dict[str, Any]] | None = None
    #: A string tensor's first strings (flattened); None for numbers.
    values: list[str] | None = None

    @classmethod
    def of(cls, name: str, value: Any) -> OutputStats:
        from nnkit.values import dtype_name, is_string_array

        if value is None:
            return cls(name, None, "-", None, None, None, 0, 0, kind="none")
        if isinstance(value, list):
            return cls._of_sequence(name, value)
        arr = np.asarray(value)
        if is_string_array(arr):
            shown = [v if isinstance(v, str) else repr(v) for v in arr.ravel()[:SHOWN_STRINGS]]
            return cls(name, list(arr.shape), "string", None, None, None, 0, 0, values=shown)
        return cls(name, list(arr.shape), dtype_name(arr), *_numbers([arr]))

    @classmethod
    def _of_sequence(cls, name: str, value: list[Any]) -> OutputStats:
        from nnkit.values import is_string_array

        parts = [cls.of(f"{name}[{i}]", v) for i, v in enumerate(value)]
        arrays = [np.asarray(v) for v in value]
        return cls(
            name,
            None,
            parts[0].dtype if parts else "-",
            *_numbers([a for a in arrays if not is_string_array(a)]),
            kind="sequence",
            length=len(parts),
            elements=[p.to_dict() for p in parts],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numbers(arrays: list[np.ndarray]) -> tuple[float | None, float | None, float | None, int, int]:
    """(min, max, mean) over the finite values of ``arrays``, then the NaN and Inf counts."""
    flat = [a.astype(np.float64, copy=False).ravel() for a in arrays]
    numeric = np.concatenate(flat) if flat else np.empty(0)
    finite = numeric[np.isfinite(numeric)]
    has = finite.size > 0
    return (
        float(finite.min()) if has else None,
        float(finite.max()) if has else None,
        float(finite.mean()) if has else None,
        int(np.isnan(numeric).sum()),
        int(np.isinf(numeric).sum()),
    )


@dataclass(frozen=True)
class Timing:
    """Latency of repeated runs, measured with the bench protocol (:func:`nnkit.timing.measure`)."""

    first_run_ms: float
    warmup: int
    stats: LatencyStats

    @property
    def iterations(self) -> int:
        return self.stats.iterations

    def to_dict(self) -> dict[str, Any]:
        return {"first_run_ms": self.first_run_ms, "warmup": self.warmup, **asdict(self.stats)}


def time_runs(
    backend: Backend, feeds: Mapping[str, np.ndarray], *, warmup: int = 1, iterations: int = 10
) -> Timing:
    """Time ``iterations`` runs after the first run and ``warmup`` untimed ones.

    The bench harness's protocol, so ``infer --iterations`` and ``bench`` agree: inputs
    prepared once, exactly :meth:`~nnkit.backends.base.Backend.run_prepared` timed.
    """
    from nnkit.errors import NnkitError
    from nnkit.timing import measure

    try:
        m = measure(backend, feeds, warmup=warmup, iterations=iterations)
    except NnkitError:
        raise
    except Exception as e:  # a runtime's own error in a timed run: the backend's, in one line
        raise backend.error(f"cannot run {backend.path} (timed runs)", e) from e
    return Timing(first_run_ms=m.first_run_ms, warmup=m.warmup, stats=m.stats)


@dataclass
class InferResult:
    """One file run once on one backend (and, when asked, timed)."""

    model: str
    provider: str
    #: Input name -> value (an array, a list of arrays for a sequence, None).
    inputs: dict[str, Any]
    input_source: str
    seed: int | None
    #: Output name -> value, as the backend gave it.
    outputs: dict[str, Any]
    timing: Timing | None = None

    def stats(self) -> list[OutputStats]:
        return [OutputStats.of(n, v) for n, v in self.outputs.items()]

    def input_stats(self) -> list[OutputStats]:
        """The same statistics of the inputs: NaN and Inf inputs are allowed, and reported."""
        return [OutputStats.of(n, v) for n, v in self.inputs.items()]

    def to_dict(self) -> dict[str, Any]:
        """The ``nnkit infer --json`` object (without ``saved``, which the command adds)."""
        return {
            "model": self.model,
            "provider": self.provider,
            "seed": self.seed,
            "inputs": [
                {
                    "name": s.name,
                    "shape": s.shape,
                    "dtype": s.dtype,
                    "source": self.input_source,
                    "nan_count": s.nan_count,
                    "inf_count": s.inf_count,
                    "kind": s.kind,
                    "length": s.length,
                }
                for s in self.input_stats()
            ],
            "outputs": [s.to_dict() for s in self.stats()],
            "timing": self.timing.to_dict() if self.timing else None,
        }


def run_file(
    path: str | Path,
    provider: str,
    *,
    feeds: Mapping[str, np.ndarray] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = DEFAULT_SEED,
    threads: int | None = None,
    warmup: int = 1,
    iterations: int = 0,
) -> InferResult:
    """Run the ONNX file at ``path`` once on backend ``provider``; time it when asked.

    Args:
        path: the ONNX file.
        provider: a registry name other than ``torch``.
        feeds: input name -> value (an array; a list of arrays for a sequence; None for
            an empty optional), or file keys in the layout of :mod:`nnkit.values`; None
            for seeded random inputs.
        shapes: input name -> shape for generated inputs (see
            :func:`nnkit.shapes.resolve_shapes`).
        seed: the seed of generated inputs.
        threads: the backend's thread count (None: the runtime's default).
        warmup: untimed runs before timing.
        iterations: timed runs; 0 for none.

    Raises:
        ModelFileError: the file cannot be read.
        SpecError, InputError: shapes or feeds that do not fit the model (checked
            before any runtime sees them).
        BackendUnavailableError: the backend cannot run here.
        BackendError: the backend cannot load or run this model.
    """
    from nnkit.backends import TORCH, backend_class, check_name
    from nnkit.backends.base import check_feeds
    from nnkit.onnxfile import read_io
    from nnkit.values import bind_values

    if provider == TORCH:
        raise SpecError(
            "provider 'torch' runs the PyTorch model, not an ONNX file: use nnkit parity"
        )
    check_name(provider)
    declared, _ = read_io(path)
    bound: dict[str, Any]
    if feeds is None:
        bound, source, used_seed = (
            dict(random_feeds(declared, shapes=shapes, seed=seed)),
            "random",
            seed,
        )
    else:
        if shapes:
            raise SpecError("--shape sizes generated inputs; inputs given as files keep theirs")
        bound, source, used_seed = dict(bind_values(declared, feeds)), "file", None
    check_feeds(declared, bound)
    with backend_class(provider)(path, threads=threads) as backend:
        outputs = backend.run(bound)
        timing = (
            time_runs(backend, bound, warmup=warmup, iterations=iterations) if iterations else None
        )
    return InferResult(str(path), provider, bound, source, used_seed, outputs, timing)


def run_file_isolated(
    path: str | Path, provider: str, *, timeout: float | None = None, **options: Any
) -> InferResult:
    """:func:`run_file` in a worker process (:mod:`nnkit.worker`).

    A runtime that aborts (tract panics on some files) or hangs past ``timeout`` seconds
    is a :class:`~nnkit.errors.BackendError` naming how it ended, not a crash of the
    caller. ``options`` are :func:`run_file`'s.
    """
    from nnkit.errors import BackendError
    from nnkit.worker import Worker, WorkerFailure, preload

    with Worker(provider) as worker:
        worker.call(preload, ["numpy", "onnx"])  # not timed
        try:
            return worker.call(run_file, path, provider, timeout=timeout, **options)
        except WorkerFailure as e:
            raise BackendError(
                f"{provider}: running {path}: {e.format_message()}",
                backend=provider,
                model_path=str(path),
                detail=e.detail,
            ) from None
