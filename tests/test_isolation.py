"""Users' code and runtimes run under nnkit's control: exits, hangs, aborts and prints
from them never pass a gate, kill a matrix, lose a report or corrupt machine output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import assert_one_line_error, run_cli

MODELS = """\
import os, sys, threading, time
import torch
from torch import nn

if os.environ.get("NNKIT_TEST_EXIT_AT_IMPORT"):
    sys.exit(0)
if os.environ.get("NNKIT_TEST_MARKER"):
    open(os.environ["NNKIT_TEST_MARKER"], "w").close()


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class VanishInInit(nn.Module):
    def __init__(self):
        super().__init__()
        os._exit(0)


class SpinInInit(nn.Module):
    def __init__(self):
        super().__init__()
        while True:
            pass


class ExitInForward(Small):
    def forward(self, x):
        if x.shape[0] == 5:
            sys.exit(0)
        return self.fc(x)


class HangAtBatch1(Small):
    def forward(self, x):
        while x.shape[0] == 1:
            time.sleep(0.01)
        return self.fc(x)


class Chatty(Small):
    def __init__(self):
        super().__init__()
        print("HELLO FROM __init__")
        threading.Thread(target=time.sleep, args=(1000,)).start()

    def forward(self, x):
        print("HELLO FROM forward")
        os.write(1, b"HELLO FROM fd 1\\n")
        return self.fc(x)


class ClosesStdout(Small):
    def forward(self, x):
        sys.stdout.close()
        return self.fc(x)


