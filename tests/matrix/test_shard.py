"""Plan, shard, merge: --list runs nothing; shards are disjoint, cover the plan, and
their reports merge into exactly the report of the unsharded run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nnkit.matrix.merge import comparable
from nnkit.matrix.plan import ParityRequest, plan
from nnkit.matrix.shard import Shard, assign, model_cost, parse_shard, shard_cells
from tests.conftest import assert_one_line_error, run_cli


def test_shards_are_disjoint_cover_the_plan_and_keep_a_models_cells_together() -> None:
    p = plan(ParityRequest())
    everything = [c.id for c in p.cells]
    for count in (1, 2, 3, 5, len(p.models), len(p.models) + 2):
        shares = [shard_cells(p, Shard(i, count)) for i in range(1, count + 1)]
        flat = [c for share in shares for c in share]
        assert sorted(flat) == sorted(everything) and len(flat) == len(set(flat))
        models = [{c.split("|")[0] for c in share} for share in shares]
        assert sum(len(m) for m in models) == len(p.models)  # no model in two shards
        assert shares == [shard_cells(p, Shard(i, count)) for i in range(1, count + 1)]
    assert [] in [shard_cells(p, Shard(i, 11)) for i in range(1, 12)]  # 9 models, 11 shards


def test_shards_are_balanced_by_expected_cost_not_by_count() -> None:
    p = plan(ParityRequest())
    costs = {m.name: model_cost(m, p.backends) for m in p.models}
    loads = [sum(costs[m] for m in share) for share in assign(p, 3)]
    # Greedy by cost: no shard exceeds the ideal share by more than the costliest model.
    assert max(loads) - sum(loads) / 3 <= max(costs.values())
    # The onnx reference evaluator weighs more than onnxruntime: cost follows the backends.
    light = plan(ParityRequest(backends=["cpu"]))
    heavy = plan(ParityRequest(backends=["reference"]))
    assert model_cost(heavy.models[0], heavy.backends) > model_cost(light.models[0], ["cpu"])


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", "-1/3"])
def test_a_bad_shard_is_refused_in_one_line(text: str) -> None:
    assert_one_line_error(run_cli("parity", "--shard", text, "--list"), "--shard")


def test_parse_shard() -> None:
    assert parse_shard(" 2/3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_list_prints_the_plan_without_torch_or_exporting(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from nnkit.cli import cli\n"
        "try:\n"
        "    cli.main(['parity', '--list', '--json', '-', '--shard', '2/3'], prog_name='nnkit')\n"
        "except SystemExit as e:\n"
        "    print('EXIT', e.code, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert "EXIT 0 False" in out.stderr, out.stderr
    data = json.loads(out.stdout)
    p = plan(ParityRequest())
    assert data["fingerprint"] == p.to_dict()["fingerprint"]
    assert data["shard"] == {"index": 2, "count": 3}
    assert [c["id"] for c in data["cells"]] == shard_cells(p, Shard(2, 3))
    assert set(data["cells"][0]) == {"id", "model", "artifact", "backend"}
    assert list(tmp_path.iterdir()) == []  # nothing exported, nothing written


def test_list_as_text_names_every_cell() -> None:
    result = run_cli("parity", "linear", "--backends", "cpu", "--list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nnkit parity plan ") and "2 cells, 1 models" in lines[0]
    assert any(ln.split()[:4] == ["linear|dynamo|cpu", "linear", "dynamo", "cpu"] for ln in lines)
    assert any(ln.startswith("linear|torchscript|cpu ") for ln in lines)


# -- merge -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The zoo, unsharded and as 3 shards (each a real ``nnkit parity`` run)."""
    folder = tmp_path_factory.mktemp("shards")
    runs: dict[str, Any] = {"folder": folder}
    full = run_cli("parity", "--json", str(folder / "full.json"))
    runs["full"] = (full.exit_code, json.loads((folder / "full.json").read_text()))
    for i in (1, 2, 3):
        shard = run_cli("parity", "--shard", f"{i}/3", "--json", str(folder / f"s{i}.json"))
        assert shard.exit_code in (0, 1), shard.stderr
    return runs


def test_three_shards_merge_into_exactly_the_unsharded_report(zoo_runs, tmp_path: Path) -> None:
    folder = zoo_runs["folder"]
    code, full = zoo_runs["full"]
    shards = [str(folder / f"s{i}.json") for i in (3, 1, 2)]  # any order
    merged = run_cli(
        "report", "merge", *shards, "--json", str(tmp_path / "m.json"),
        "--markdown", str(tmp_path / "m.md"), "--junit", str(tmp_path / "m.xml"),
    )  # fmt: skip
    assert merged.exit_code == code == full["exit_code"]
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["plan"]["merged"] == 3
    assert comparable(data) == comparable(full)
    assert data["summary"] == full["summary"] and data["summary"]["total"] == 216
    assert "nnkit parity" in (tmp_path / "m.md").read_text()
    assert (tmp_path / "m.xml").read_text().count("<testcase") == 72
    for i in (1, 2, 3):  # each shard recorded its place and the whole plan
        plan_record = json.loads((folder / f"s{i}.json").read_text())["plan"]
        assert plan_record["shard"]["index"] == i and plan_record["shard"]["count"] == 3
        assert plan_record["cells"] == full["plan"]["cells"]


