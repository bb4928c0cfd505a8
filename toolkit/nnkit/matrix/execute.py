"""Execute a plan: build each model, make its artifacts, run every cell, judge.

Users' code (the model's import, build and forward, and the exporter tracing it) runs
in one worker process and the runtimes in another (:mod:`nnkit.worker`): a model that
exits or hangs, or a runtime that aborts, becomes an ``error`` result and the rest of
the matrix runs. Each model is built once; each artifact is made once (exported, or the
``--onnx`` file) and shared by every backend; each backend loads it once and runs every
case; every output is compared with PyTorch's on the same inputs
(:mod:`nnkit.compare`). An unexpected exception (a bug in nnkit) in a cell is an
``error`` result that keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.compare import Tolerance
from nnkit.environment import environment
from nnkit.errors import (
    ModelSourceError,
    NnkitError,
)
from nnkit.fsutil import make_folder, temporary_folder
from nnkit.matrix.cases import ParityRequestError, ShapeCase
from nnkit.matrix.cell import CaseRun, judge_row, run_cell
from nnkit.matrix.plan import ArtifactPlan, ModelPlan, Plan
from nnkit.matrix.pool import CellPool
from nnkit.matrix.results import (
    ArtifactRecord,
    Cell,
    ParityReport,
    ProgressCallback,
    ProgressEvent,
)
from nnkit.matrix.shard import plan_record
from nnkit.matrix.variants import file_size, make_variant

if TYPE_CHECKING:
    from nnkit.cache import ExportCache
    from nnkit.compare.budget import Budget
    from nnkit.steps import ModelInfo, ModelRequest
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess


def execute(
    plan: Plan,
    *,
    progress: ProgressCallback | None = None,
    only: Collection[str] | None = None,
) -> ParityReport:
    """Run the cells of ``plan`` (those whose ids are in ``only``, or all) and judge them.

    Raises:
        NnkitError: a model that cannot be built (its code fails, exits or hangs while
            imported or built), or a ``compare`` rule for an output no model has.
    """
    from nnkit.backends import probe
    from nnkit.steps import ModelRequest, register
    from nnkit.worker import InProcess, Worker, preload

    start = time.perf_counter()
    request = plan.request
    if only is None and request.shard is not None:  # --shard I/N: that share of the cells
        from nnkit.matrix.shard import shard_cells

        only = shard_cells(plan, request.shard)
    chosen = {c.id for c in plan.cells if only is None or c.id in only}
    models = [m for m in plan.models if any(c.startswith(f"{m.name}|") for c in chosen)]
    requests = {m.name: ModelRequest(m.ref, m.inputs, m.spec.ignore_outputs) for m in models}
    objects = [m for m in models if m.resolved is not None]
    # Objects cannot cross into a worker: their code runs here, as the caller's does.
    for m in objects:
        register(requests[m.name], m.resolved)
    report = _empty_report(plan, models)
    cache = None
    if request.cache is not None:
        from nnkit.cache import ExportCache

        cache = ExportCache(request.cache)
    total = len(chosen)
    counter = iter(range(1, total + 1))
    lock = threading.Lock()  # progress is told from the pool's threads (--jobs)
    rows: list[
        tuple[list[Cell], list[Future[None]], list[CaseRun], ArtifactRecord, Tolerance, str]
    ] = []

    def run_one(
        runtimes: Worker,
        cell: Cell,
        record: ArtifactRecord,
        runs: list[CaseRun],
        tolerance: Tolerance,
        budget: Budget | None,
        index: int,
    ) -> None:
        if progress:
            with lock:
                progress(ProgressEvent(index, total, cell.model, cell.artifact, cell.backend))
        # Not timed: starting a runtime in a fresh worker (importing it, its probe) is not
        # the cell's time; a runtime that fails here fails again in the cell, which says so.
        with contextlib.suppress(NnkitError):
            runtimes.call(probe, cell.backend, timeout=request.timeout)
        began = time.perf_counter()
        cell.results = run_cell(
            runtimes,
            cell,
            record,
            runs,
            tolerance,
            request.timeout,
            budget=budget,
            max_seconds=request.max_seconds_per_cell,
        )
        cell.seconds = time.perf_counter() - began
        if progress:
            with lock:
                progress(ProgressEvent(index, total, cell.model, cell.artifact, cell.backend, cell))

    # The folder outlives the workers: they are stopped before it is cleaned up.
    with (
        _folder(request.artifacts) as folder,
        InProcess() if objects else Worker("PyTorch") as user,
        CellPool(request.jobs) as pool,
    ):
        user.call(preload, ["torch"])  # not timed: importing torch is not the model's time
        infos = {m.name: _build(user, requests[m.name], request.timeout) for m in models}
        _check_compare_names(models, infos)
        for m in models:
            info = infos[m.name]
            tolerance = dataclasses.replace(
                m.spec.tolerance(), model_atol=info.atol, model_rtol=info.rtol
            )
            report.cases[m.name] = m.cases
            runs = _reference_runs(user, requests[m.name], info, m.cases, request.timeout)
            records: dict[str, ArtifactRecord] = {}
            for artifact in m.artifacts:
                backends = [b for b in plan.backends if f"{m.name}|{artifact.id}|{b}" in chosen]
                if not backends and not _is_needed_base(m, artifact.id, chosen):
                    continue
                if artifact.source == "rewrite":
                    base = records[artifact.base]
                    record = pool.submit(  # a rewrite runs on a runtime worker
                        functools.partial(
                            make_variant,
                            model=m,
                            artifact=artifact,
                            base=base,
                            folder=folder,
                            timeout=request.timeout,
                        )
                    ).result()
                else:
                    record = _make_artifact(
                        user, requests[m.name], m.name, artifact, folder, request.timeout, cache
                    )
                    file_size(record)
                records[artifact.id] = record
                report.exports.append(record)
                if not backends:  # a base file only its variants' chosen cells need
                    continue
                budget = plan.budgets.get(artifact.variant) if artifact.variant != "base" else None
                row = [
                    Cell(
                        m.name, artifact.exporter, b, artifact=artifact.id, variant=artifact.variant
                    )
                    for b in backends
                ]
                futures = [
                    pool.submit(
                        functools.partial(
                            run_one,
                            cell=cell,
                            record=record,
                            runs=runs,
                            tolerance=tolerance,
                            budget=budget,
                            index=next(counter),
                        )
                    )
                    for cell in row
                ]
                rows.append((row, futures, runs, record, tolerance, m.name))
        # Every row in plan order, once its cells are done: the report does not depend
        # on which cell finished first.
        for row, futures, runs, record, tolerance, name in rows:
            for future in futures:
                future.result()
            report.cells_run.extend(row)
            judge_row(row, runs)
            if request.localize:
                from nnkit.localize.cells import localize_row

                # On a runtime worker of the pool: the cells' workers, and the same ones.
                pool.submit(
                    functools.partial(
                        localize_row,
                        row=row,
                        runs=runs,
                        record=record,
                        user=user,
                        request=requests[name],
                        tolerance=tolerance,
                        folder=folder if request.artifacts is not None else None,
                        timeout=request.timeout,
                        case=request.localize_case,
                    )
                ).result()
            report.results.extend(r for c in row for r in c.results)
    if request.artifacts is None:  # the temporary folder is gone (an --onnx file is not)
        for record in report.exports:
            if record.source != "file":
                record.path = None
        _forget_folder(report, folder)
    report.environment = environment(plan.backends)
    report.seconds = time.perf_counter() - start
    return report


def _empty_report(plan: Plan, models: Sequence[ModelPlan]) -> ParityReport:
    """The report's head: what was asked; the request-level tolerances where every model
    shares them (the command line), else none (a manifest: each result carries its own)."""
    specs = [m.spec for m in plan.models]
    first = specs[0] if specs else None
    shared = first is not None and all(
        (s.atol, s.rtol, dict(s.compare)) == (first.atol, first.rtol, dict(first.compare))
        for s in specs
    )
    policy = first.tolerance() if shared and first is not None else Tolerance()
    return ParityReport(
        models=[m.name for m in models],
        exporters=plan.exporters,
        backends=plan.backends,
        strict=plan.request.strict,
        atol=policy.atol,
        rtol=policy.rtol,
        compare={name: policy.rule(name).text() for name in policy.compare},
        onnx=str(plan.request.onnx) if plan.request.onnx else None,
        artifacts=list(dict.fromkeys(a.id for m in models for a in m.artifacts)),
        plan=plan_record(plan, plan.request.shard),
        variants=list(plan.variants),
        budgets={v: plan.budgets[v].text() for v in plan.variants if v in plan.budgets},
    )


def _is_needed_base(model: ModelPlan, artifact: str, chosen: Collection[str]) -> bool:
    """Whether a variant of ``artifact`` has a chosen cell: its file is made even where
    its own cells are not chosen (a shard)."""
    return any(
        a.base == artifact and any(c.startswith(f"{model.name}|{a.id}|") for c in chosen)
        for a in model.artifacts
    )


def _check_compare_names(models: Sequence[ModelPlan], infos: Mapping[str, ModelInfo]) -> None:
    """Refuse a ``compare`` rule for an output that no model has, naming the outputs."""
    have = {name for info in infos.values() for name in info.outputs}
    for m in models:
        unknown = [name for name in m.spec.compare if name not in have]
        if unknown:
            outputs = "; ".join(
                f"{info.name}: {', '.join(info.outputs) or 'none'}" for info in infos.values()
            )
            raise ParityRequestError(
                f"--compare names output {unknown[0]!r}, which no model has; the outputs are "
                f"{outputs}"
            )


@contextlib.contextmanager
def _folder(artifacts: str | Path | None) -> Iterator[Path]:
    if artifacts is None:
        with temporary_folder("nnkit-parity-") as tmp:
            yield Path(tmp)
        return
    yield make_folder(artifacts, what="artifacts folder")


def _forget_folder(report: ParityReport, folder: Path) -> None:
    """Messages must not cite a temporary file that is gone: name it, and say how to keep it."""
    prefix = str(folder) + os.sep

    def fix(text: str) -> str:
        return re.sub(
            re.escape(prefix) + r"(\S+?\.onnx)",
            r"\1 (a temporary file; keep it with --artifacts DIR)",
            text,
        ).replace(prefix, "")

    for r in report.results:
        r.message = fix(r.message)
        r.notes = [fix(n) for n in r.notes]
    for e in report.exports:
        e.error = fix(e.error)


def _build(user: Executor, request: ModelRequest, timeout: float | None) -> ModelInfo:
    """Build a model in the user-code worker; a model that cannot be built ends the request."""
    from nnkit.steps import describe_model
    from nnkit.worker import WorkerFailure

    try:
        return user.call(describe_model, request, timeout=timeout)
    except WorkerFailure as e:
        raise ModelSourceError(f"building {request.ref!r}: {e.format_message()}") from None


def _reference_runs(
    user: Executor,
    request: ModelRequest,
    model: ModelInfo,
    cases: Sequence[ShapeCase],
    timeout: float | None,
) -> list[CaseRun]:
    """Run PyTorch on every case's inputs once; every exporter and backend reuses them."""
    from nnkit.steps import reference_outputs

    runs = []
    for case in cases:
        feeds = case.inputs(model.inputs)
        try:
            ref = user.call(
                reference_outputs, request, feeds, generated=case.feeds is None, timeout=timeout
            )
        except NnkitError as e:
            reason = e.format_message()
            if not reason.startswith("PyTorch"):
                reason = f"PyTorch (the reference) {reason}"
            runs.append(CaseRun(case, feeds, None, reason))
            continue
        runs.append(CaseRun(case, feeds, ref, ignored=model.ignored))
    return runs


