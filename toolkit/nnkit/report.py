"""Parity reports: the console grid, JSON, Markdown, JUnit XML (:mod:`nnkit.junit`), and
live progress.

Every file is written atomically (:func:`nnkit.fsutil.write_text`). The JSON report's
keys are stable (``schema`` names its version); the Markdown fits a GitHub job summary;
the JUnit file has one testcase per model x exporter x backend cell, its failure
carrying the numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from nnkit.compare import fmt
from nnkit.fsutil import write_text
from nnkit.junit import to_junit, write_junit
from nnkit.matrix.results import REPORT_ORDER, SCHEMA, Cell, ParityReport, ProgressEvent
from nnkit.matrix.variants import SUMMARY_HEADERS, budget_lines
from nnkit.matrix.variants import summary_rows as variant_rows
from nnkit.render import table

# Every format is reached from here; the JUnit file is nnkit.junit's.
__all__ = [
    "SCHEMA",
    "Progress",
    "render_console",
    "to_json",
    "to_junit",
    "to_markdown",
    "write_json",
    "write_junit",
    "write_markdown",
]

#: Console words per status, upper case where something failed.
CONSOLE = {
    "pass": "pass",
    "mismatch": "MISMATCH",
    "unsupported": "unsupported",
    "timeout": "timeout",
    "error": "ERROR",
}
#: Markdown per status: a mark a reader spots in a job summary.
MARKDOWN = {
    "pass": "✅ pass",
    "mismatch": "❌ mismatch",
    "unsupported": "⚠️ unsupported",
    "timeout": "⏱️ timeout",
    "error": "💥 error",
}


# -- console ------------------------------------------------------------------------


def cell_text(cell: Cell | None, words: dict[str, str]) -> str:
    """A grid cell: the status, how many cases when only some failed, ``!`` for warnings,
    ``*`` for notes."""
    if cell is None:
        return "-"
    status = cell.status
    text = words[status]
    bad = sum(r.status == status for r in cell.results)
    if status != "pass" and bad != len(cell.results):
        text += f" {bad}/{len(cell.results)}"
    return text + ("!" if cell.warnings else "") + ("*" if cell.notes else "")


def grids(report: ParityReport, words: dict[str, str]) -> list[tuple[str, list[list[str]]]]:
    """Per artifact (an exporter's files, an ``--onnx`` file): rows of model then one cell
    text per backend."""
    cells = {(c.model, c.artifact, c.backend): c for c in report.cells()}
    return [
        (
            artifact,
            [
                [
                    model,
                    *(cell_text(cells.get((model, artifact, b)), words) for b in report.backends),
                ]
                for model in report.models
                if any((model, artifact, b) in cells for b in report.backends)
            ],
        )
        for artifact in report.artifacts
    ]


def headline(report: ParityReport) -> str:
    """``9 models x 2 exporters x 4 backends (cpu, ...), 3 shape cases each``."""
    n_cases = sorted({len(c) for c in report.cases.values()})
    cases = "/".join(map(str, n_cases)) or "0"
    columns = (
        f"{_n(len(report.exporters), 'exporter')} ({', '.join(report.exporters)})"
        if report.artifacts == report.exporters
        else f"{_n(len(report.artifacts), 'artifact')} ({', '.join(report.artifacts)})"
    )
    shard = report.plan.get("shard")
    where = ""
    if shard:  # a share of a plan: the merge of every shard gives the verdict
        where = f"; shard {shard['index']}/{shard['count']} of plan {report.plan['fingerprint']}"
        where += "" if shard["cells"] else " (no cells: more shards than models)"
    return (
        f"{_n(len(report.models), 'model')} x {columns} x {_n(len(report.backends), 'backend')} "
        f"({', '.join(report.backends)}), {cases} shape cases each, against PyTorch{where}"
    )


def verdict_line(report: ParityReport) -> str:
    """``PASS: 212 results: 210 pass, 2 unsupported (12.3 s)``."""
    summary = report.summary()
    counts = ", ".join(f"{summary[s]} {s}" for s in _shown(summary))
    word = "PASS" if report else "FAIL"
    warned = f", {report.warned} with warnings" if report.warned else ""
    failing = "unsupported, timeout" if summary["timeout"] else "unsupported"
    strict = f" (--strict: {failing} and warnings fail)" if report.strict else ""
    return f"{word}: {summary['total']} results: {counts}{warned}{strict} [{report.seconds:.1f} s]"


def _shown(summary: dict[str, int]) -> list[str]:
    """The statuses a verdict line counts: every one, ``timeout`` only when there is one
    (it exists only with ``--max-seconds-per-cell``)."""
    return [s for s in REPORT_ORDER if s != "timeout" or summary[s]]


#: How many of the slowest cells the console report lists.
SLOWEST = 5


def slowest(report: ParityReport, count: int = SLOWEST) -> list[str]:
    """The ``count`` slowest cells, slowest first, with each case's seconds on the
    backend: where a matrix's time goes (the onnx reference evaluator, on big models)."""
    # As the JSON keeps them (ms), so a report read back from its JSON prints the same.
    cells = sorted(report.cells(), key=lambda c: -round(c.seconds, 3))[:count]
    return [
        f"{round(c.seconds, 3):7.2f} s  {c.model} / {c.artifact} / {c.backend}"
        + (f" ({c.status})" if c.status != "pass" else "")
        for c in cells
    ]


def problems(report: ParityReport) -> list[str]:
    """One block per cell that did not pass: each case's reason and numbers.

    Cells of one model and exporter that failed every case for one reason (an export
    that failed fails every backend alike) share one block, so a long reason is said once.
    """
    blocks: list[tuple[str, str, str, str] | list[str]] = []
    shared: dict[tuple[str, str, str, str], list[str]] = {}
    for cell in report.cells():
        if cell:
            continue
        messages = {r.message for r in cell.results if not r}
        if len(messages) == 1 and all(not r for r in cell.results):
            key = (cell.model, cell.artifact, cell.status, messages.pop())
            if key not in shared:
                shared[key] = []
                blocks.append(key)
            shared[key].append(cell.backend)
            continue
        lines = [f"{cell.model} / {cell.artifact} / {cell.backend}: {cell.status}"]
        for r in cell.results:
            if not r:
                lines.extend(_indent(f"case {r.case} ({r.status}): {r.message}", 2))
        blocks.append(lines)
    out: list[str] = []
    for block in blocks:
        if isinstance(block, list):
            out.extend(block)
            continue
        model, artifact, status, message = block
        out.append(f"{model} / {artifact} / {', '.join(shared[block])}: {status}")
        out.extend(_indent(f"all cases: {message}", 2))
    return out


def localizations(report: ParityReport, *, trace: bool = True) -> list[str]:
    """One block per localized cell: its one line, then (``trace``) the mapped outputs up
    to the divergence (the last few) and the notes."""
    lines: list[str] = []
    for cell in report.cells():
        found = cell.localization
        if found is None:
            continue
        lines.append(f"{cell.model} / {cell.artifact} / {cell.backend}: case {found.case}:")
        lines.extend(_indent(found.summary(), 2))
        if not trace:
            continue
        shown = found.trace[-_TRACE_SHOWN:]
        if len(found.trace) > len(shown):
            lines.append(f"    ... {len(found.trace) - len(shown)} earlier modules agree")
        lines.extend(
            f"    {p.module} -> {p.onnx_value}: max diff {fmt(p.max_abs_diff)} "
            f"{'ok' if p.passed else 'DIFFERS'}"
            for p in shown
        )
        lines.extend(
            _indent("\n".join(f"note: {n}" for n in found.notes), 4) if found.notes else []
        )
    return lines


#: Trace points a console block shows (the last ones, up to the divergence).
_TRACE_SHOWN = 6


def warnings(report: ParityReport) -> list[str]:
    """Per cell, each warning once: a reference that is a weak judge of its output."""
    return [
        f"{cell.model} / {cell.artifact} / {cell.backend}: {w}"
        for cell in report.cells()
        for w in cell.warnings
    ]


def details(report: ParityReport, *, verbose: bool = False) -> list[str]:
    """Per output, the magnitudes and metrics of each case: of the cells that carry a
    warning, or of every cell when ``verbose`` (a failure's line in :func:`problems`
    carries its own)."""
    lines: list[str] = []
    for cell in report.cells():
        shown = [r for r in cell.results if r.outputs]
        if not shown or not (verbose or cell.warnings):
            continue
        lines.append(f"{cell.model} / {cell.artifact} / {cell.backend}:")
        for r in shown:
            lines.append(f"  case {r.case} ({r.status}):")
            lines.extend(f"    {o.detail()}" for o in r.outputs)
    return lines


def notes(report: ParityReport) -> list[str]:
    """Findings that are not failures: exporters' fixed dims, declared shapes that disagree."""
    out = [f"{e.model} / {e.artifact}: {n}" for e in report.exports for n in e.notes]
    for cell in report.cells():
        out.extend(f"{cell.model} / {cell.artifact} / {cell.backend}: {n}" for n in cell.notes)
    return out


def render_console(report: ParityReport, *, verbose: bool = False) -> str:
    """The grid a person reads at a glance, then what failed and why, the warnings, the
    numbers of failing and warned cells (of every cell when ``verbose``), the verdict."""
    parts = [f"nnkit parity: {headline(report)}"]
    for artifact, rows in grids(report, CONSOLE):
        parts.append("")
        parts.append(report.artifact_title(artifact))
        parts.append(table(["model", *report.backends], rows))
    parts += variants_section(report)
    bad = problems(report)
    if bad:
        parts += ["", "problems:", *_indent("\n".join(bad), 2)]
    localized = localizations(report)
    if localized:
        parts += ["", "localization (parity --localize):", *_indent("\n".join(localized), 2)]
    warned = warnings(report)
    if warned:
        fail = "failures with --strict" if report.strict else "not failures unless --strict"
        parts += [
            "",
            f"warnings ({fail}; a cell with a warning is marked !):",
            *_indent("\n".join(warned), 2),
        ]
    numbers = details(report, verbose=verbose)
    if numbers:
        which = "every cell" if verbose else "cells with a warning; --verbose: every cell"
        parts += ["", f"details ({which}):", *_indent("\n".join(numbers), 2)]
    found = notes(report)
    if found:
        parts += [
            "",
            "notes (not failures; a cell with a note of its own is marked *):",
            *_indent("\n".join(found), 2),
        ]
    cells = report.cells()
    if len(cells) > 1:
        spent = sum(round(c.seconds, 3) for c in cells)
        shown = min(SLOWEST, len(cells))
        parts += [
            "",
            f"slowest cells ({shown} of {len(cells)}, {spent:.1f} s in all cells):",
            *_indent("\n".join(slowest(report)), 2),
        ]
    parts += ["", verdict_line(report)]
    return "\n".join(parts)


def variants_section(report: ParityReport) -> list[str]:
    """The variants' summary (which to ship on which runtime) and their budgets."""
    rows = variant_rows(report)
    if not rows:
        return []
    return [
        "",
        "variants: accuracy and size per runtime (speed: nnkit bench --variants); budgets:",
        *(f"  {b}" for b in budget_lines(report)),
        table(SUMMARY_HEADERS, rows),
    ]


class Progress:
    """Live progress on a stream (stderr): one rewritten line on a terminal, else one
    line per finished cell, so CI logs stay readable."""

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._width = 0

    def __call__(self, event: ProgressEvent) -> None:
        where = f"[{event.index}/{event.total}] {event.model} / {event.exporter} / {event.backend}"
        if event.cell is None:
            if self.tty:
                self._rewrite(f"{where} ...")
            return
        cell = event.cell
        seconds = cell.seconds
        text = f"{where}: {cell_text(cell, CONSOLE)} ({_n(len(cell.results), 'case')}, {seconds:.2f} s)"
        if self.tty:
            self._rewrite(text)
        else:
            self.stream.write(f"parity {text}\n")
            self.stream.flush()

    def _rewrite(self, text: str) -> None:
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def finish(self) -> None:
        """Clear the rewritten line (terminal only)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# -- JSON ---------------------------------------------------------------------------


def to_json(report: ParityReport) -> dict[str, Any]:
    """The JSON report (:meth:`~nnkit.matrix.results.ParityReport.to_dict`; the README
    documents its keys)."""
    return report.to_dict()


def write_json(path: str | Path, report: ParityReport) -> None:
    """Write :func:`to_json` to ``path``, atomically."""
    write_text(path, json.dumps(to_json(report), indent=2, allow_nan=False) + "\n")


# -- Markdown -----------------------------------------------------------------------


def to_markdown(report: ParityReport) -> str:
    """A Markdown report for a GitHub job summary: verdict, grids, problems, environment."""
    summary = report.summary()
    word = "✅ PASS" if report else "❌ FAIL"
    lines = [
        f"## nnkit parity: {word}",
        "",
        headline(report) + ".",
        "",
        " · ".join(f"**{summary[s]}** {s}" for s in _shown(summary))
        + f" (of {summary['total']} results, {report.seconds:.1f} s)",
    ]
    for artifact, rows in grids(report, MARKDOWN):
        kind, _, rest = report.artifact_title(artifact).partition(": ")
        lines += ["", f"### {kind}: `{rest}`", ""]
        lines += _md_table(["model", *report.backends], rows)
    summary_rows = variant_rows(report)
    if summary_rows:
        lines += ["", "### Variants", ""]
        lines += [f"- budget {_md_escape(b)}" for b in budget_lines(report)] + [""]
        lines += _md_table(SUMMARY_HEADERS, summary_rows)
    bad = problems(report)
    if bad:
        lines += ["", "<details open><summary>Problems</summary>", "", "```text", *bad, "```"]
        lines += ["", "</details>"]
    localized = [
        f"- {_md_escape(f'{c.model} / {c.artifact} / {c.backend}: {c.localization.summary()}')}"
        for c in report.cells()
        if c.localization is not None
    ]
    if localized:
        lines += ["", "<details open><summary>Localization</summary>", "", *localized]
        lines += ["", "</details>"]
    warned = warnings(report)
    if warned:
        fail = "failures with --strict" if report.strict else "not failures unless --strict"
        lines += ["", f"<details open><summary>Warnings ({fail})</summary>", ""]
        lines += [f"- {_md_escape(w)}" for w in warned]
        lines += ["", "</details>"]
    found = notes(report)
    if found:
        lines += ["", "<details><summary>Notes (not failures)</summary>", ""]
        lines += [f"- {_md_escape(n)}" for n in found]
        lines += ["", "</details>"]
    env = report.environment
    if env:
        versions = {**env.get("versions", {}), **env.get("backends", {})}
        machine = env.get("machine", {})
        lines += ["", "<details><summary>Environment</summary>", ""]
        lines += _md_table(["", "version"], [[k, str(v)] for k, v in versions.items()])
        lines += ["", "machine: " + _md_escape(", ".join(f"{k} {v}" for k, v in machine.items()))]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, report: ParityReport) -> None:
    """Write :func:`to_markdown` to ``path``, atomically."""
    write_text(path, to_markdown(report))


def _md_table(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


# -- JUnit --------------------------------------------------------------------------


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _indent(text: str, spaces: int) -> list[str]:
    return [" " * spaces + ln for ln in text.splitlines()]
