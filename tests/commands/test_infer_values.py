"""``nnkit infer`` and ``nnkit check`` on every value kind: strings, low-precision dtypes,
sequences, optionals, scalars; the runtime's own log folded into one line."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nnkit.backends import probe
from nnkit.npzfile import load_values
from tests.conftest import assert_one_line_error, run_cli, run_nnkit
from tests.onnx_node import load_case, same

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "onnx_node"


def model(case: str) -> str:
    return str(SAMPLE / case / "model.onnx")


def requires(backend: str) -> None:
    if not probe(backend):
        pytest.skip(probe(backend).reason)


def test_string_outputs_are_shown_not_summed_and_json_lists_them(tmp_path):
    result = run_cli("infer", model("test_string_concat"), "-p", "cpu", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "x [2] string, y [2] string" in lines[0]  # string inputs are generated (words)
    row = next(ln for ln in lines if ln.startswith("result "))
    assert row.split() == ["result", "[2]", "string", "-", "-", "-", "-", "-"]
    shown = next(ln for ln in lines if ln.startswith("result: "))
    data = json.loads(
        run_cli("infer", model("test_string_concat"), "-p", "cpu", "--seed", "3", "--json").stdout
    )
    out = data["outputs"][0]
    assert out["dtype"] == "string" and out["min"] is None and out["kind"] == "tensor"
    assert shown == "result: " + ", ".join(map(repr, out["values"]))
    assert all(isinstance(v, str) and v.isalpha() for v in out["values"])


@pytest.mark.parametrize(
    "given", [np.array(["abc", "é"]), np.array([b"abc", "é".encode()])], ids=["U", "S"]
)
def test_string_inputs_come_from_u_or_s_arrays(tmp_path, given):
    np.savez(tmp_path / "in.npz", x=given, y=np.array(["1", "2"]))
    out = tmp_path / "out.npz"
    args = ["infer", model("test_string_concat"), "--input", str(tmp_path / "in.npz")]
    result = run_cli(*args, "-p", "cpu", "--save", str(out))
    assert result.exit_code == 0, result.stderr
    saved = load_values(out)["result"]
    assert saved.dtype.kind == "U" and saved.tolist() == ["abc1", "é2"]


def test_an_object_array_is_refused_as_a_pickle(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.array(["a", "b"], dtype=object), y=np.array(["1", "2"]))
    result = run_cli(
        "infer", model("test_string_concat"), "-p", "cpu", "--input", str(tmp_path / "in.npz")
    )
    assert_one_line_error(result, "in.npz")


def test_low_precision_inputs_from_a_plain_savez_and_a_wrong_dtype_refused(tmp_path):
    case = load_case(SAMPLE / "test_cast_BFLOAT16_to_FLOAT")
    x = case.inputs["input"]
    np.savez(tmp_path / "void.npz", input=x)  # numpy stores bfloat16 as raw |V2
    with np.load(tmp_path / "void.npz") as f:
        assert f["input"].dtype == np.dtype("V2")
    out = tmp_path / "out.npz"
    for backend in ("cpu", "openvino", "reference"):
        result = run_cli(
            "infer", str(case.model), "-p", backend, "--input", str(tmp_path / "void.npz"),
            "--save", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, (backend, result.stderr)
        assert same(case.expected["output"], load_values(out)["output"]) is None, backend
    np.save(tmp_path / "i16.npy", x.view(np.int16))
    result = run_cli(
        "infer", str(case.model), "-p", "cpu", "--input", f"input={tmp_path / 'i16.npy'}"
    )
    assert_one_line_error(result, "declares bfloat16, given int16", "uint16")


def test_low_precision_outputs_are_saved_with_their_dtype(tmp_path):
    out = tmp_path / "out.npz"
    case = load_case(SAMPLE / "test_cast_FLOAT_to_FLOAT8E5M2")
    np.savez(tmp_path / "in.npz", input=case.inputs["input"])
    for backend in ("cpu", "openvino", "reference"):
        result = run_cli(
            "infer", str(case.model), "-p", backend, "--input", str(tmp_path / "in.npz"),
            "--save", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        got = load_values(out)["output"]
        assert got.dtype == ml_dtypes.float8_e5m2, backend
        with np.load(out) as plain:  # readable by numpy alone: the raw bits
            assert plain["output"].dtype == np.uint8


@pytest.mark.parametrize("backend", ["cpu", "openvino", "tract", "reference"])
def test_scalar_inputs_keep_rank_0_timed_runs_too(tmp_path, backend):
    requires(backend)
    case = load_case(SAMPLE / "test_clip_default_int8_max")  # Clip(x, max=<a scalar>)
    np.savez(tmp_path / "in.npz", **case.inputs)
    out = tmp_path / "out.npz"
    result = run_cli(
        "infer", str(case.model), "-p", backend, "--input", str(tmp_path / "in.npz"),
        "--save", str(out), "--iterations", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "max [] int8" in result.stdout.splitlines()[0]
    assert same(case.expected["y"], load_values(out)["y"]) is None


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_a_sequence_of_unequal_tensors_is_saved_and_read_back(tmp_path, backend):
    case = load_case(SAMPLE / "test_split_to_sequence_2")
    np.savez(tmp_path / "in.npz", **case.inputs)
    out = tmp_path / "out.npz"
    result = run_cli(
        "infer", str(case.model), "-p", backend, "--input", str(tmp_path / "in.npz"),
        "--save", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    seq = json.loads(result.stdout)["outputs"][0]
    assert seq["kind"] == "sequence" and seq["shape"] is None
    assert [e["shape"] for e in seq["elements"]] == [list(a.shape) for a in case.expected["seq"]]
    assert len({tuple(a.shape) for a in case.expected["seq"]}) > 1  # unequal, not stackable
    with np.load(out) as plain:
        assert sorted(plain.files) == ["seq.0", "seq.1", "seq.len"]
    from nnkit.onnxfile import read_io
    from nnkit.values import bind_values

    back = bind_values(read_io(case.model)[1], load_values(out), what="output")
    assert same(case.expected["seq"], back["seq"]) is None


def test_sequence_and_optional_inputs_from_the_documented_layout(tmp_path):
    case = load_case(SAMPLE / "test_sequence_insert_at_back")
    feeds = {f"sequence.{i}": a for i, a in enumerate(case.inputs["sequence"])}
    np.savez(tmp_path / "in.npz", tensor=case.inputs["tensor"], **feeds)
    result = run_cli("infer", str(case.model), "-p", "cpu", "--input", str(tmp_path / "in.npz"))
    assert result.exit_code == 0, result.stderr
    assert "sequence seq of 3 int64" in result.stdout.splitlines()[0]
    assert "output_sequence[3]  [3]" in result.stdout  # one row per element
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    result = run_cli(
        "infer", model("test_optional_has_element_empty_optional_input"), "-p", "reference",
        "--input", str(empty),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "optional_input none (empty optional)" in result.stdout


def test_a_sequence_input_is_not_generated_and_the_message_says_how_to_give_it():
    result = run_cli("infer", model("test_identity_sequence"), "-p", "reference")
    assert_one_line_error(result, "'x' is a seq(float32)", "x.0, x.1", "--input FILE.npz")


def zipmap_model(path: Path) -> None:
    node = helper.make_node(
        "ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_strings=["a", "b"]
    )
    seq_map = helper.make_sequence_type_proto(
        helper.make_map_type_proto(
            TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, None)
        )
    )
    graph = helper.make_graph(
        [node],
        "zipmap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_value_info("y", seq_map)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=10), str(path))


def test_check_describes_sequences_optionals_and_maps(tmp_path):
    text = run_cli("check", model("test_optional_get_element_optional_sequence"))
    assert text.exit_code == 0, text.stderr
    assert "optional(seq(int32))" in text.stdout and "undefined" not in text.stdout
    data = json.loads(
        run_cli("check", model("test_optional_get_element_optional_sequence"), "--json").stdout
    )
    [given] = data["summary"]["inputs"]
    assert given["kind"] == "optional sequence" and given["type"] == "optional(seq(int32))"
    assert given["dtype"] == "int32" and given["shape"] == [4]
    zipmap = tmp_path / "zipmap.onnx"
    zipmap_model(zipmap)
    data = json.loads(run_cli("check", str(zipmap), "--json").stdout)
    assert data["summary"]["outputs"][0]["type"] == "seq(map(string, float32))"
    assert "seq(map(string, float32))" in run_cli("check", str(zipmap)).stdout


def test_a_map_output_is_refused_in_one_line(tmp_path):
    zipmap = tmp_path / "zipmap.onnx"
    zipmap_model(zipmap)
    result = run_cli("infer", str(zipmap), "-p", "cpu", "--save", str(tmp_path / "o.npz"))
    assert_one_line_error(result, "cpu: cannot run", "element 0 is a dict, not a tensor")
    assert not (tmp_path / "o.npz").exists()


def test_a_kernel_failing_at_run_time_is_one_line_without_onnxruntime_log(tmp_path):
    """onnxruntime logs an ANSI-coloured line from native code; nnkit folds it in."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_it")],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
    )
    path = tmp_path / "reshape.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10),
        str(path),
    )
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 3), np.float32), shape=np.array([4, 4]))
    result = run_nnkit("infer", str(path), "-p", "cpu", "--input", str(tmp_path / "in.npz"))
    err = assert_one_line_error(
        result, "the Reshape node 'reshape_it' failed", "Input shape:{2,3}, requested shape:{4,4}"
    )
    assert "\x1b[" not in err and "onnxruntime_src" not in err
