"""Cells side by side: ``--jobs N`` runtime workers, each running one cell at a time.

Each of the N workers is a :class:`~nnkit.worker.Worker` of its own (a runtime that
aborts takes down only its worker: that cell's case is an ``error``, and the worker is
started afresh for the next call). A thread per worker in this process waits on it; the
threads only wait on pipes, so they do not compete for the interpreter. With one job
nothing is threaded: a cell runs when it is submitted, as it always did.

Results do not depend on N: every cell gets the same inputs and is judged alone, and
the caller puts cells back in plan order.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from nnkit.worker import Worker

T = TypeVar("T")


class CellPool:
    """``jobs`` runtime workers; :meth:`submit` runs a function with one of them."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self._workers = [Worker("runtimes") for _ in range(self.jobs)]
        self._free: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._free.put(worker)
        self._threads = ThreadPoolExecutor(self.jobs) if self.jobs > 1 else None

    def submit(self, fn: Callable[[Worker], T]) -> Future[T]:
        """Run ``fn(worker)`` (now with one job, else on a pool thread); its future."""
        if self._threads is None:
            done: Future[T] = Future()
            try:
                done.set_result(self._with_worker(fn))
            except BaseException as e:
                if not isinstance(e, Exception):
                    raise  # Ctrl-C stops the run, as it always did
                done.set_exception(e)
            return done
        return self._threads.submit(self._with_worker, fn)

    def _with_worker(self, fn: Callable[[Worker], T]) -> T:
        worker = self._free.get()
        try:
            return fn(worker)
        finally:
            self._free.put(worker)

    def close(self, *, abandon: bool = False) -> None:
        """Wait for the cells submitted (``abandon``: stop the workers first, so the
        cells running end at once), then end the workers."""
        if abandon:
            for worker in self._workers:
                worker.close()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=abandon)
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> CellPool:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(abandon=kind is not None)
