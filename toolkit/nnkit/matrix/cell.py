"""One cell: a backend loads a model's artifact once, runs every case, and each run is
judged against PyTorch; then a row of cells decides whose failure a run that failed is.

The runtime runs in a worker (:mod:`nnkit.worker`): one that aborts or hangs makes its
case an ``error`` (the next case runs in a fresh worker). An unexpected exception in
nnkit's own code while judging is an ``error`` result that keeps its traceback.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.compare import Tolerance, compare_outputs
from nnkit.compare.budget import Budget, apply_budget, budget_tolerance
from nnkit.errors import (
    BackendError,
    BackendUnavailableError,
    InputError,
    NnkitError,
    failure,
)
from nnkit.matrix.cases import ShapeCase
from nnkit.matrix.results import ArtifactRecord, CaseResult, Cell

#: Where a bug's traceback is, for the one line of an ``error`` result.
TRACEBACK_HINT = "its traceback is in the JSON report's result"

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess


@dataclass
class CaseRun:
    """A shape case's inputs and PyTorch's outputs on them (or why PyTorch failed)."""

    case: ShapeCase
    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None
    error: str = ""
    #: Outputs left out (``ignore_outputs``): a file's outputs of these names are dropped.
    ignored: tuple[str, ...] = ()


@dataclass
class CellClock:
    """A cell's time: ``--timeout`` per call, and ``--max-seconds-per-cell`` for the whole
    cell (``cap``; None: none). A call's timeout is the lesser of the two that is left."""

    timeout: float | None
    cap: float | None = None
    start: float = field(default_factory=time.monotonic)

    def call_timeout(self) -> float | None:
        """The timeout of the next call into the runtime's worker."""
        if self.cap is None:
            return self.timeout
        left = max(self.start + self.cap - time.monotonic(), 0.01)
        return min(self.timeout, left) if self.timeout else left

    @property
    def spent(self) -> bool:
        return self.cap is not None and time.monotonic() >= self.start + self.cap

    def stopped(self, error: Exception) -> bool:
        """Whether ``error`` is the cap's doing (a call stopped because the cell's time ran out)."""
        from nnkit.worker import WorkerTimeout

        return isinstance(error, WorkerTimeout) and self.spent

    def message(self, backend: str, error: Exception | None = None) -> str:
        where = getattr(error, "where", "")
        what = f"stopped; it was at {where}" if where else "stopped" if error else "not run"
        return f"{backend}: the cell ran past --max-seconds-per-cell {self.cap:g} s: {what}"


def run_cell(
    runtimes: Executor,
    cell: Cell,
    record: ArtifactRecord,
    runs: Sequence[CaseRun],
    tolerance: Tolerance,
    timeout: float | None,
    *,
    budget: Budget | None = None,
    max_seconds: float | None = None,
) -> list[CaseResult]:
    """Load the file on the cell's backend once and run every case; never raises.

    A variant's cell (``budget`` given) is judged by its budget
    (:mod:`nnkit.compare.budget`); ``tolerance`` is then the base's.

    The runtime runs in a worker: one that aborts or hangs makes its case an ``error``
    (the next case runs in a fresh worker). A backend that ran some case of the file
    but fails another does not lack support for the model: the file fails to generalise
    (a ``mismatch``). With ``max_seconds`` (for the whole cell), the case running
    when it is spent is stopped and it and the cases left are ``timeout``.
    """
    from nnkit.steps import close_backend, load_backend
    from nnkit.worker import WorkerFailure

    def results(status: str, message: str) -> list[CaseResult]:
        return [_result(cell, run, status, message) for run in runs]

    if record.error or record.path is None:
        if record.source == "rewrite":
            return results("error", record.error)
        return results("error", f"export failed: {record.error}")
    path = record.path
    limits = CellClock(timeout, max_seconds)
    try:
        declared = runtimes.call(load_backend, cell.backend, path, timeout=limits.call_timeout())
    except WorkerFailure as e:
        if limits.stopped(e):
            return results("timeout", limits.message(cell.backend, e))
        return results("error", f"{cell.backend}: loading the file: {e.format_message()}")
    except (BackendError, BackendUnavailableError) as e:
        return results("unsupported", e.format_message())
    except NnkitError as e:  # a bug in the worker (RemoteBug) keeps its traceback
        f = failure(e, hint=TRACEBACK_HINT)
        return [_result(cell, run, "error", f.message, traceback=f.traceback) for run in runs]
    try:
        return [
            _result(cell, run, "timeout", limits.message(cell.backend))
            if limits.spent
            else _run_case(runtimes, cell, path, declared, run, tolerance, limits, budget)
            for run in runs
        ]
    finally:
        with contextlib.suppress(NnkitError):
            runtimes.call(close_backend, cell.backend, path, timeout=timeout)


def judge_row(row: Sequence[Cell], runs: Sequence[CaseRun]) -> None:
    """Decide whose failure a run that failed is: the runtime's, or the file's.

    ``unsupported`` means a runtime cannot load or run the model at all. A case a runtime
    fails to run although it ran another case of the same file, and a case that no
    runtime of the row (two or more) can run, are failures of the file: a ``mismatch``
    that says so (an export that froze a dynamic dim runs at the example's size only).
    """
    backends = [c.backend for c in row]
    # What ran, before any result changes: a case a runtime ran, it can run.
    ran = {c.backend: [x.case for x in c.results if x.status in ("pass", "mismatch")] for c in row}
    ran_anywhere = list(dict.fromkeys(case for cases in ran.values() for case in cases))
    for i in range(len(runs)):
        cases = [c.results[i] for c in row if i < len(c.results)]
        everywhere = len(row) > 1 and all(r.status == "unsupported" for r in cases)
        for cell, r in zip(row, cases, strict=False):
            if r.status != "unsupported":
                continue
            if everywhere:
                elsewhere, on = ran_anywhere, f"any runtime ({', '.join(backends)})"
            elif ran[cell.backend]:
                elsewhere, on = ran[cell.backend], cell.backend
            else:
                continue  # this runtime runs no case of the file: its own limit
            r.status = "mismatch"
            r.message = f"the file does not run at {r.case} on {on}" + (
                f", though it runs at {', '.join(elsewhere)}: the export froze a dynamic dim "
                f"or baked in a value; {r.message}"
                if elsewhere
                else f"; {r.message}"
            )


