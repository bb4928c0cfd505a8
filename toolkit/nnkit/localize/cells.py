"""``parity --localize``: localize each mismatching cell of a row, in the matrix's workers.

Each cell that mismatches is localized on its first mismatching case whose outputs were
compared (same inputs as the cell). The repro goes to
``<artifacts>/<model>.<artifact>.<backend>/``, beside the exported files; without
``--artifacts`` none is written (the localization still runs the nodes alone to blame).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nnkit.errors import NnkitError, failure
from nnkit.localize.result import Localization

if TYPE_CHECKING:
    from nnkit.compare import Tolerance
    from nnkit.matrix.cell import CaseRun, Executor
    from nnkit.matrix.results import ArtifactRecord, Cell
    from nnkit.steps import ModelRequest


def localize_row(
    runtimes: Executor,
    *,
    row: Sequence[Cell],
    runs: Sequence[CaseRun],
    record: ArtifactRecord,
    user: Executor,
    request: ModelRequest,
    tolerance: Tolerance,
    folder: Path | None,
    timeout: float | None,
    case: str | None = None,
) -> None:
    """Set :attr:`Cell.localization` of every cell of ``row`` that has a mismatch (at
    ``case``, when given); never raises (a localization that cannot be carried out is an
    ``error`` localization)."""
    for cell in row:
        wanted = [r for r in cell.results if case is None or r.case == case]
        if record.path is None or not any(r.status == "mismatch" for r in wanted):
            continue
        cell.localization = localize_cell(
            cell,
            runs,
            record.path,
            user=user,
            runtimes=runtimes,
            request=request,
            tolerance=tolerance,
            out=folder / repro_folder(cell) if folder is not None else None,
            timeout=timeout,
            case=case,
        )


def repro_folder(cell: Cell) -> str:
    """The repro's folder name: ``combinednn.dynamo.cpu``."""
    from nnkit.matrix.execute import _safe

    return f"{_safe(cell.model)}.{cell.artifact}.{cell.backend}"


def localize_cell(
    cell: Cell,
    runs: Sequence[CaseRun],
    path: str,
    *,
    user: Executor,
    runtimes: Executor,
    request: ModelRequest,
    tolerance: Tolerance,
    out: Path | None,
    timeout: float | None,
    case: str | None = None,
) -> Localization:
    """Localize ``cell``'s first mismatching case whose outputs were compared (or its
    case named ``case``)."""
    from nnkit.localize import localize_case

    by_name = {run.case.name: run for run in runs}
    mismatches = [
        r for r in cell.results if r.status == "mismatch" and (case is None or r.case == case)
    ]
    chosen = next((r for r in mismatches if r.outputs and r.case in by_name), None)
    if chosen is None:
        first = mismatches[0]
        return Localization(
            first.case,
            "not_found",
            f"no mismatching case compared values to trace ({first.message.splitlines()[0]})",
        )
    start = time.perf_counter()
    try:
        found = localize_case(
            user=user,
            runtimes=runtimes,
            request=request,
            path=path,
            backend=cell.backend,
            case=chosen.case,
            feeds=by_name[chosen.case].feeds,
            tolerance=tolerance,
            out=out,
            timeout=timeout,
        )
    except NnkitError as e:
        found = Localization(chosen.case, "error", e.format_message())
    except Exception as e:  # a bug in nnkit: this localization is an error, the matrix goes on
        found = Localization(chosen.case, "error", failure(e).message)
    found.seconds = round(time.perf_counter() - start, 3)
    if found.found and found.repro is None and out is None:
        found.notes.append(
            "no repro written: give a folder for it (parity --artifacts DIR, localize --out DIR)"
        )
    return found
