"""One latency protocol for every backend: the harness owns all timing.

For each backend and batch size (:func:`measure` is the protocol, over any object
with ``prepare``/``run_prepared``; :func:`bench_file` runs it over backends and
batches):

1. **Session creation** is timed apart (``load_ms``): ``Backend.load``, once per backend.
2. Inputs are **prepared before timing** (``Backend.prepare``: on ``cuda`` copied to the
   device and bound with IOBinding), so no host-to-device copy or feed check is timed.
3. The **first run** is timed apart (``first_run_ms``): the cold start, where TensorRT
   builds its engine and tract types the graph for a new shape.
4. **Warm-up** runs follow, untimed: ``warmup`` of them, stopped early at a quarter
   of the time budget.
5. **Timed runs**: each ``Backend.run_prepared`` call between two
   ``time.perf_counter_ns`` readings (on ``cuda`` it waits for the device), until
   ``iterations`` runs or the ``seconds`` budget (which counts warm-up and timed
   runs; at least one timed run; a run in flight always finishes). Python's garbage
   collector is off during warm-up and timed runs, as in ``timeit``.
6. **Statistics** over the timed runs: p50, p90, p99 (linear interpolation, numpy's
   default), mean, sample stdev, min, max, and throughput = batch / mean latency.

Nothing here imports torch: the ``torch`` backend is passed in by the caller
(:func:`bench_model` builds it from the PyTorch model).
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from nnkit import DISTRIBUTION
from nnkit.errors import NnkitError, SpecError, describe

if TYPE_CHECKING:
    from nnkit.backends.base import Backend, TensorInfo
    from nnkit.machine import Machine
    from nnkit.reference import Reference
    from nnkit.spec import TensorSpec
    from nnkit.steps import ModelRequest
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess

#: Untimed runs after the first one, by default.
DEFAULT_WARMUP = 10
#: Time budget of one backend at one batch size (warm-up and timed runs), by default.
DEFAULT_SECONDS = 1.0
#: Share of the time budget warm-up may take before timed runs start.
WARMUP_SHARE = 0.25
#: Batch sizes benchmarked by default.
DEFAULT_BATCHES = (1, 8, 64)
#: The label of the batch dimension; axis 0 where no input dim carries it.
BATCH_LABEL = "batch"

Clock = Callable[[], int]


class Runner(Protocol):
    """What the protocol times: a loaded backend, or anything with the same two calls."""

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Any: ...

    def run_prepared(self, prepared: Any) -> Any: ...


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, interpolated linearly between closest ranks.

    The same definition as ``numpy.percentile``'s default (``method="linear"``).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r} is outside [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of the timed runs, in milliseconds."""

    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    #: Sample standard deviation (n - 1); 0 for a single run.
    stdev_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> LatencyStats:
        """Statistics of run times given in nanoseconds.

        Raises:
            ValueError: no samples.
        """
        if not samples_ns:
            raise ValueError("no timed runs")
        ms = [s / 1e6 for s in samples_ns]
        return cls(
            iterations=len(ms),
            p50_ms=percentile(ms, 50),
            p90_ms=percentile(ms, 90),
            p99_ms=percentile(ms, 99),
            mean_ms=statistics.fmean(ms),
            stdev_ms=statistics.stdev(ms) if len(ms) > 1 else 0.0,
            min_ms=min(ms),
            max_ms=max(ms),
        )

    def throughput(self, batch: int) -> float:
        """Samples per second: ``batch`` samples every mean latency."""
        return batch * 1e3 / self.mean_ms if self.mean_ms > 0 else math.inf


# -- the protocol -------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One backend at one input: the cold first run, warm-up done, the timed runs."""

    first_run_ms: float
    warmup: int
    stats: LatencyStats
    #: Wall time of warm-up and timed runs together.
    seconds: float
    samples_ns: tuple[int, ...] = field(default=(), repr=False)


