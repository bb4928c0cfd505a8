"""Merge the reports of a plan's shards into the report of the whole plan.

Each shard's JSON report records its plan (``plan``: the fingerprint, a hash of the
settings that judge cells, every cell id of the whole plan) and its place
(``plan.shard``: index, count, the cells it ran; see :mod:`nnkit.matrix.shard`).
:func:`merge_reports` checks that the reports are every shard of one plan, once, and
puts their results back in the plan's order: the merged report has the results, the
summary, the verdict and the exit code an unsharded run of the plan gives. Its
``seconds`` is the slowest shard's (the wall time of shards run side by side).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnkit.matrix.cases import ParityRequestError
from nnkit.matrix.results import SCHEMA, ParityReport


class MergeError(ParityRequestError):
    """Reports that are not every shard of one plan, once (exit 2)."""


def read_report(path: Path) -> dict[str, Any]:
    """A JSON report read from ``path``.

    Raises:
        MergeError: the file cannot be read, is not JSON, or is not a parity report.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MergeError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise MergeError(f"{str(path)!r} is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise MergeError(f"{str(path)!r} is not an nnkit parity report (schema {SCHEMA!r})")
    plan = data.get("plan")
    if not isinstance(plan, dict) or "cells" not in plan or "fingerprint" not in plan:
        raise MergeError(
            f"{str(path)!r} does not record its plan's cells (a report of nnkit parity "
            "before shards): run it again with this nnkit"
        )
    return data


def merge_files(paths: Sequence[Path]) -> ParityReport:
    """The report of the whole plan from its shards' JSON reports at ``paths``.

    Raises:
        MergeError: see :func:`merge_reports`, and files that are not reports.
    """
    return merge_reports([(str(p), read_report(Path(p))) for p in paths])


def merge_reports(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> ParityReport:
    """Merge ``(name, JSON report)`` pairs, one per shard, into the whole plan's report.

    Raises:
        MergeError: no reports; reports of different plans (or settings); of different
            shard counts; a shard given twice; a shard missing; a report whose cells are
            not its shard's.
    """
    if not reports:
        raise MergeError("no reports to merge")
    first_name, first = reports[0]
    key = _plan_key(first)
    for name, data in reports[1:]:
        if _plan_key(data) != key:
            raise MergeError(
                f"shards of different plans: {first_name} (plan {_describe(first)}) and "
                f"{name} (plan {_describe(data)}); merge the shards of one run"
            )
    places = [(name, _place(data)) for name, data in reports]
    counts = {count for _, (_, count) in places}
    if len(counts) > 1:
        given = ", ".join(f"{n} is {i}/{c}" for n, (i, c) in places)
        raise MergeError(f"shards of different splits: {given}")
    (count,) = counts
    seen: dict[int, str] = {}
    for name, (index, _) in places:
        if index in seen:
            raise MergeError(f"shard {index}/{count} is given twice: {seen[index]} and {name}")
        seen[index] = name
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        given = ", ".join(f"{i}/{count} {seen[i]}" for i in sorted(seen))
        lost = ", ".join(f"{i}/{count}" for i in missing)
        raise MergeError(f"shard {lost} missing (given: {given}); merge every shard of the run")
    for name, data in reports:
        _check_cells(name, data)
    ordered = [
        ParityReport.from_dict(data) for _, data in sorted(reports, key=lambda r: _place(r[1]))
    ]
    return _combine(ordered, list(first["plan"]["cells"]), count)


def comparable(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON report without what differs between two runs of one plan: timings, cache
    hits, the shard it was or the shards it merged. Two runs agree when these are equal."""
    out = json.loads(json.dumps(data))
    out.pop("seconds", None)
    for key in ("shard", "merged"):
        out.get("plan", {}).pop(key, None)
    for key in ("cells", "exports", "results"):
        for item in out.get(key, []):
            item.pop("seconds", None)
            item.pop("cached", None)
    return out


def _plan_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    plan = data["plan"]
    return (plan["fingerprint"], plan.get("settings"), data.get("strict"))


def _describe(data: Mapping[str, Any]) -> str:
    plan = data["plan"]
    strict = ", --strict" if data.get("strict") else ""
    return f"{plan['fingerprint']}, settings {plan.get('settings')}{strict}"


def _place(data: Mapping[str, Any]) -> tuple[int, int]:
    shard = data["plan"].get("shard")
    return (1, 1) if shard is None else (int(shard["index"]), int(shard["count"]))


def _check_cells(name: str, data: Mapping[str, Any]) -> None:
    """A report must hold exactly the cells of its shard (an edited report is refused)."""
    plan = data["plan"]
    shard = plan.get("shard")
    want = list(plan["cells"] if shard is None else shard["cells"])
    have = [c["id"] for c in data["cells"]]
    if sorted(have) != sorted(want):
        lost = sorted(set(want) - set(have)) or sorted(set(have) - set(want))
        raise MergeError(
            f"{name} does not hold the cells of its shard (e.g. {lost[0]!r}): an "
            "unfinished or edited report"
            if lost
            else f"{name} holds a cell twice"
        )


def _combine(reports: Sequence[ParityReport], cells: list[str], count: int) -> ParityReport:
    """One report, in the order of the plan's ``cells``."""
    first = reports[0]
    order = {cell_id: i for i, cell_id in enumerate(cells)}
    run = sorted((c for r in reports for c in r.cells_run), key=lambda c: order[c.id])
    models = list(dict.fromkeys(c.model for c in run))
    columns = list(dict.fromkeys((c.model, c.artifact) for c in run))
    exports = sorted(
        (e for r in reports for e in r.exports), key=lambda e: columns.index((e.model, e.artifact))
    )
    cases = {m: r.cases[m] for m in models for r in reports if m in r.cases}
    plan = {k: v for k, v in first.plan.items() if k != "shard"}
    return ParityReport(
        models=models,
        exporters=list(first.exporters),
        backends=list(first.backends),
        results=[r for c in run for r in c.results],
        cells_run=run,
        exports=exports,
        cases=cases,
        strict=first.strict,
        atol=first.atol,
        rtol=first.rtol,
        compare=dict(first.compare),
        onnx=first.onnx,
        seconds=max(r.seconds for r in reports),
        environment=next((r.environment for r in reports if r.environment), {}),
        artifacts=list(dict.fromkeys(a for _, a in columns)),
        plan={**plan, "merged": count},
    )
