"""Export: every zoo model with both exporters, users' models, atomic writes."""

from __future__ import annotations

import subprocess
import sys

import onnx
import onnxruntime as ort
import pytest

from nnkit.check import check_file
from nnkit.errors import ExportError, SpecError
from nnkit.export import EXPORTERS, export_model
from nnkit.models import ZOO
from nnkit.resolve import resolve_model
from nnkit.spec import parse_spec
from tests.conftest import assert_one_line_error, run_cli


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_exports_valid_files_with_named_symbolic_io(zoo_file, name, exporter):
    path = zoo_file(name, exporter)
    assert check_file(path), check_file(path).errors
    proto = onnx.load(str(path))
    entry = ZOO[name]
    assert [i.name for i in proto.graph.input] == [s.name for s in entry.inputs]
    assert [o.name for o in proto.graph.output] == list(entry.outputs)
    for value, spec in zip(proto.graph.input, entry.inputs, strict=True):
        assert _dims(value) == [d.label if hasattr(d, "label") else d for d in spec.dims]
    # Every output axis that follows batch is declared 'batch', not a node's name or a number.
    for out in proto.graph.output:
        assert "batch" in _dims(out), (out.name, _dims(out))
        assert not any(isinstance(d, str) and d not in ("batch", "seq") for d in _dims(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["nnkit.exporter"] == exporter
    assert meta["nnkit.model"] == name
    assert meta["nnkit.torch_version"].startswith("2.")
    assert "nnkit.version" in meta


def test_recurrent_sequence_axis_is_declared_dynamic_and_runs_at_other_lengths(zoo_file):
    # The dynamo exporter declares it as the example's length (7); nnkit declares 'seq'.
    proto = onnx.load(str(zoo_file("lstm", "dynamo")))
    assert _dims(proto.graph.output[0]) == ["batch", "seq", 20]
    session = ort.InferenceSession(
        str(zoo_file("lstm", "dynamo")), providers=["CPUExecutionProvider"]
    )
    import numpy as np

    out = session.run(None, {"x": np.zeros((3, 11, 10), np.float32)})
    assert [o.shape for o in out] == [(3, 11, 20), (2, 3, 20), (2, 3, 20)]


def test_export_reports_the_declared_shape_it_fixed(tmp_path):
    result = export_model(resolve_model("gru"), tmp_path / "gru.onnx", exporter="dynamo")
    assert result.fixed_outputs == ("output[1]: 7 -> seq",)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_user_model_from_a_file_exports_with_dynamic_batch(user_model_file, tmp_path, exporter):
    out = tmp_path / "user.onnx"
    result = run_cli(
        "export",
        f"{user_model_file}:TwoLayer",
        "-o",
        str(out),
        "--input",
        "x:batch=4x6",
        "--exporter",
        exporter,
    )
    assert result.exit_code == 0, result.stderr
    assert f"exported {user_model_file}:TwoLayer with {exporter}" in result.stdout
    proto = onnx.load(str(out))
    assert _dims(proto.graph.input[0]) == ["batch", 6]
    assert _dims(proto.graph.output[0]) == ["batch", 3]
    assert proto.graph.output[0].name == "output"
    import numpy as np

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((9, 6), np.float32)})[0].shape == (9, 3)


