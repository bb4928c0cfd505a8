"""Localizing a divergence, on planted faults of each kind and on a real runtime bug.

- export: one middle layer's weight changed in an exported file (both exporters, the
  zoo's CombinedNN and LSTM, a model with two outputs): every runtime computes the file
  as it says, so the file is to blame, and the layer is named;
- runtime: tract computes ``Softplus`` as log(1 + exp(x)), which overflows to inf for
  large x where PyTorch (and onnxruntime, OpenVINO, the reference evaluator) give x: a
  real runtime difference, in the middle layer of a small net;
- a clean file: nothing to localize, exit 0.

Each repro is checked to reproduce with ``nnkit infer`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from nnkit.npzfile import load_values
from tests._faults import scale_initializer
from tests.conftest import assert_one_line_error, run_nnkit

SOFTPLUS_NET = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.Softplus()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x * 100.0)))


class LogSoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.LogSoftmax(-1)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x * 100.0)))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(8, 32), nn.Tanh())
        self.scores = nn.Linear(32, 4)
        self.boxes = nn.Linear(32, 2)

    def forward(self, x):
        h = self.trunk(x)
        return self.scores(h), self.boxes(h)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)) * 3.0)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
"""


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "nets.py"
    path.write_text(SOFTPLUS_NET)
    return path


