"""The latency protocol: how nnkit times a backend (the harness owns all timing).

:func:`measure` times one loaded backend on one input, over any object with
``prepare``/``run_prepared``; ``nnkit bench`` (:func:`nnkit.bench.bench_file`) runs it
over backends and batch sizes, and ``nnkit infer --iterations`` runs it once, so both
time the same way:

1. **Session creation** is timed apart (``load_ms``): ``Backend.load``, once per backend
   (:func:`measure_loaded` loads, then measures each input).
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

Nothing here imports torch or a runtime.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from nnkit.errors import NnkitError, describe

#: Untimed runs after the first one, by default.
DEFAULT_WARMUP = 10
#: Time budget of one backend at one batch size (warm-up and timed runs), by default.
DEFAULT_SECONDS = 1.0
#: Share of the time budget warm-up may take before timed runs start.
WARMUP_SHARE = 0.25

Clock = Callable[[], int]
K = TypeVar("K")


class Runner(Protocol):
    """What the protocol times: a loaded backend, or anything with the same two calls."""

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Any: ...

    def run_prepared(self, prepared: Any) -> Any: ...


class Loadable(Runner, Protocol):
    """A backend before it is loaded: :func:`measure_loaded` times its loading too."""

    def load(self) -> None: ...

    def close(self) -> None: ...


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


def measure_loaded(
    runner: Loadable, inputs: Mapping[K, Mapping[str, np.ndarray]], **settings: Any
) -> tuple[float, dict[K, Measurement | str]]:
    """Load ``runner`` (timed apart: step 1), :func:`measure` it on each of ``inputs``,
    then close it.

    Args:
        runner: a backend not loaded yet.
        inputs: key (a batch size) -> feeds.
        settings: :func:`measure`'s ``warmup``, ``iterations``, ``seconds``, ``clock``.

    Returns:
        The load time in ms, and key -> measurement, or the one-line reason the runner
        failed on those feeds (the others are still measured).
    """
    t0 = time.perf_counter_ns()
    runner.load()
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    measured: dict[K, Measurement | str] = {}
    try:
        for key, feeds in inputs.items():
            try:
                measured[key] = measure(runner, feeds, **settings)
            except Exception as e:
                measured[key] = describe(e)
    finally:
        runner.close()
    return load_ms, measured