def test_factory_function_and_module_reference(user_model_file, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(user_model_file.parent))
    result = run_cli(
        "export", "user_net:make", "-o", str(tmp_path / "m.onnx"), "--input", "x:batch=2x6"
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m.onnx").is_file()


def test_opset_is_honoured(tmp_path):
    result = export_model(
        resolve_model("relu"), tmp_path / "r.onnx", exporter="torchscript", opset=17
    )
    assert result.opset == 17
    assert check_file(result.path)


def test_failed_export_leaves_no_file_and_keeps_an_existing_one(tmp_path):
    src = tmp_path / "dyn.py"
    src.write_text(
        "import torch\n"
        "class Fixed(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        torch._check(x.shape[0] == 2)\n"
        "        return x * 2\n"
    )
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous contents")
    with pytest.raises(ExportError) as info:
        export_model(resolve_model(f"{src}:Fixed", inputs=[parse_spec("x:batch=2x3")]), target)
    assert "the dynamo exporter failed" in info.value.message
    assert "try --exporter torchscript or fixed shapes" in info.value.message
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.py", "out.onnx"]


def test_exporter_noise_is_kept_from_the_user(tmp_path):
    # In a process of its own, as a user's script runs: under pytest, torch's log handler
    # writes to pytest's capture object, past the fds nnkit redirects.
    script = f"""
from nnkit.export import export_model
from nnkit.resolve import resolve_model
export_model(resolve_model("linear"), {str(tmp_path / "l.onnx")!r}, exporter="dynamo")
export_model(resolve_model("lstm"), {str(tmp_path / "s.onnx")!r}, exporter="torchscript")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_warnings_from_torchs_own_modules_name_the_file_from_the_package_on(tmp_path):
    lstm = export_model(resolve_model("lstm"), tmp_path / "s.onnx", exporter="torchscript")
    inside_torch = [w for w in lstm.warnings if "torch/nn/modules/rnn.py:" in w]
    assert inside_torch and all(w.startswith("TracerWarning at torch/") for w in inside_torch)


def test_spec_the_model_cannot_take_is_refused_before_export(tmp_path):
    with pytest.raises(SpecError, match="cannot take inputs x:batch=2x7:float32"):
        resolve_model("linear", inputs=[parse_spec("x:batch=2x7")])


BAD_EXPORTS = [
    (["nosuchmodel"], ["unknown model 'nosuchmodel'", "linear", "combinednn"]),
    (["missing.py:Net", "--input", "x:2"], ["model file 'missing.py' does not exist"]),
    (["{syntax}:Net", "--input", "x:2"], ["syntax error at line 1"]),
    (["{user}:Nope", "--input", "x:2x6"], ["has no 'Nope'", "TwoLayer", "make"]),
    (["{user}:NOT_A_MODEL", "--input", "x:2x6"], ["is not an nn.Module class", "(it is a 'int')"]),
    (["{user}:NeedsArgs", "--input", "x:2x6"], ["cannot build", "without arguments"]),
    (["{user}:TwoLayer"], ["not in the zoo", "--input"]),
    (["{user}:TwoLayer", "--input", "x:2x7"], ["cannot take inputs x:2x7:float32"]),
    (["linear", "--input", "x:batch"], ["bad dimension 'batch'"]),
    (["linear", "--input", "x:2x10:complex"], ["valid dtypes are"]),
    (["no_such_pkg.mod:make", "--input", "x:2"], ["no module named 'no_such_pkg'"]),
]


@pytest.mark.parametrize(("args", "needles"), BAD_EXPORTS, ids=[a[0][0] for a in BAD_EXPORTS])
def test_bad_export_requests_are_one_line_exit_2_and_no_file(
    user_model_file, tmp_path, args, needles
):
    syntax = tmp_path / "broken.py"
    syntax.write_text("def (:\n")
    args = [a.format(user=user_model_file, syntax=syntax) for a in args]
    out = tmp_path / "out.onnx"
    assert_one_line_error(run_cli("export", args[0], "-o", str(out), *args[1:]), *needles)
    assert not out.exists()


def test_unwritable_output_path_is_refused_before_exporting(tmp_path):
    assert_one_line_error(
        run_cli("export", "linear", "-o", str(tmp_path / "no" / "such" / "dir.onnx")),
        "does not exist",
    )
    assert_one_line_error(run_cli("export", "linear", "-o", str(tmp_path)), "is a directory")


def test_recurrent_models_export_again_in_the_same_process(tmp_path):
    # torch 2.13 keeps a stale dispatch cache after the first dynamo export of an RNN;
    # nnkit clears it, so a second export (parity, bench, a notebook) still works.
    import numpy as np

    for name in ("lstm", "gru", "lstm"):
        path = tmp_path / f"{name}.onnx"
        export_model(resolve_model(name), path, exporter="dynamo")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.run(None, {"x": np.zeros((1, 11, 10), np.float32)})[0].shape == (1, 11, 20)


def test_user_models_build_the_same_weights_every_time(tmp_path):
    src = tmp_path / "rand.py"
    src.write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
    )
    import torch

    spec = [parse_spec("x:batch=2x4")]
    torch.manual_seed(1)  # whatever the caller's RNG state
    a = resolve_model(f"{src}:Net", inputs=spec).module.fc.weight
    torch.manual_seed(2)
    b = resolve_model(f"{src}:Net", inputs=spec).module.fc.weight
    assert a.equal(b)


EXPORT_FAULTS = """\
import torch
from torch import nn

class BakedBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, x):
        return self.fc(x).reshape(int(x.shape[0]), 4, 3)