def _localize(*args: str, tmp: Path) -> tuple[int, dict, str]:
    out = tmp / "out.json"
    done = run_nnkit("localize", *args, "--json", str(out), timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(out.read_text()), done.stdout


def _reproduces(repro: dict, backend: str, tmp: Path) -> float:
    """Run the repro's own command; the max abs diff of what it saves from expected."""
    command = repro["command"].split()
    assert command[:3] == ["nnkit", "infer", repro["onnx"]]
    assert "--provider" in command and backend in command
    done = run_nnkit(*command[1:], timeout=120)
    assert done.returncode == 0, done.stderr
    got = load_values(command[command.index("--save") + 1])
    expected = load_values(repro["expected"])
    assert list(got) == list(expected)
    onnx.checker.check_model(onnx.load(repro["onnx"]))
    diffs = [np.abs(np.asarray(got[k], np.float64) - expected[k]) for k in expected]
    return max(float(np.nan_to_num(d, nan=np.inf, posinf=np.inf).max()) for d in diffs)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_changed_weight_is_blamed_on_the_export(zoo_file, tmp_path: Path, exporter) -> None:
    bad = scale_initializer(
        zoo_file("combinednn", exporter), tmp_path / "bad.onnx", name="fc2.weight"
    )
    code, report, stdout = _localize(
        "combinednn",
        "--onnx",
        str(bad),
        "--backend",
        "cpu",
        "--out",
        str(tmp_path / "out"),
        tmp=tmp_path,
    )
    assert code == 1
    found = report["localization"]
    assert found["status"] == "found"
    assert (found["module"], found["module_type"], found["op_types"]) == ("fc2", "Linear", ["Gemm"])
    assert found["blame"] == "export"
    assert {"cpu", "reference"} <= set(found["agreeing_backends"])
    assert found["input_max_abs_diff"] < 1e-4 < found["max_abs_diff"]
    # the trace: every module before fc2 agrees, in execution order
    modules = [p["module"] for p in found["trace"]]
    assert modules == ["conv1", "relu", "pool", "fc1", "relu#2", "fc2"]
    assert [p["passed"] for p in found["trace"]] == [True] * 5 + [False]
    assert "first divergence: fc2 (Linear)" in stdout and "blame: export" in stdout
    repro = found["repro"]
    assert Path(repro["onnx"]).parent == tmp_path / "out" / "combinednn.file.cpu"
    assert _reproduces(repro, "cpu", tmp_path) > 1e-3


@pytest.mark.parametrize(
    ("model", "op", "exporter"),
    [("lstm", "LSTM", "dynamo"), ("lstm", "LSTM", "torchscript"), ("gru", "GRU", "dynamo")],
)
def test_a_recurrent_layer_is_found_in_its_module(
    zoo_file, tmp_path: Path, model: str, op: str, exporter: str
) -> None:
    src = zoo_file(model, exporter)
    last = [n for n in onnx.load(str(src)).graph.node if n.op_type == op][-1]
    bad = scale_initializer(src, tmp_path / "bad.onnx", name=last.input[2])  # R, last layer
    code, report, _ = _localize(model, "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path)
    assert code == 1
    found = report["localization"]
    assert (found["module"], found["module_type"], found["blame"]) == ("rnn", op, "export")
    assert op in found["op_types"]
    # the tuple's first tensor (output) is the first traced; h_n (and c_n) come after it
    assert found["trace"][-1]["module"] == "rnn[0]"
    assert found["repro"] is None  # no --out


def test_a_model_with_two_outputs(nets: Path, tmp_path: Path) -> None:
    ref = f"{nets}:TwoHeads"
    src = tmp_path / "heads.onnx"
    done = run_nnkit("export", ref, "--input", "x:batch=2x8", "-o", str(src), timeout=300)
    assert done.returncode == 0, done.stderr
    bad = scale_initializer(src, tmp_path / "bad.onnx", name="boxes.weight")
    code, report, _ = _localize(
        ref, "--input", "x:batch=2x8", "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path
    )
    assert code == 1
    found = report["localization"]
    assert (found["module"], found["module_type"], found["blame"]) == ("boxes", "Linear", "export")
    passed = {p["module"]: p["passed"] for p in found["trace"]}
    assert passed["scores"] and passed["trunk"]


def test_functional_code_is_put_at_the_enclosing_module(nets: Path, tmp_path: Path) -> None:
    """The model's own ``* 3.0`` (no module of its own) is wrong in the file: the
    divergence is put at the model, saying why, with the nodes that compute it."""
    ref = f"{nets}:Functional"
    src = tmp_path / "fn.onnx"
    done = run_nnkit("export", ref, "--input", "x:batch=2x8", "-o", str(src), timeout=300)
    assert done.returncode == 0, done.stderr
    (scalar,) = [t.name for t in onnx.load(str(src)).graph.initializer if not t.dims]
    bad = scale_initializer(src, tmp_path / "bad.onnx", name=scalar)
    code, report, stdout = _localize(
        ref, "--input", "x:batch=2x8", "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path
    )
    assert code == 1
    found = report["localization"]
    assert (found["module"], found["module_type"], found["blame"]) == ("", "Functional", "export")
    assert found["op_types"] == ["Tanh", "Mul", "Gemm"]
    assert any("nearest enclosing module" in n for n in found["notes"])
    assert "first divergence: (the model) (Functional)" in stdout


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_batch_norm_folded_into_its_conv(nets: Path, tmp_path: Path, exporter: str) -> None:
    """Both exporters fold each batch norm into the conv before it; torchscript names the
    node after the conv, dynamo puts it in the batch norm's scope. Either way the changed
    conv weight is found, its value compared with the batch norm's output, and a note
    names the module that has no node of its own."""
    ref = f"{nets}:ConvBN"
    spec = ("--input", "x:batch=2x3x8x8")
    src = tmp_path / "convbn.onnx"
    done = run_nnkit("export", ref, *spec, "--exporter", exporter, "-o", str(src), timeout=300)
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(src))
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 0  # folded
    second = [n for n in model.graph.node if n.op_type == "Conv"][1]
    bad = scale_initializer(src, tmp_path / "bad.onnx", name=second.input[1])
    code, report, _ = _localize(ref, *spec, "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path)
    assert code == 1
    found = report["localization"]
    assert found["blame"] == "export" and found["op_types"] == ["Conv"]
    assert [p["passed"] for p in found["trace"]][-1] is False
    assert all(p["passed"] for p in found["trace"][:-1])
    if exporter == "torchscript":
        assert (found["module"], found["module_type"]) == ("conv2", "Conv2d")
        assert found["trace"][-1]["module"] == "conv2+bn2"
        assert any("bn2 has no node of its own" in n for n in found["notes"])
    else:
        assert (found["module"], found["module_type"]) == ("bn2", "BatchNorm2d")
        assert any(n.startswith("conv2 ran between") for n in found["notes"])


def test_a_real_runtime_difference_is_blamed_on_the_runtime(nets: Path, tmp_path: Path) -> None:
    """tract's Softplus overflows where the others do not; parity --localize says so in
    every report."""
    from nnkit.backends import probe

    for backend in ("tract", "cpu"):
        if not probe(backend):
            pytest.skip(f"{backend} does not run here")
    art = tmp_path / "art"
    files = {k: tmp_path / f"report.{k}" for k in ("json", "md", "xml")}
    done = run_nnkit(
        "parity", f"{nets}:Net", "--input", "x:batch=2x8", "--exporters", "torchscript",
        "--backends", "cpu,tract", "--localize", "--artifacts", str(art),
        "--json", str(files["json"]), "--markdown", str(files["md"]), "--junit",
        str(files["xml"]), timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    cells = {c["backend"]: c for c in json.loads(files["json"].read_text())["cells"]}
    assert "localization" not in cells["cpu"]  # it passes
    found = cells["tract"]["localization"]
    assert found["status"] == "found"
    assert (found["module"], found["module_type"], found["op_types"]) == (
        "act",
        "Softplus",
        ["Softplus"],
    )
    assert found["blame"] == "runtime" and "cpu" in found["agreeing_backends"]
    assert found["nonfinite_mismatches"] > 0
    assert [p["module"] for p in found["trace"]] == ["fc1", "act"]
    assert "first divergence: act (Softplus)" in done.stdout
    for f in ("md", "xml"):
        assert "first divergence: act (Softplus)" in files[f].read_text()
    assert np.isinf(_reproduces(found["repro"], "tract", tmp_path))
    assert Path(found["repro"]["onnx"]).is_relative_to(art)


def test_the_reference_evaluator_s_log_softmax_is_blamed_on_it(nets: Path, tmp_path) -> None:
    """A second real one: onnx's reference evaluator computes LogSoftmax on large
    inputs as -inf where PyTorch, onnxruntime and OpenVINO do not (dynamo export)."""
    code, report, _ = _localize(
        f"{nets}:LogSoftmaxNet", "--input", "x:batch=2x8", "--backend", "reference",
        "--out", str(tmp_path / "out"), tmp=tmp_path,
    )  # fmt: skip
    assert code == 1
    found = report["localization"]
    assert (found["module"], found["module_type"], found["op_types"]) == (
        "act",
        "LogSoftmax",
        ["LogSoftmax"],
    )
    assert found["blame"] == "runtime" and "cpu" in found["agreeing_backends"]
    assert np.isinf(_reproduces(found["repro"], "reference", tmp_path))


def test_a_clean_file_has_nothing_to_localize(zoo_file, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, report, stdout = _localize(
        "combinednn", "--onnx", str(zoo_file("combinednn", "torchscript")), "--backend", "cpu",
        "--out", str(out), tmp=tmp_path,
    )  # fmt: skip
    assert code == 0
    assert report["status"] == "pass" and report["localization"] is None
    assert "no divergence" in stdout
    assert not (out / "combinednn.file.cpu").exists()


def test_what_cannot_be_localized_is_one_line(zoo_file, tmp_path: Path) -> None:
    bad = scale_initializer(zoo_file("combinednn"), tmp_path / "bad.onnx", name="fc2.weight")
    done = run_nnkit("localize", "combinednn", "--onnx", str(bad), "--backend", "cpu",
                     "--case", "batch=7", timeout=300)  # fmt: skip
    assert_one_line_error(done, "'batch=7'", "'batch=2'")
    done = run_nnkit("localize", "combinednn", "--backend", "torch", timeout=60)
    assert_one_line_error(done, "torch")


def test_assert_parity_says_where(zoo_file, tmp_path: Path) -> None:
    from nnkit.testing import assert_parity

    bad = scale_initializer(zoo_file("combinednn"), tmp_path / "bad.onnx", name="fc1.weight")
    with pytest.raises(AssertionError) as caught:
        assert_parity("combinednn", onnx=bad, backends=["cpu"], localize=True)
    assert "first divergence: fc1 (Linear)" in str(caught.value)
    assert "blame: export" in str(caught.value)


def test_a_mismatch_without_values_to_trace_is_not_found(zoo_file, tmp_path: Path) -> None:
    """A file that bakes in the batch (its Reshape's shape is [2, 4096]) runs at batch 2
    only: the other cases mismatch without values to compare, and the localization says
    so (exit 1: the cell does fail)."""
    from onnx import numpy_helper

    model = onnx.load(str(zoo_file("combinednn", "torchscript")))
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    const = next(n for n in model.graph.node if reshape.input[1] in n.output)
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([2, 4096], np.int64)))
    bad = tmp_path / "baked.onnx"
    onnx.save(model, str(bad))
    code, report, stdout = _localize(
        "combinednn", "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path
    )
    assert code == 1 and report["status"] == "mismatch"
    found = report["localization"]
    assert found["status"] == "not_found" and found["case"] == "batch=1"
    assert "no mismatching case compared values" in found["message"]
    assert "localization: not found" in stdout


def test_a_file_with_its_own_input_names(zoo_file, tmp_path: Path) -> None:
    """A file exported elsewhere names its input ``image``, not ``x``: matched by
    position, as the cell matches it, and said."""
    bad = scale_initializer(zoo_file("combinednn"), tmp_path / "bad.onnx", name="fc2.weight")
    model = onnx.load(str(bad))
    for node in model.graph.node:
        node.input[:] = ["image" if n == "x" else n for n in node.input]
    model.graph.input[0].name = "image"
    onnx.save(model, str(bad))
    code, report, _ = _localize("combinednn", "--onnx", str(bad), "--backend", "cpu", tmp=tmp_path)
    assert code == 1
    found = report["localization"]
    assert (found["module"], found["blame"]) == ("fc2", "export")
    assert any("matched by position" in n and "'x'='image'" in n for n in found["notes"])