def _make_artifact(
    user: Executor,
    request: ModelRequest,
    model: str,
    artifact: ArtifactPlan,
    folder: Path,
    timeout: float | None,
    cache: ExportCache | None = None,
) -> ArtifactRecord:
    """The model's file under test: exported here, or the ``--onnx`` file; never raises.

    The worker exports into a folder of its own; only a finished file is moved into
    ``folder``, so a worker killed mid-export leaves nothing half-written behind. With
    a ``cache``, a verified entry of the same key is copied instead, and a fresh export
    is stored (:mod:`nnkit.cache`).
    """
    from nnkit.cache import cache_key, restamp
    from nnkit.steps import export

    record = ArtifactRecord(
        model,
        artifact.exporter,
        None,
        artifact=artifact.id,
        source=artifact.source,
        variant=artifact.variant,
    )
    if artifact.source == "file":
        record.path = str(artifact.path)
        return record
    path = folder / f"{_safe(model)}.{artifact.id}.onnx"
    start = time.perf_counter()
    key, damaged = "", ""
    parts: dict[str, Any] = {}
    if cache is not None:
        key, parts = cache_key(user, request, artifact.exporter, timeout)
        if key:
            entry, damaged = cache.fetch(key, path)
            if entry is not None:
                restamp(path, request.ref)
                record.path, record.notes, record.cached = str(path), entry.notes, True
                record.seconds = time.perf_counter() - start
                return record
    try:
        with temporary_folder(".nnkit-export-", dir=folder) as work:
            result = user.call(
                export,
                request,
                Path(work) / path.name,
                exporter=artifact.exporter,
                located_at=path,
                timeout=timeout,
            )
            os.replace(result.path, path)
    except NnkitError as e:
        # Name the artifact's path, not the worker's temporary folder inside it.
        record.error = re.sub(r"\.nnkit-export-[^/]+/", "", e.format_message())
        record.seconds = time.perf_counter() - start
        return record
    record.path, record.seconds, record.notes = str(path), result.seconds, result.notes()
    if key and cache is not None:
        stored = cache.store(key, parts, path, record.notes, result.seconds)
        record.notes += [note for note in (damaged, stored) if note]
    return record


def _safe(name: str) -> str:
    """A file-name-safe form of a model reference (``path/net.py:Net`` -> ``path_net.py_Net``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