class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x

class BatchOfTwo(nn.Module):
    def forward(self, x):
        if x.shape[0] == 2:
            return x * 2
        return x

class Reshaped(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 256)

    def forward(self, x):
        y = self.fc(x).reshape(x.shape[0], 2, -1).transpose(1, 2)
        return y.reshape(x.shape[0], -1, x.shape[1] * 16)
"""


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "export_faults.py"
    path.write_text(EXPORT_FAULTS)
    return path


def test_the_tracers_warnings_are_notes_with_the_users_line(faults, tmp_path):
    result = run_cli(
        "export", f"{faults}:BakedBatch", "--input", "x:batch=2x12", "--exporter", "torchscript",
        "-o", str(tmp_path / "b.onnx"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"note: TracerWarning at {faults}:10: Converting a tensor to a Python integer" in (
        result.stderr
    )
    assert "constant in the file" in result.stderr


def test_an_export_error_keeps_the_users_line_and_drops_hints_that_would_not_help(faults, tmp_path):
    err = assert_one_line_error(
        run_cli("export", f"{faults}:DataDependent", "--input", "x:batch=2x4", "-o", str(tmp_path / "d.onnx")),
        "the dynamo exporter failed",
        f"at {faults}:14 in forward: if x.sum() > 0:",
        "try --exporter torchscript",
    )  # fmt: skip
    assert "fixed shapes" not in err  # it fails the same way with fixed shapes: tried
    assert "tmp" not in err.split("try")[1]  # no temporary path cited


def test_fixed_shapes_are_suggested_only_where_they_export(faults, tmp_path):
    assert_one_line_error(
        run_cli("export", f"{faults}:BatchOfTwo", "--input", "x:batch=2x4", "-o", str(tmp_path / "t.onnx")),
        "fixed shapes (no label= in --input): the export succeeds without them",
    )  # fmt: skip


def test_debug_shows_the_exporters_traceback(faults, tmp_path):
    result = run_cli(
        "--debug", "export", f"{faults}:DataDependent", "--input", "x:batch=2x4", "-o",
        str(tmp_path / "d.onnx"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "GuardOnDataDependentSymNode" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: the dynamo exporter failed")


def test_stack_traces_are_stripped_unless_kept(tmp_path):
    def keys(path):
        return {p.key for n in onnx.load(str(path)).graph.node for p in n.metadata_props}

    plain, kept = tmp_path / "plain.onnx", tmp_path / "kept.onnx"
    assert run_cli("export", "linear", "-o", str(plain)).exit_code == 0
    assert run_cli("export", "linear", "-o", str(kept), "--keep-stack-traces").exit_code == 0
    assert "pkg.torch.onnx.stack_trace" not in keys(plain)
    assert "pkg.torch.onnx.name_scopes" in keys(plain)  # module scopes stay: they map nodes
    assert "pkg.torch.onnx.stack_trace" in keys(kept)
    assert str(tmp_path.parent) not in plain.read_bytes().decode("latin-1")


def test_exporter_named_dims_are_declared_by_what_the_model_does(faults, tmp_path):
    out = tmp_path / "r.onnx"
    result = run_cli(
        "export", f"{faults}:Reshaped", "--input", "x:batch=2x8", "--exporter", "torchscript",
        "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (output,) = onnx.load(str(out)).graph.output
    assert _dims(output) == ["batch", 2, 128]  # was [batch, Reshapeoutput_dim_1, ...]
    assert "Reshapeoutput_dim_2 -> 128" in result.stderr


def test_the_models_source_is_stamped_relative_to_the_file(user_model_file, tmp_path):
    out = tmp_path / "sub" / "m.onnx"
    out.parent.mkdir()
    result = run_cli("export", f"{user_model_file}:make", "--input", "x:batch=2x6", "-o", str(out))
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnkit.model_file"] == "../user_net.py"
