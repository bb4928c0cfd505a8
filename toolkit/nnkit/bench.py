"""``nnkit bench``: every backend at every batch size, timed by one protocol.

The protocol (what is timed, warm-up, budgets, statistics) is :mod:`nnkit.timing`; the
table and the plot are :mod:`nnkit.bench_report`. This module runs it: the file is read
once (declared inputs, stamped example sizes, FLOPs), inputs are made once per batch,
and each backend is loaded and timed in a worker process, where its runtime may crash
or hang. Nothing here imports torch: :func:`bench_model` builds the PyTorch model in a
worker of its own.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.errors import NnkitError
from nnkit.timing import (
    DEFAULT_SECONDS,
    DEFAULT_WARMUP,
    Measurement,
    check_settings,
    measure_loaded,
)

if TYPE_CHECKING:
    from nnkit.backends.base import Backend
    from nnkit.machine import Machine
    from nnkit.reference import Reference
    from nnkit.spec import TensorSpec
    from nnkit.steps import ModelRequest
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess

#: Batch sizes benchmarked by default.
DEFAULT_BATCHES = (1, 8, 64)


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
    #: The rewrite timed (``base``: the file itself; :mod:`nnkit.rewrites`), its file's
    #: size, and the base file's p50 over this one's on the same backend and batch.
    variant: str = "base"
    file_bytes: int | None = None
    speedup_vs_base: float | None = None

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
    #: The record every report carries (:func:`nnkit.environment.environment`).
    environment: dict[str, Any] = field(default_factory=dict)
    #: The variants timed (``base`` first) and each rewrite's provenance, size or error.
    variants: list[str] = field(default_factory=lambda: ["base"])
    rewrites: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            "environment": self.environment,
            "load": self.load,
            "warnings": self.warnings,
            "results": [r.to_dict() for r in self.results],
            "variants": list(self.variants),
            "rewrites": dict(self.rewrites),
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
    return measure_loaded(runner, feeds, **settings)


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
    variants: Sequence[str] = (),
) -> BenchReport:
    """Bench the ONNX file at ``path`` on ``backends`` at each of ``batches``.

    With ``variants`` beyond ``base``, each rewrite of the file is timed too, by the
    same protocol (:func:`nnkit.rewrites.bench.bench_variants`).

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
        warmup, iterations, seconds: the protocol's settings (see
            :func:`nnkit.timing.measure`).
        seed: the seed of the generated inputs.
        progress: called with a short line before each backend.
        timeout: seconds one backend may take to load and run every batch (None or 0:
            no limit).

    Raises:
        ModelFileError: the file cannot be read.
        SpecError: a batch size the model cannot take (checked before anything runs).
        NnkitError, BackendUnavailableError: see :func:`check_backends`.
    """
    from nnkit.environment import environment
    from nnkit.flops import count_flops
    from nnkit.inputs import generate
    from nnkit.machine import load_average, machine_info
    from nnkit.onnxfile import io_of, load_model_file
    from nnkit.shapes import batch_shapes, stamped_sizes
    from nnkit.worker import Worker, WorkerFailure

    if any(v != "base" for v in variants):
        import inspect

        from nnkit.rewrites.bench import bench_variants

        given = locals()
        options = {k: given[k] for k in inspect.signature(bench_file).parameters}

        return bench_variants(options.pop("path"), options.pop("variants"), **options)
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
    feeds = {b: generate(declared, shapes=shapes[b], seed=seed) for b in batches}
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
            base: dict[str, Any] = {"model": name, "backend": backend_name, "threads": threads}
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
            results += [
                _result(base, b, measured[b], load_ms=load_ms, flops=flops[b]) for b in batches
            ]
    speedups(results)
    for r in results:
        r.file_bytes = None if r.backend == "torch" else path.stat().st_size
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
        warnings=trust_warnings(load, machine.logical_cores or 1, results),
        environment=environment(backends),
    )


def _result(
    base: Mapping[str, Any],
    batch: int,
    measured: Measurement | str,
    *,
    load_ms: float,
    flops: int | None,
) -> BenchResult:
    """One backend's result at ``batch``: its measurement, or the reason it failed."""
    if isinstance(measured, str):
        return BenchResult(**base, batch=batch, status="error", error=measured, load_ms=load_ms)
    s = measured.stats
    return BenchResult(
        **base,
        batch=batch,
        status="ok",
        load_ms=load_ms,
        first_run_ms=measured.first_run_ms,
        warmup=measured.warmup,
        **asdict(s),
        samples_per_s=s.throughput(batch),
        flops=flops,
        gflops=flops / (s.p50_ms * 1e6) if flops and s.p50_ms else None,
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
    from nnkit.errors import ExportError, ModelSourceError
    from nnkit.fsutil import temporary_folder
    from nnkit.spec import example_sizes
    from nnkit.steps import ModelRequest, describe_model, export
    from nnkit.worker import Worker, WorkerFailure, preload

    check_backends(backends, with_torch=True)  # before the slow part
    request = ModelRequest(ref, tuple(inputs))
    # The folder outlives the worker: it is stopped before the folder is cleaned up.
    with (
        temporary_folder("nnkit-bench-") as tmp,
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
        report = bench_file(
            exported.path,
            backends=backends,
            model=model.name,
            exporter=exporter,
            torch_model=user,
            torch_request=request,
            sizes={**example_sizes(model.inputs), **options.pop("sizes", {})},
            threads=threads,
            timeout=timeout,
            **options,
        )
    report.file = None  # a temporary file, gone now
    return report


#: Fewest timed runs a latency is worth reporting without a warning.
FEW_RUNS = 10


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


def speedups(results: list[BenchResult]) -> None:
    """Set each result's speed-up over torch eager at the same batch (in place)."""
    torch_p50 = {r.batch: r.p50_ms for r in results if r.backend == "torch" and r.ok}
    for r in results:
        ref = torch_p50.get(r.batch)
        if r.ok and ref and r.p50_ms:
            r.speedup_vs_torch = ref / r.p50_ms