def _result(
    cell: Cell, run: CaseRun, status: str, message: str = "", *, traceback: str = ""
) -> CaseResult:
    return CaseResult(
        traceback=traceback,
        model=cell.model,
        exporter=cell.exporter,
        artifact=cell.artifact,
        variant=cell.variant,
        backend=cell.backend,
        case=run.case.name,
        status=status,
        shapes={k: tuple(v.shape) for k, v in run.feeds.items()},
        seed=run.case.seed,
        message=message,
    )


def _run_case(
    runtimes: Executor,
    cell: Cell,
    path: str,
    declared: tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]],
    run: CaseRun,
    tolerance: Tolerance,
    limits: CellClock,
    budget: Budget | None = None,
) -> CaseResult:
    from nnkit.backends.base import check_feeds
    from nnkit.steps import run_backend
    from nnkit.worker import WorkerFailure

    if run.reference is None:
        return _result(cell, run, "error", run.error)
    inputs, outputs = declared
    notes: list[str] = []
    feeds = _match_names(run.feeds, [i.name for i in inputs], what="inputs", notes=notes)
    try:
        check_feeds(inputs, feeds)  # here, before the runtime: a mismatch, not a crash
        got, seconds = runtimes.call(
            run_backend, cell.backend, path, feeds, timeout=limits.call_timeout()
        )
    except InputError as e:
        result = _result(
            cell,
            run,
            "mismatch",
            f"the file does not take this case's inputs: {e.format_message()}",
        )
        result.notes = notes
        return result
    except WorkerFailure as e:
        if limits.stopped(e):
            return _result(cell, run, "timeout", limits.message(cell.backend, e))
        return _result(cell, run, "error", f"{cell.backend}: {e.format_message()}")
    except (BackendError, BackendUnavailableError) as e:
        return _result(cell, run, "unsupported", e.format_message())
    except NnkitError as e:  # a bug in the worker (RemoteBug) keeps its traceback
        f = failure(e, hint=TRACEBACK_HINT)
        return _result(cell, run, "error", f.message, traceback=f.traceback)
    try:
        return _judge(cell, run, got, outputs, notes, tolerance, seconds, budget)
    except Exception as e:  # a bug in nnkit: this result is an error, the matrix goes on
        f = failure(e, hint=TRACEBACK_HINT)
        return _result(cell, run, "error", f.message, traceback=f.traceback)


def _judge(
    cell: Cell,
    run: CaseRun,
    got: dict[str, Any],
    outputs: tuple[TensorInfo, ...],
    notes: list[str],
    tolerance: Tolerance,
    seconds: float,
    budget: Budget | None = None,
) -> CaseResult:
    """Compare a run's outputs with PyTorch's: the result of one case (a variant's by
    its budget)."""
    assert run.reference is not None
    if run.ignored:
        from nnkit.binding import is_ignored

        got = {k: v for k, v in got.items() if not is_ignored(k, run.ignored)}
    notes.extend(declared_shape_notes(outputs, got))
    got = _match_names(got, list(run.reference), what="outputs", notes=notes)
    if budget is None:
        compared = compare_outputs(run.reference, got, tolerance=tolerance)
    else:
        policy = budget_tolerance(budget, tolerance, run.reference)
        compared = compare_outputs(run.reference, got, tolerance=policy)
        apply_budget(compared, cell.variant, budget)
    result = _result(cell, run, "pass" if compared else "mismatch", compared.summary())
    result.outputs = compared.outputs
    result.warnings = compared.warnings
    result.notes = notes
    result.seconds = seconds
    return result


def _match_names(
    arrays: dict[str, np.ndarray], names: Sequence[str], *, what: str, notes: list[str]
) -> dict[str, np.ndarray]:
    """``arrays`` under ``names``: by name when they all match, else by position.

    A file exported elsewhere may name its inputs and outputs its own way; when the
    counts agree they are matched by position, and a note says so.
    """
    if set(names) <= set(arrays) or len(names) != len(arrays):
        return arrays
    renamed = dict(zip(names, arrays.values(), strict=True))
    pairs = ", ".join(f"{a!r}={b!r}" for a, b in zip(arrays, names, strict=True) if a != b)
    notes.append(f"{what} matched by position, the names differ ({pairs})")
    return renamed


def declared_shape_notes(
    declared: Sequence[TensorInfo], got: Mapping[str, np.ndarray]
) -> list[str]:
    """Where the file's declared output shape disagrees with what the runtime gave.

    Symbolic and unknown dims agree with any size; a fixed dim must be the size given.
    """
    notes = []
    for info in declared:
        if info.name not in got or not info.ranked or info.kind != "tensor":
            continue
        shape = tuple(np.shape(got[info.name]))
        fixed_wrong = [
            (axis, want, have)
            for axis, (want, have) in enumerate(zip(info.dims, shape, strict=False))
            if isinstance(want, int) and want != have
        ]
        if len(info.dims) != len(shape) or fixed_wrong:
            notes.append(
                f"output {info.name!r} is declared {info.shape_text()} in the file, "
                f"the runtime gave {list(shape)}"
            )
    return notes