class Pick(nn.Module):
    def forward(self, x):
        return x[torch.tensor([0, 2])] * 2
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile_models.py"
    path.write_text(MODELS)
    return path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("name", "env", "needle"),
    [
        ("Small", {"NNKIT_TEST_EXIT_AT_IMPORT": "1"}, "called sys.exit(0)"),
        ("VanishInInit", {}, "the process exited with status 0"),
    ],
)
@pytest.mark.parametrize("command", ["export", "parity"])
def test_a_model_that_ends_the_process_while_built_is_one_line_exit_2(
    models, tmp_path, monkeypatch, command, name, env, needle
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = ["-o", str(tmp_path / "m.onnx")] if command == "export" else []
    result = run_cli(command, f"{models}:{name}", "--input", "x:batch=2x4", *args)
    assert_one_line_error(result, f"building '{models}:{name}'", needle)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_spins_while_built_is_stopped_with_where(models, tmp_path) -> None:
    start = time.monotonic()
    result = run_cli(
        "export", f"{models}:SpinInInit", "--input", "x:batch=2x4", "-o", str(tmp_path / "m.onnx"),
        "--timeout", "3",
    )  # fmt: skip
    assert time.monotonic() - start < 60
    assert_one_line_error(result, "did not finish within 3 s", "__init__ at", "hostile_models.py")
    assert list(tmp_path.iterdir()) == []


def test_sys_exit_in_forward_is_an_error_and_the_report_is_written(models, tmp_path) -> None:
    report = tmp_path / "r.json"
    result = run_cli(
        "parity", f"{models}:ExitInForward", "--input", "x:batch=2x4", "--backends", "cpu",
        "--exporters", "torchscript", "--json", str(report),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    data = _json(report)
    assert data["summary"] == {
        "pass": 2,
        "mismatch": 0,
        "unsupported": 0,
        "timeout": 0,
        "error": 1,
        "total": 3,
    }
    error = next(r for r in data["results"] if r["status"] == "error")
    assert error["case"] == "batch=5"
    assert "called sys.exit(0) in forward at" in error["message"]


def test_a_hanging_forward_is_an_error_with_where_and_the_rest_runs(models, tmp_path) -> None:
    report = tmp_path / "r.json"
    start = time.monotonic()
    result = run_cli(
        "parity", f"{models}:HangAtBatch1", "--input", "x:batch=2x4", "--backends", "cpu,tract",
        "--exporters", "torchscript", "--timeout", "5", "--json", str(report),
    )  # fmt: skip
    assert time.monotonic() - start < 120
    assert result.exit_code == 1, result.output
    data = _json(report)
    by_status = {r["status"] for r in data["results"] if r["case"] != "batch=1"}
    assert by_status == {"pass"}
    hung = [r for r in data["results"] if r["case"] == "batch=1"]
    assert [r["status"] for r in hung] == ["error", "error"]
    assert "did not finish within 5 s" in hung[0]["message"]
    assert "forward at" in hung[0]["message"] and "hostile_models.py" in hung[0]["message"]


@pytest.fixture(scope="module")
def out_of_range(models, tmp_path_factory) -> Path:
    """``Pick`` exported, then its Gather indices pointed past the end: a file the
    checker passes, on which tract panics (SIGABRT) and onnxruntime refuses to run."""
    from nnkit.export import export_model
    from nnkit.resolve import resolve_model
    from nnkit.spec import parse_spec

    folder = tmp_path_factory.mktemp("abort")
    path = folder / "pick.onnx"
    model = resolve_model(f"{models}:Pick", inputs=[parse_spec("x:4x3")])
    export_model(model, path, exporter="torchscript")
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute[0].t.data_type == onnx.TensorProto.INT64:
            values = numpy_helper.to_array(node.attribute[0].t)
            if values.tolist() == [0, 2]:
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([0, 9]), "idx"))
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def test_a_runtime_that_aborts_is_an_error_cell_and_the_matrix_goes_on(
    models, out_of_range, tmp_path
) -> None:
    report = tmp_path / "r.json"
    result = run_cli(
        "parity", f"{models}:Pick", "--onnx", str(out_of_range), "--backends", "tract,cpu",
        "--json", str(report), "--junit", str(tmp_path / "r.xml"),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    data = _json(report)
    cells = {c["backend"]: c["status"] for c in data["cells"]}
    assert cells["tract"] == "error"
    assert cells["cpu"] in ("unsupported", "mismatch")  # ran after tract died
    tract = next(r for r in data["results"] if r["backend"] == "tract")
    assert "aborted (SIGABRT)" in tract["message"] and "panicked" in tract["message"]
    assert (tmp_path / "r.xml").is_file()


def test_infer_on_a_runtime_that_aborts_is_one_line_exit_2(out_of_range) -> None:
    assert_one_line_error(
        run_cli("infer", str(out_of_range), "-p", "tract"), "tract:", "aborted (SIGABRT)"
    )


def test_bench_keeps_going_past_a_runtime_that_aborts(out_of_range) -> None:
    result = run_cli(
        "bench", str(out_of_range), "--backends", "tract,reference", "--batch", "4",
        "--seconds", "0.05", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 1
    rows = {r["backend"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["tract"]["status"] == "error" and "SIGABRT" in rows["tract"]["error"]
    assert rows["reference"]["status"] in ("ok", "error")  # it ran, whatever it said


def test_what_user_code_prints_never_reaches_stdout(models, tmp_path) -> None:
    spec = ("--input", "x:batch=2x4")
    bench = run_cli(
        "bench", f"{models}:Chatty", *spec, "--backends", "torch,cpu", "--batch", "1",
        "--seconds", "0.05", "--json", "-",
    )  # fmt: skip
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["model"].endswith(":Chatty")
    parity = run_cli("parity", f"{models}:Chatty", *spec, "--backends", "cpu")
    assert parity.exit_code == 0 and "HELLO" not in parity.stdout
    export = run_cli("export", f"{models}:Chatty", *spec, "-o", str(tmp_path / "c.onnx"))
    assert (
        export.exit_code == 0
        and export.stdout.startswith("exported")
        and "HELLO" not in export.stdout
    )


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_model_that_closes_stdout_exports_and_benches(models, tmp_path, exporter) -> None:
    spec = ("--input", "x:batch=2x4")
    export = run_cli(
        "export", f"{models}:ClosesStdout", *spec, "--exporter", exporter, "-o",
        str(tmp_path / "c.onnx"),
    )  # fmt: skip
    assert export.exit_code == 0, export.output
    bench = run_cli(
        "bench", f"{models}:ClosesStdout", *spec, "--exporter", exporter, "--backends",
        "torch,cpu", "--batch", "1", "--seconds", "0.05", "--json", "-",
    )  # fmt: skip
    assert bench.exit_code == 0, bench.output
    assert len(json.loads(bench.stdout)["results"]) == 2


def test_a_file_never_runs_the_code_its_metadata_names(models, tmp_path, monkeypatch) -> None:
    onnx_file = tmp_path / "small.onnx"
    assert (
        run_cli(
            "export", f"{models}:Small", "--input", "x:batch=2x4", "-o", str(onnx_file)
        ).exit_code
        == 0
    )
    marker = tmp_path / "imported"
    monkeypatch.setenv("NNKIT_TEST_MARKER", str(marker))
    assert_one_line_error(
        run_cli("parity", "--onnx", str(onnx_file), "--backends", "cpu"),
        "names its model as",
        "--trust-metadata",
    )
    assert not marker.exists()
    # Trusted, from another folder: the source is found relative to the file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trusted = run_cli("parity", "--onnx", str(onnx_file), "--backends", "cpu", "--trust-metadata")
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists()


def test_a_zoo_model_named_in_metadata_needs_no_trust(zoo_file) -> None:
    result = run_cli("parity", "--onnx", str(zoo_file("relu", "torchscript")), "--backends", "cpu")
    assert result.exit_code == 0, result.output