def test_a_merged_failure_keeps_its_exit_status(zoo_runs, tmp_path: Path) -> None:
    folder = zoo_runs["folder"]
    data = json.loads((folder / "s2.json").read_text())
    result = data["results"][0]
    result["status"], result["message"] = "mismatch", "planted"
    (tmp_path / "s2.json").write_text(json.dumps(data))
    merged = run_cli(
        "report", "merge", str(folder / "s1.json"), str(tmp_path / "s2.json"),
        str(folder / "s3.json"), "--json", "-",
    )  # fmt: skip
    assert merged.exit_code == 1
    out = json.loads(merged.stdout)
    assert out["verdict"] == "fail" and out["summary"]["mismatch"] == 1
    assert "FAIL" in merged.stderr  # the console report went to stderr


def test_merge_refuses_a_missing_shard(zoo_runs) -> None:
    folder = zoo_runs["folder"]
    result = run_cli("report", "merge", str(folder / "s1.json"), str(folder / "s3.json"))
    assert_one_line_error(result, "shard 2/3 missing", "s1.json", "s3.json")


def test_merge_refuses_a_shard_given_twice(zoo_runs) -> None:
    f = zoo_runs["folder"]
    result = run_cli("report", "merge", *(str(f / n) for n in ("s1.json", "s2.json", "s2.json")))
    assert_one_line_error(result, "shard 2/3 is given twice")


def test_merge_refuses_shards_of_different_plans(zoo_runs, tmp_path: Path) -> None:
    folder = zoo_runs["folder"]
    other = tmp_path / "other.json"
    run = run_cli("parity", "relu", "--backends", "cpu", "--shard", "2/3", "--json", str(other))
    assert run.exit_code == 0, run.stderr
    result = run_cli(
        "report", "merge", str(folder / "s1.json"), str(other), str(folder / "s3.json")
    )
    assert_one_line_error(result, "shards of different plans", "s1.json", "other.json")
    # Same cells, other settings (--strict): refused too.
    data = json.loads((folder / "s2.json").read_text())
    data["strict"] = True
    (tmp_path / "strict.json").write_text(json.dumps(data))
    result = run_cli(
        "report", "merge", str(folder / "s1.json"), str(tmp_path / "strict.json"),
        str(folder / "s3.json"),
    )  # fmt: skip
    assert_one_line_error(result, "shards of different plans")


def test_merge_refuses_a_report_without_its_cells(zoo_runs, tmp_path: Path) -> None:
    folder = zoo_runs["folder"]
    data = json.loads((folder / "s2.json").read_text())
    dropped = data["cells"].pop()["id"]
    data["results"] = [
        r for r in data["results"] if f"{r['model']}|{r['artifact']}|{r['backend']}" != dropped
    ]
    (tmp_path / "s2.json").write_text(json.dumps(data))
    result = run_cli(
        "report", "merge", str(folder / "s1.json"), str(tmp_path / "s2.json"),
        str(folder / "s3.json"),
    )  # fmt: skip
    assert_one_line_error(result, "does not hold the cells of its shard", dropped)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not JSON"),
        ('{"schema": "other"}', "is not an nnkit parity report"),
        ('{"schema": "nnkit.parity/1", "plan": {"fingerprint": "x"}}', "does not record"),
    ],
)
def test_merge_refuses_a_file_that_is_not_a_report(tmp_path: Path, content, needle) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert_one_line_error(run_cli("report", "merge", str(bad)), needle)
    assert_one_line_error(run_cli("report", "merge", str(tmp_path / "none.json")), "cannot read")


def test_merge_reads_json_only_it_imports_no_torch_nor_runtimes(zoo_runs) -> None:
    folder = zoo_runs["folder"]
    code = (
        "import sys\n"
        "from nnkit.cli import cli\n"
        "try:\n"
        "    cli.main(['report', 'merge', *sys.argv[1:], '--json', '/dev/null'], prog_name='nnkit')\n"
        "except SystemExit as e:\n"
        "    heavy = ('torch', 'onnx', 'onnxruntime', 'openvino', 'tract')\n"
        "    print('EXIT', e.code, [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    shards = [str(folder / f"s{i}.json") for i in (1, 2, 3)]
    out = subprocess.run(
        [sys.executable, "-c", code, *shards], capture_output=True, text=True, timeout=120
    )
    assert f"EXIT {zoo_runs['full'][0]} []" in out.stderr, out.stderr


def test_list_json_without_a_file_prints_on_stdout() -> None:
    result = run_cli("parity", "relu", "--backends", "cpu", "--list", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [c["id"] for c in data["cells"]] == ["relu|dynamo|cpu", "relu|torchscript|cpu"]
    assert set(data["costs"]) == {"relu"}


def test_report_merge_has_help() -> None:
    result = run_cli("report", "merge", "--help")
    assert result.exit_code == 0 and "Usage: cli report merge" in result.stdout
    assert "--junit" in result.stdout and "missing" in result.stdout
