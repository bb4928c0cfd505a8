"""The latency protocol (nnkit.timing): statistics, warm-up, budgets, loading timed apart.

The protocol is a function over any object with ``prepare``/``run_prepared``; it is
tested here with small real backends (subclasses of the base class) that sleep on
chosen runs, and with a clock the test controls. Speed itself is never asserted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest

from nnkit.backends._probe import tiny_model
from nnkit.backends.base import Backend
from nnkit.errors import NnkitError
from nnkit.timing import LatencyStats, measure, measure_loaded, percentile


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    """``y = x + x`` over float32 ``[1, 4]``."""
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), str(path))
    return path


FEEDS = {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}


class Sleepy(Backend):
    """A real backend (the base class's checks and all) whose runs take chosen times.

    Run ``i`` (from 1) sleeps ``durations(i)`` seconds; it records what it was asked.
    """

    name: ClassVar[str] = "sleepy"
    requirement: ClassVar[str] = "nothing"

    @classmethod
    def probe(cls) -> str:
        return "in-process"

    def __init__(self, path: Path, durations: Any) -> None:
        super().__init__(path)
        self.durations = durations
        self.calls = 0
        self.events: list[str] = []

    def load_impl(self) -> None:
        self.events.append("load")

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Any:
        self.events.append("prepare")
        return feeds

    def run_prepared(self, feeds: Any) -> dict[str, np.ndarray]:
        self.calls += 1
        self.events.append("run")
        time.sleep(self.durations(self.calls))
        return {"y": feeds["x"] + feeds["x"]}


class Ticking(Backend):
    """A backend that advances a fake clock by a chosen number of nanoseconds per run."""

    name: ClassVar[str] = "ticking"
    requirement: ClassVar[str] = "nothing"

    @classmethod
    def probe(cls) -> str:
        return "in-process"

    def __init__(self, path: Path, durations_ns: list[int]) -> None:
        super().__init__(path)
        self.durations_ns = durations_ns
        self.now = 0
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def load_impl(self) -> None:
        pass

    def run_prepared(self, feeds: Any) -> dict[str, np.ndarray]:
        self.now += self.durations_ns[self.calls]
        self.calls += 1
        return {}


# -- statistics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        [5.0],
        [1.0, 2.0],
        [3.0, 1.0, 2.0],
        list(range(10)),
        [0.5, 0.5, 0.5, 9.0],
        np.random.default_rng(7).lognormal(size=101).tolist(),
        np.random.default_rng(8).exponential(size=1000).tolist(),
    ],
)
def test_percentile_agrees_with_numpy(data: list[float]) -> None:
    for q in (0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100):
        assert percentile(data, q) == pytest.approx(np.percentile(data, q), rel=1e-12, abs=1e-12)


def test_percentile_refuses_nothing_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_latency_stats_agree_with_numpy() -> None:
    samples_ns = np.random.default_rng(3).integers(10_000, 5_000_000, size=257).tolist()
    ms = np.asarray(samples_ns) / 1e6
    s = LatencyStats.of(samples_ns)
    assert s.iterations == 257
    assert s.p50_ms == pytest.approx(np.percentile(ms, 50))
    assert s.p90_ms == pytest.approx(np.percentile(ms, 90))
    assert s.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert s.mean_ms == pytest.approx(ms.mean())
    assert s.stdev_ms == pytest.approx(ms.std(ddof=1))
    assert (s.min_ms, s.max_ms) == (pytest.approx(ms.min()), pytest.approx(ms.max()))
    assert s.throughput(8) == pytest.approx(8 / (ms.mean() / 1e3))
    assert LatencyStats.of([2_000_000]).stdev_ms == 0.0


# -- the protocol -------------------------------------------------------------------------


def test_times_exactly_the_runs_with_the_callers_clock(tiny_file: Path) -> None:
    # first run 50 ms, 2 warm-up runs of 20 ms, then 1..5 ms.
    durations = [50, 20, 20, 1, 2, 3, 4, 5]
    backend = Ticking(tiny_file, [d * 1_000_000 for d in durations])
    with backend:
        m = measure(backend, FEEDS, warmup=2, iterations=5, clock=backend.clock)
    assert backend.calls == 8
    assert m.first_run_ms == 50
    assert m.warmup == 2
    assert m.samples_ns == tuple(d * 1_000_000 for d in (1, 2, 3, 4, 5))
    assert (m.stats.p50_ms, m.stats.min_ms, m.stats.max_ms, m.stats.mean_ms) == (3, 1, 5, 3)
    assert m.stats.p90_ms == pytest.approx(4.6)


def test_first_run_and_warmup_are_excluded_from_the_timed_runs(tiny_file: Path) -> None:
    slow = 0.2
    backend = Sleepy(tiny_file, lambda i: slow if i <= 4 else 0.0)
    with backend:
        m = measure(backend, FEEDS, warmup=3, iterations=20)
    assert backend.calls == 1 + 3 + 20
    assert m.first_run_ms >= slow * 1e3
    assert m.warmup == 3
    assert m.stats.iterations == 20
    assert m.stats.max_ms < slow * 1e3  # the four slow runs were the cold one and warm-up


def test_without_warmup_the_slow_runs_are_timed(tiny_file: Path) -> None:
    backend = Sleepy(tiny_file, lambda i: 0.1 if i <= 2 else 0.0)
    with backend:
        m = measure(backend, FEEDS, warmup=0, iterations=3)
    assert m.warmup == 0
    assert m.first_run_ms >= 100
    assert m.samples_ns[0] >= 100_000_000


def test_inputs_are_prepared_once_before_any_run(tiny_file: Path) -> None:
    backend = Sleepy(tiny_file, lambda i: 0.0)
    with backend:
        measure(backend, FEEDS, warmup=2, iterations=3)
    assert backend.events == ["load", "prepare", *["run"] * 6]


def test_the_time_budget_bounds_a_slow_backend(tiny_file: Path) -> None:
    # A fake clock: every run takes 100 ms, whatever the machine's load.
    run_ns = 100_000_000
    backend = Ticking(tiny_file, [run_ns] * 50)
    with backend:
        m = measure(backend, FEEDS, warmup=1000, seconds=0.5, clock=backend.clock)
    # Warm-up stops at a quarter of the budget (two runs), timed runs at the budget.
    assert m.warmup == 2
    assert m.stats.iterations == 3
    assert m.seconds == pytest.approx(0.5)
    assert backend.calls == 1 + 2 + 3  # nothing ran past the budget


def test_iterations_and_budget_whichever_ends_first(tiny_file: Path) -> None:
    backend = Sleepy(tiny_file, lambda i: 0.0)
    with backend:
        assert measure(backend, FEEDS, warmup=0, iterations=7).stats.iterations == 7
        assert measure(backend, FEEDS, warmup=0, iterations=5, seconds=30).stats.iterations == 5


def test_gc_is_restored_after_measuring(tiny_file: Path) -> None:
    import gc

    backend = Sleepy(tiny_file, lambda i: 0.0)
    assert gc.isenabled()
    with backend:
        measure(backend, FEEDS, warmup=1, iterations=2)
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"warmup": -1}, "warm-up"),
        ({"iterations": 0}, "iterations"),
        ({"seconds": 0.0}, "budget"),
    ],
)
def test_bad_settings_are_refused(tiny_file: Path, options: dict, needle: str) -> None:
    backend = Sleepy(tiny_file, lambda i: 0.0)
    with backend, pytest.raises(NnkitError, match=needle):
        measure(backend, FEEDS, **{"warmup": 0, **options})
    assert backend.calls == 0


def test_loading_is_timed_apart_and_a_failing_input_is_its_reason(tiny_file: Path) -> None:
    backend = Sleepy(tiny_file, lambda i: 0.0)
    bad = {"x": np.zeros((2, 2), dtype=np.float32)}  # the file declares [1, 4]
    load_ms, measured = measure_loaded(
        backend, {1: FEEDS, 2: bad, 3: FEEDS}, warmup=0, iterations=2
    )
    assert load_ms >= 0
    assert backend.events[0] == "load"
    assert measured[1].stats.iterations == measured[3].stats.iterations == 2
    assert isinstance(measured[2], str) and "'x'" in measured[2]
    assert not backend._loaded  # closed after the last input
