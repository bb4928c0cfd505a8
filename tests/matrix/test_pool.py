"""Parallel cells (--jobs), a cap per cell (--max-seconds-per-cell), the slowest cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nnkit.matrix.merge import comparable
from tests.conftest import run_cli
from tests.test_isolation import models, out_of_range  # noqa: F401 - fixtures


def _run(tmp_path: Path, name: str, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / f"{name}.json"
    result = run_cli("parity", *args, "--json", str(out))
    assert out.is_file(), result.stderr
    return result.exit_code, json.loads(out.read_text())


def test_jobs_give_the_same_report_as_one_job(tmp_path: Path) -> None:
    args = ("linear", "lstm", "maxpool2d")
    one = _run(tmp_path, "one", *args)
    three = _run(tmp_path, "three", *args, "--jobs", "3")
    assert one[0] == three[0] == 0
    assert comparable(one[1]) == comparable(three[1])
    assert len(one[1]["cells"]) == 3 * 2 * len(one[1]["request"]["backends"])


def test_a_runtime_that_aborts_takes_down_only_its_cell_with_jobs(
    models: Path,  # noqa: F811
    out_of_range: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    args = (f"{models}:Pick", "--onnx", str(out_of_range), "--backends", "tract,cpu,reference")
    code, data = _run(tmp_path, "two", *args, "--jobs", "2")
    cells = {c["backend"]: c["status"] for c in data["cells"]}
    assert code == 1 and cells["tract"] == "error"
    tract = next(r for r in data["results"] if r["backend"] == "tract")
    assert "aborted (SIGABRT)" in tract["message"]
    assert cells["cpu"] != "error" and cells["reference"] != "error"  # they ran to the end
    _, serial = _run(tmp_path, "one", *args)
    assert comparable(serial) == comparable(data)


@pytest.mark.parametrize("strict", [False, True])
def test_a_cell_past_its_cap_is_a_timeout_failing_only_with_strict(
    tmp_path: Path, strict: bool
) -> None:
    """A cap of 1 ms: the load is stopped or every case left is not run, on any machine."""
    flags = ["--strict"] if strict else []
    xml = tmp_path / "r.xml"
    args = ("relu", "--exporters", "torchscript", "--backends", "reference,cpu")
    out = tmp_path / "r.json"
    result = run_cli(
        "parity", *args, "--max-seconds-per-cell", "0.001", "--json", str(out),
        "--junit", str(xml), *flags,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert {c["status"] for c in data["cells"]} == {"timeout"}
    assert data["summary"]["timeout"] == data["summary"]["total"] == 6
    assert all("--max-seconds-per-cell 0.001 s" in r["message"] for r in data["results"])
    assert result.exit_code == data["exit_code"] == (1 if strict else 0)
    assert "timeout" in result.stdout and "6 timeout" in result.stdout
    junit = xml.read_text()
    assert junit.count("<skipped" if not strict else 'type="timeout"') == 2


def test_without_a_cap_nothing_is_a_timeout_and_the_slowest_cells_are_listed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.json"
    args = ("relu", "--exporters", "torchscript", "--backends", "reference,cpu")
    result = run_cli("parity", *args, "--max-seconds-per-cell", "600", "--json", str(out))
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["summary"]["timeout"] == 0
    lines = result.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("slowest cells (2 of 2"))
    listed = lines[start + 1 : start + 3]
    seconds = [float(ln.split()[0]) for ln in listed]
    assert seconds == sorted(seconds, reverse=True)
    assert {ln.split("  ")[-1].strip() for ln in listed} == {
        "relu / torchscript / reference",
        "relu / torchscript / cpu",
    }
    assert all(c["seconds"] > 0 for c in data["cells"])  # each backend's time per cell
    assert "timeout" not in lines[-1]  # the verdict counts timeouts only when there are


def test_a_bad_jobs_or_cap_is_refused(tmp_path: Path) -> None:
    from tests.conftest import assert_one_line_error

    assert_one_line_error(run_cli("parity", "relu", "--jobs", "0"), "--jobs")
    assert_one_line_error(run_cli("parity", "relu", "--max-seconds-per-cell", "0"), "per-cell")
    assert_one_line_error(run_cli("parity", "relu", "--max-seconds-per-cell", "nan"), "per-cell")
