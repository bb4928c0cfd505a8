"""The parity report as JUnit XML: a testsuite per artifact, a testcase per cell.

CI systems read it as test results: a mismatch is a failure whose text carries the
numbers, an error an error, an unsupported or timed-out cell skipped (a failure with
``--strict``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nnkit.fsutil import write_text
from nnkit.matrix.results import Cell, ParityReport


def to_junit(report: ParityReport) -> str:
    """JUnit XML: a testsuite per exporter, a testcase per model x backend cell.

    A mismatch is a ``<failure>`` whose message and text carry the numbers, an error an
    ``<error>``, an unsupported cell ``<skipped>`` (a ``<failure>`` with ``strict``). A
    cell's warnings go to its ``<system-out>``, and with ``strict`` a passing cell with a
    warning is a ``<failure type="warning">``.
    """
    root = ET.Element("testsuites", name="nnkit parity")
    cells = report.cells()
    for artifact in report.artifacts:
        suite = ET.SubElement(root, "testsuite", name=f"nnkit.parity.{artifact}")
        props = ET.SubElement(suite, "properties")
        for key, value in _flat_environment(report.environment):
            ET.SubElement(props, "property", name=key, value=value)
        for cell in (c for c in cells if c.artifact == artifact):
            _testcase(suite, cell, strict=report.strict)
        _count(suite)
    _count(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, report: ParityReport) -> None:
    """Write :func:`to_junit` to ``path``, atomically."""
    write_text(path, to_junit(report))


def _testcase(suite: ET.Element, cell: Cell, *, strict: bool) -> None:
    seconds = cell.seconds
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"nnkit.parity.{cell.artifact}.{cell.model}",
        name=f"{cell.model}[{cell.artifact}-{cell.backend}]",
        time=f"{seconds:.6f}",
    )
    status = cell.status
    warned = cell.warnings
    if status == "pass":
        if warned and strict:
            node = ET.SubElement(case, "failure", message=f"warning: {warned[0]}", type="warning")
            node.text = "\n".join(warned)
    else:
        detail = [f"case {r.case} ({r.status}): {r.message}" for r in cell.results if not r]
        first = next(r for r in cell.results if r.status == status)
        line = first.message.splitlines()[0] if first.message else ""
        message = f"{status}: case {first.case}: {line}"
        if status in ("unsupported", "timeout") and not strict:
            ET.SubElement(case, "skipped", message=message)
        else:
            tag = "error" if status == "error" else "failure"
            node = ET.SubElement(case, tag, message=message, type=status)
            if cell.localization is not None:
                detail.append(f"case {cell.localization.case}: {cell.localization.summary()}")
            node.text = "\n".join(detail)
    if warned:
        ET.SubElement(case, "system-out").text = "\n".join(f"warning: {w}" for w in warned)


def _count(node: ET.Element) -> None:
    cases = list(node.iter("testcase"))
    node.set("tests", str(len(cases)))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        node.set(attr, str(sum(c.find(tag) is not None for c in cases)))
    node.set("time", f"{sum(float(c.get('time', '0')) for c in cases):.6f}")


def _flat_environment(env: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for group, values in env.items():
        if isinstance(values, dict):
            out += [(f"{group}.{k}", str(v)) for k, v in values.items()]
        else:
            out.append((group, str(values)))
    return out
