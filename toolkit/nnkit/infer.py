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
from nnkit.inputs import DEFAULT_SEED, declared_arrays

if TYPE_CHECKING:
    from nnkit.backends.base import Backend, TensorInfo
    from nnkit.bench import LatencyStats

#: Size given to a symbolic or unknown dimension that ``--shape`` does not fix.
DEFAULT_DIM = 1


def resolve_shapes(
    declared: Sequence[TensorInfo], overrides: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every declared input.

    An input in ``overrides`` takes that shape, checked against its rank and fixed dims;
    elsewhere a symbolic dim takes the size another input's override gave the same
    symbol, else :data:`DEFAULT_DIM`, as does a dim the file leaves unknown.

    Raises:
        SpecError: an override names no input, or its rank or a fixed dim does not fit.
    """
    overrides = dict(overrides or {})
    names = [t.name for t in declared]
    for name in overrides:
        if name not in names:
            raise SpecError(
                f"--shape names {name!r}, which is not an input: the model takes "
                f"{', '.join(map(repr, names))}"
            )
    symbols: dict[str, int] = {}
    for info in declared:
        shape = overrides.get(info.name)
        if shape is None:
            continue
        if len(shape) != len(info.dims):
            raise SpecError(
                f"--shape {info.name}: rank {len(shape)} != {len(info.dims)}: "
                f"expected {info.shape_text()}, given {list(shape)}"
            )
        for axis, (want, got) in enumerate(zip(info.dims, shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise SpecError(
                    f"--shape {info.name}: dim {axis} is fixed at {want} in the model, given "
                    f"{got}: expected {info.shape_text()}, given {list(shape)}"
                )
            if isinstance(want, str):
                symbols.setdefault(want, got)
    return {
        info.name: overrides.get(info.name)
        or tuple(
            d if isinstance(d, int) else symbols.get(d, DEFAULT_DIM) if d else DEFAULT_DIM
            for d in info.dims
        )
        for info in declared
    }


def random_feeds(
    declared: Sequence[TensorInfo],
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
    """Seeded arrays for a model's declared inputs (shapes as :func:`resolve_shapes`).

    Raises:
        SpecError: a shape override that does not fit.
        InputError: an input whose dtype nnkit cannot generate.
    """
    return declared_arrays(declared, resolve_shapes(declared, shapes), seed=seed)


@dataclass(frozen=True)
class OutputStats:
    """What a person wants to see of an output array. Statistics over finite values only."""

    name: str
    shape: list[int]
    dtype: str
    min: float | None
    max: float | None
    mean: float | None
    nan_count: int
    inf_count: int

    @classmethod
    def of(cls, name: str, value: Any) -> OutputStats:
        arr = np.asarray(value)
        numeric = arr.astype(np.float64) if arr.dtype != np.float64 else arr
        finite = numeric[np.isfinite(numeric)] if numeric.size else numeric
        has = finite.size > 0
        return cls(
            name=name,
            shape=list(arr.shape),
            dtype=str(arr.dtype),
            min=float(finite.min()) if has else None,
            max=float(finite.max()) if has else None,
            mean=float(finite.mean()) if has else None,
            nan_count=int(np.isnan(numeric).sum()),
            inf_count=int(np.isinf(numeric).sum()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Latency of repeated runs, measured with the bench protocol (:func:`nnkit.bench.measure`)."""

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
    from nnkit.bench import measure

    m = measure(backend, feeds, warmup=warmup, iterations=iterations)
    return Timing(first_run_ms=m.first_run_ms, warmup=m.warmup, stats=m.stats)


@dataclass
class InferResult:
    """One file run once on one backend (and, when asked, timed)."""

    model: str
    provider: str
    inputs: dict[str, np.ndarray]
    input_source: str
    seed: int | None
    outputs: dict[str, np.ndarray]
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
        feeds: input name -> array; None for seeded random inputs.
        shapes: input name -> shape for generated inputs (see :func:`resolve_shapes`).
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
    from nnkit.backends import backend_class, check_name
    from nnkit.backends.base import check_feeds
    from nnkit.check import read_io

    check_name(provider)
    if provider == "torch":
        raise SpecError(
            "provider 'torch' runs the PyTorch model, not an ONNX file: use nnkit parity"
        )
    declared, _ = read_io(path)
    if feeds is None:
        feeds, source, used_seed = random_feeds(declared, shapes=shapes, seed=seed), "random", seed
    else:
        if shapes:
            raise SpecError("--shape sizes generated inputs; inputs given as files keep theirs")
        feeds, source, used_seed = dict(feeds), "file", None
    check_feeds(declared, feeds)
    with backend_class(provider)(path, threads=threads) as backend:
        outputs = backend.run(feeds)
        timing = (
            time_runs(backend, feeds, warmup=warmup, iterations=iterations) if iterations else None
        )
    return InferResult(str(path), provider, feeds, source, used_seed, outputs, timing)


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