def check_settings(*, warmup: int, iterations: int | None, seconds: float | None) -> None:
    """Refuse settings the protocol cannot honour.

    Raises:
        NnkitError: a negative warm-up, fewer than one iteration, a budget not above 0.
    """
    if warmup < 0:
        raise NnkitError(f"warm-up runs must be 0 or more, given {warmup}")
    if iterations is not None and iterations < 1:
        raise NnkitError(f"iterations must be at least 1, given {iterations}")
    if seconds is not None and not seconds > 0:
        raise NnkitError(f"the time budget must be above 0 seconds, given {seconds}")


def measure(
    runner: Runner,
    feeds: Mapping[str, np.ndarray],
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    seconds: float | None = None,
    clock: Clock = time.perf_counter_ns,
) -> Measurement:
    """Time ``runner`` on ``feeds`` with the protocol in this module's docstring.

    Args:
        runner: a loaded backend (or any object with ``prepare`` and ``run_prepared``).
        feeds: input name -> array.
        warmup: untimed runs after the first, at most (stopped at a quarter of
            ``seconds``).
        iterations: timed runs, at most; None for as many as ``seconds`` allows.
        seconds: time budget of warm-up and timed runs; None for no budget. With
            neither ``iterations`` nor ``seconds``, :data:`DEFAULT_SECONDS`.
        clock: a nanosecond clock (tests pass their own).

    Returns:
        The first run's time, the warm-up runs done and the timed runs' statistics.
    """
    if iterations is None and seconds is None:
        seconds = DEFAULT_SECONDS
    check_settings(warmup=warmup, iterations=iterations, seconds=seconds)
    prepared = runner.prepare(feeds)
    gc.collect()
    start = clock()
    runner.run_prepared(prepared)
    first_ns = clock() - start

    budget_ns = None if seconds is None else int(seconds * 1e9)
    limit = iterations if iterations is not None else sys.maxsize
    samples: list[int] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        begin = clock()
        warm_end = None if budget_ns is None else begin + int(budget_ns * WARMUP_SHARE)
        done = 0
        while done < warmup and (warm_end is None or clock() < warm_end):
            runner.run_prepared(prepared)
            done += 1
        deadline = None if budget_ns is None else begin + budget_ns
        run = runner.run_prepared
        while len(samples) < limit:
            t0 = clock()
            run(prepared)
            t1 = clock()
            samples.append(t1 - t0)
            if deadline is not None and t1 >= deadline:
                break
        end = clock()
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(
        first_run_ms=first_ns / 1e6,
        warmup=done,
        stats=LatencyStats.of(samples),
        seconds=(end - begin) / 1e9,
        samples_ns=tuple(samples),
    )


# -- inputs at a batch size ---------------------------------------------------------------


def batch_axis(info: TensorInfo, *, labelled: bool) -> int | None:
    """The axis of ``info`` that is the batch: the dim labelled ``batch``, else axis 0.

    Args:
        info: a declared input.
        labelled: some input of the model labels a dim ``batch``; then an input
            without that label has no batch axis.
    """
    if BATCH_LABEL in info.dims:
        return info.dims.index(BATCH_LABEL)
    if labelled or not info.dims:
        return None
    return 0


def batch_shapes(
    declared: Sequence[TensorInfo], batch: int, sizes: Mapping[str, int] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every input at ``batch``.

    The batch axis (:func:`batch_axis`) takes ``batch``; another symbolic dim takes its
    size in ``sizes`` (by label), else 1, as does a dim the file leaves unknown.

    Raises:
        SpecError: an input whose batch dim is fixed at another size.
    """
    if batch < 1:
        raise SpecError(f"batch sizes are 1 or more, given {batch}")
    sizes = dict(sizes or {})
    labelled = any(BATCH_LABEL in info.dims for info in declared)
    shapes: dict[str, tuple[int, ...]] = {}
    for info in declared:
        axis = batch_axis(info, labelled=labelled)
        dims = []
        for i, d in enumerate(info.dims):
            if i == axis:
                if isinstance(d, int) and d != batch:
                    raise SpecError(
                        f"the model cannot run at batch {batch}: input {info.name!r} has a fixed "
                        f"batch dim of {d} ({info.shape_text()}); export it with a dynamic batch "
                        f"(e.g. --input {info.name}:batch=2x...) or bench --batch {d}"
                    )
                dims.append(batch)
            elif isinstance(d, int):
                dims.append(d)
            else:
                dims.append(sizes.get(d, 1) if d else 1)
        shapes[info.name] = tuple(dims)
    return shapes


def stamped_sizes(proto: Any) -> dict[str, int]:
    """Example sizes of symbolic dims, from the input specs nnkit stamps into its exports."""
    from nnkit.check import stamped_specs
    from nnkit.spec import Dim

    try:
        specs = stamped_specs(proto)
    except NnkitError:  # metadata nnkit did not write: no example sizes, dims take 1
        return {}
    return {d.label: d.example for spec in specs for d in spec.dims if isinstance(d, Dim)}


# -- a whole run: backends x batch sizes ----------------------------------------------------


@dataclass
class BenchResult:
    """One backend at one batch size: ``status`` is ``ok`` or ``error`` (then ``error`` says why)."""

    model: str
    backend: str
    batch: int
    status: str
    error: str | None = None
    threads: int | None = None
    load_ms: float | None = None
    first_run_ms: float | None = None
    warmup: int | None = None
    iterations: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    stdev_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    samples_per_s: float | None = None
    #: FLOPs of one run at this batch (None where the graph's count is incomplete).
    flops: int | None = None
    #: Achieved GFLOP/s at p50.
    gflops: float | None = None
    #: torch eager's p50 over this backend's, at the same batch (None without torch).
    speedup_vs_torch: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchReport:
    """Every result of one ``nnkit bench`` run, with what it ran on."""

    model: str
    file: str | None
    exporter: str | None
    backends: list[str]
    batches: list[int]
    settings: dict[str, Any]
    versions: dict[str, str | None]
    machine: Machine
    results: list[BenchResult]
    #: The 1-minute load average before and after the run (None where the OS has none).
    load: dict[str, float | None] = field(default_factory=dict)
    #: Why the numbers may not be trusted (a busy machine, few timed runs).
    warnings: list[str] = field(default_factory=list)
    date: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The ``nnkit bench --json`` object."""
        from nnkit import __version__

        return {
            "nnkit_version": __version__,
            "date": self.date,
            "model": self.model,
            "file": self.file,
            "exporter": self.exporter,
            "backends": self.backends,
            "batches": self.batches,
            "settings": self.settings,
            "versions": self.versions,
            "machine": self.machine.to_dict(),
            "load": self.load,
            "warnings": self.warnings,
            "results": [r.to_dict() for r in self.results],
        }


def default_backends(*, with_torch: bool) -> list[str]:
    """Every backend that runs here (probed for real), ``torch`` only when asked."""
    from nnkit.backends import BENCH_NAMES, TORCH, probe

    return [n for n in BENCH_NAMES if (with_torch or n != TORCH) and probe(n)]


def check_backends(names: Sequence[str], *, with_torch: bool) -> dict[str, str | None]:
    """Refuse, before any work, an unknown backend or one that cannot run here.

    Returns:
        Backend name -> its runtime's version.

    Raises:
        NnkitError: an unknown name, or ``torch`` for an ONNX file.
        BackendUnavailableError: a backend that cannot run here, with the probe's reason.
    """
    from nnkit.backends import TORCH, check_name, probe, require

    for name in names:
        if name != TORCH:
            check_name(name)
        elif not with_torch:
            raise NnkitError(
                "backend 'torch' runs the PyTorch model, and an ONNX file has none: "
                "bench a model name (zoo, file.py:Name or module:name) to include torch"
            )
    for name in names:
        require(name)
    return {name: probe(name).version for name in names}


def measure_backend(
    backend: str,
    target: Any,
    feeds: Mapping[int, Mapping[str, np.ndarray]],
    *,
    threads: int | None = None,
    **settings: Any,
) -> tuple[float, dict[int, Measurement | str]]:
    """Load ``target`` on ``backend`` (timed) and time it at each batch of ``feeds``.

    Runs where the runtime may crash or the model's code may hang: in a worker
    (:mod:`nnkit.worker`). ``target`` is the ONNX file's path, or for ``torch`` the
    :class:`~nnkit.steps.ModelRequest` of the model built in that worker. A batch the
    backend fails on gives its one-line reason instead of a measurement.

    Returns:
        The load time in ms, and batch -> measurement (or the reason it failed).
    """
    from nnkit.backends import TORCH, backend_class

    runner: Reference | Backend
    if backend == TORCH:
        from nnkit.reference import Reference
        from nnkit.steps import resolved

        runner = Reference.from_model(resolved(target), threads=threads)
    else:
        runner = backend_class(backend)(target, threads=threads)
    t0 = time.perf_counter_ns()
    runner.load()
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    measured: dict[int, Measurement | str] = {}
    try:
        for batch, batch_feeds in feeds.items():
            try:
                measured[batch] = measure(runner, batch_feeds, **settings)
            except Exception as e:
                measured[batch] = describe(e)
    finally:
        runner.close()
    return load_ms, measured


def bench_file(
    path: str | Path,
    *,
    backends: Sequence[str],
    batches: Sequence[int] = DEFAULT_BATCHES,
    model: str | None = None,
    exporter: str | None = None,
    torch_model: Executor | None = None,
    torch_request: ModelRequest | None = None,
    sizes: Mapping[str, int] | None = None,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> BenchReport:
    """Bench the ONNX file at ``path`` on ``backends`` at each of ``batches``.

    A backend that fails to load or run gives ``error`` results and the run goes on.
    Each runtime runs in a worker process: one that aborts or hangs past ``timeout``
    seconds (per backend) gives ``error`` results too.

    Args:
        path: the ONNX file.
        backends: registry names, checked with :func:`check_backends` first.
        batches: batch sizes; each must fit the file's batch dim.
        model: the name shown for the model (default: the file's name).
        exporter: the exporter that made the file, when nnkit did.
        torch_model: the worker the PyTorch model was built in (needed when ``torch``
            is listed), and ``torch_request`` the request that built it.
        sizes: sizes of other symbolic dims, by label (default: the example sizes
            nnkit stamped into the file, else 1).
        threads: threads each runtime may use (None: each runtime's default).
        warmup, iterations, seconds: the protocol's settings (see :func:`measure`).
        seed: the seed of the generated inputs.
        progress: called with a short line before each backend.
        timeout: seconds one backend may take to load and run every batch (None or 0:
            no limit).

    Raises:
        ModelFileError: the file cannot be read.
        SpecError: a batch size the model cannot take (checked before anything runs).
        NnkitError, BackendUnavailableError: see :func:`check_backends`.
    """
    from nnkit.check import io_of, load_model_file
    from nnkit.flops import count_flops
    from nnkit.inputs import declared_arrays
    from nnkit.machine import machine_info
    from nnkit.worker import Worker, WorkerFailure

    if seconds is None and iterations is None:
        seconds = DEFAULT_SECONDS
    check_settings(warmup=warmup, iterations=iterations, seconds=seconds)
    path = Path(path)
    proto = load_model_file(path)  # read once: declared inputs, stamped sizes, FLOPs
    declared, _ = io_of(proto)
    with_torch = torch_model is not None
    versions = check_backends(backends, with_torch=with_torch)
    sizes = {**stamped_sizes(proto), **(sizes or {})}
    shapes = {b: batch_shapes(declared, b, sizes) for b in batches}
    feeds = {b: declared_arrays(declared, shapes[b], seed=seed) for b in batches}
    flops = {}
    for b in batches:
        count = count_flops(proto, shapes[b])
        flops[b] = count.total if count.complete and count.total else None
    name = model or path.name

    load_before = load_average()
    results: list[BenchResult] = []
    settings = {"warmup": warmup, "iterations": iterations, "seconds": seconds}
    with Worker("runtimes") as runtimes:
        for backend_name in backends:
            base = {"model": name, "backend": backend_name, "threads": threads}
            if progress:
                progress(f"{backend_name}: creating the session, then batch {batches[0]}...")
            runner = torch_model if backend_name == "torch" else runtimes
            target = torch_request if backend_name == "torch" else str(path)
            try:
                load_ms, measured = runner.call(  # type: ignore[union-attr]
                    measure_backend,
                    backend_name,
                    target,
                    feeds,
                    threads=threads,
                    timeout=timeout,
                    **settings,
                )
            except NnkitError as e:
                reason = e.format_message()
                if isinstance(e, WorkerFailure):
                    reason = f"{backend_name}: {reason}"
                results += [
                    BenchResult(**base, batch=b, status="error", error=reason) for b in batches
                ]
                continue
            for b in batches:
                m = measured[b]
                if isinstance(m, str):
                    results.append(
                        BenchResult(**base, batch=b, status="error", error=m, load_ms=load_ms)
                    )
                    continue
                s = m.stats
                results.append(
                    BenchResult(
                        **base,
                        batch=b,
                        status="ok",
                        load_ms=load_ms,
                        first_run_ms=m.first_run_ms,
                        warmup=m.warmup,
                        iterations=s.iterations,
                        p50_ms=s.p50_ms,
                        p90_ms=s.p90_ms,
                        p99_ms=s.p99_ms,
                        mean_ms=s.mean_ms,
                        stdev_ms=s.stdev_ms,
                        min_ms=s.min_ms,
                        max_ms=s.max_ms,
                        samples_per_s=s.throughput(b),
                        flops=flops[b],
                        gflops=flops[b] / (s.p50_ms * 1e6) if flops[b] and s.p50_ms else None,
                    )
                )
    _speedups(results)
    machine = machine_info()
    load = {"before": load_before, "after": load_average()}
    return BenchReport(
        model=name,
        file=str(path),
        exporter=exporter,
        backends=list(backends),
        batches=list(batches),
        settings={
            "warmup": warmup,
            "iterations": iterations,
            "seconds": seconds,
            "threads": threads,
            "seed": seed,
            "sizes": sizes,
        },
        versions=versions,
        machine=machine,
        results=results,
        load=load,
        warnings=trust_warnings(load, machine.logical_cores, results),
    )


def bench_model(
    ref: str,
    *,
    backends: Sequence[str],
    inputs: Sequence[TensorSpec] = (),
    exporter: str = "dynamo",
    threads: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> BenchReport:
    """Export the PyTorch model ``ref`` once (into a temporary folder) and bench it.

    ``torch`` in ``backends`` runs the PyTorch model eagerly, under inference mode, with
    the same thread count as the runtimes. The model's code runs in a worker process
    (:mod:`nnkit.worker`), built once there: a model that exits, crashes or hangs past
    ``timeout`` seconds is an error. ``options`` are :func:`bench_file`'s.

    Raises:
        ModelSourceError, SpecError: ``ref`` or ``inputs`` cannot be resolved.
        ExportError: the exporter failed.
        and what :func:`bench_file` raises.
    """
    import tempfile

    from nnkit.errors import ExportError, ModelSourceError
    from nnkit.spec import Dim
    from nnkit.steps import ModelRequest, describe_model, export
    from nnkit.worker import Worker, WorkerFailure, preload

    check_backends(backends, with_torch=True)  # before the slow part
    request = ModelRequest(ref, tuple(inputs))
    # The folder outlives the worker: it is stopped before the folder is cleaned up.
    with (
        tempfile.TemporaryDirectory(prefix="nnkit-bench-") as tmp,
        Worker("PyTorch") as user,
    ):
        user.call(preload, ["torch"])  # not timed: not the model's time
        try:
            model = user.call(describe_model, request, timeout=timeout)
        except WorkerFailure as e:
            raise ModelSourceError(f"building {ref!r}: {e.format_message()}") from None
        try:
            exported = user.call(
                export, request, Path(tmp) / "model.onnx", exporter=exporter, timeout=timeout
            )
        except WorkerFailure as e:
            raise ExportError(f"exporting {ref!r}: {e.format_message()}", detail=e.detail) from None
        sizes = {d.label: d.example for s in model.inputs for d in s.dims if isinstance(d, Dim)}
        report = bench_file(
            exported.path,
            backends=backends,
            model=model.name,
            exporter=exporter,
            torch_model=user,
            torch_request=request,
            sizes={**sizes, **options.pop("sizes", {})},
            threads=threads,
            timeout=timeout,
            **options,
        )
    report.file = None  # a temporary file, gone now
    return report


#: Fewest timed runs a latency is worth reporting without a warning.
FEW_RUNS = 10


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS has none."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def trust_warnings(
    load: Mapping[str, float | None], cores: int, results: Sequence[BenchResult]
) -> list[str]:
    """Why a run's numbers may mislead: other work on the machine, or too few runs.

    Before the run, anything above half the cores is someone else's work; after it, the
    run's own threads count too, so only a load above the cores (plus one) says the
    runtimes competed for them. A result with fewer than :data:`FEW_RUNS` timed runs has
    percentiles that are a handful of samples.
    """
    out = []
    before, after = load.get("before"), load.get("after")
    if before is not None and before > cores / 2:
        out.append(
            f"the machine was busy before the run (load {before:g} on {cores} cores): other "
            "work competes for the cores, and speed-ups can be far off; rerun on an idle machine"
        )
    elif after is not None and after > cores + 1:
        out.append(
            f"the machine was busy during the run (load {after:g} on {cores} cores): "
            "latencies may be inflated; rerun on an idle machine"
        )
    few = [
        f"{r.backend} batch {r.batch}" for r in results if r.ok and (r.iterations or 0) < FEW_RUNS
    ]
    if few:
        out.append(
            f"fewer than {FEW_RUNS} timed runs for {', '.join(few)}: percentiles of so few "
            "samples are rough; raise --seconds or --iterations"
        )
    return out


def _speedups(results: list[BenchResult]) -> None:
    torch_p50 = {r.batch: r.p50_ms for r in results if r.backend == "torch" and r.ok}
    for r in results:
        ref = torch_p50.get(r.batch)
        if r.ok and ref and r.p50_ms:
            r.speedup_vs_torch = ref / r.p50_ms


# -- rendering ------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    """Milliseconds with about four significant digits: 0.01234, 1.234, 123.4."""
    if value is None:
        return "-"
    if value < 0.1:
        return f"{value:.4f}"
    if value < 10:
        return f"{value:.3f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:.0f}"


def fmt_rate(value: float | None) -> str:
    """1234567 -> '1.23M', 12345 -> '12.3k', 123 -> '123'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def render(report: BenchReport) -> str:
    """The console table, then the FLOPs, the machine's peak and any errors."""
    from nnkit.render import table

    has_torch = any(r.backend == "torch" and r.ok for r in report.results)
    headers = [
        "backend",
        "batch",
        "load ms",
        "1st run ms",
        "runs",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "stdev ms",
        "samples/s",
    ]
    if has_torch:
        headers.append("vs torch")
    headers.append("GFLOP/s")
    rows = []
    for r in report.results:
        if not r.ok:
            rows.append([r.backend, r.batch, "error", *["-"] * (len(headers) - 3)])
            continue
        row = [
            r.backend,
            r.batch,
            fmt_ms(r.load_ms),
            fmt_ms(r.first_run_ms),
            r.iterations,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p90_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.mean_ms),
            fmt_ms(r.stdev_ms),
            fmt_rate(r.samples_per_s),
        ]
        if has_torch:
            row.append(f"{r.speedup_vs_torch:.2f}x" if r.speedup_vs_torch else "-")
        row.append(f"{r.gflops:.3g}" if r.gflops is not None else "-")
        rows.append(row)
    lines = [
        f"{report.model} ({report.file or f'its {report.exporter} export'})",
        table(headers, rows, right=range(1, len(headers))),
    ]
    per_batch = {r.batch: r.flops for r in report.results if r.flops}
    if per_batch:
        b = max(per_batch)
        lines.append(
            f"FLOPs: {per_batch[b] / b / 1e6:.3g} MFLOP per sample (Conv, Gemm/MatMul, RNNs); "
            f"machine peak: {report.machine.peak_text()}"
        )
    else:
        lines.append(f"machine peak: {report.machine.peak_text()}")
    settings = report.settings
    threads = settings["threads"] or "each runtime's default"
    budget = f"{settings['seconds']} s" if settings["seconds"] else "none"
    lines.append(
        f"{report.machine.cpu}, {report.machine.physical_cores} cores; threads: {threads}; "
        f"warm-up {settings['warmup']}, iterations {settings['iterations'] or 'by budget'}, "
        f"budget {budget} per backend and batch"
    )
    lines += [f"error: {r.backend} batch {r.batch}: {r.error}" for r in report.results if not r.ok]
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def plot(report: BenchReport, out: str | Path) -> None:
    """A bar chart of p50 latency (whiskers to p90) per backend and batch, written atomically.

    Raises:
        NnkitError: matplotlib is not installed.
    """
    target = check_plot_path(out)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nnkit.fsutil import atomic_output

    ok = [r for r in report.results if r.ok]
    backends = [b for b in report.backends if any(r.backend == b for r in ok)]
    fig = Figure(figsize=(max(6.0, 1.2 * len(report.batches) * max(len(backends), 1)), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        xs, p50, err = [], [], []
        for j, b in enumerate(report.batches):
            r = next((r for r in ok if r.backend == backend and r.batch == b), None)
            if r is None or r.p50_ms is None or r.p90_ms is None:
                continue
            xs.append(j + (i - (len(backends) - 1) / 2) * width)
            p50.append(r.p50_ms)
            err.append(r.p90_ms - r.p50_ms)
        ax.bar(xs, p50, width, yerr=[[0] * len(err), err], label=backend, capsize=2)
    ax.set_xticks(range(len(report.batches)), [f"batch {b}" for b in report.batches])
    ax.set_yscale("log")
    ax.set_ylabel("latency p50 (ms, whisker to p90)")
    ax.set_title(f"nnkit bench {report.model}: {report.machine.cpu}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_output(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".").lower())


def require_matplotlib() -> None:
    """Refuse ``--plot`` early where matplotlib is missing.

    Raises:
        NnkitError: with the command that installs it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NnkitError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            f"(or pip install '{DISTRIBUTION}[plot]')"
        ) from None


def check_plot_path(out: str | Path) -> Path:
    """Refuse, before any work, a plot nnkit cannot write: no matplotlib, a format it lacks.

    Raises:
        NnkitError: matplotlib is missing, or the file's extension is not an image format.
        OutputPathError: the file cannot be written.
    """
    from nnkit.fsutil import check_writable

    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = check_writable(out)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in formats:
        raise NnkitError(
            f"cannot plot to {str(target)!r}: give a file ending in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    return target
