"""nnkit check: the verdict, the summary, and files that are not models."""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto, helper

from nnkit.check import check_file, read_io
from tests.conftest import assert_one_line_error, run_cli


def _broken_model() -> onnx.ModelProto:
    # Add of float and int64: fails type checking.
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "broken",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_valid_zoo_file_summary(zoo_file):
    result = check_file(zoo_file("combinednn", "dynamo"))
    assert result
    s = result.summary
    plain = {"kind": "tensor", "type": "float32"}
    assert s.inputs == [{"name": "x", "shape": ["batch", 3, 32, 32], "dtype": "float32", **plain}]
    assert s.outputs == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32", **plain}]
    # conv 16*3*3*3+16, fc1 4096*120+120, fc2 120*84+84, fc3 84*10+10
    assert s.parameter_count == 448 + 491640 + 10164 + 850
    assert s.operators["Conv"] == 1 and s.operators["MaxPool"] == 1
    assert s.opsets["ai.onnx"] >= 18
    assert s.metadata["nnkit.model"] == "combinednn"


def test_check_command_prints_summary_and_json(zoo_file):
    path = zoo_file("lstm", "torchscript")
    text = run_cli("check", str(path))
    assert text.exit_code == 0
    assert f"{path}: valid" in text.stdout
    assert "LSTM x2" in text.stdout and "[batch, seq, 10]" in text.stdout
    data = json.loads(run_cli("check", str(path), "--json").stdout)
    assert data["valid"] is True and data["errors"] == []
    assert [o["name"] for o in data["summary"]["outputs"]] == ["output", "h_n", "c_n"]
    assert data["summary"]["metadata"]["nnkit.exporter"] == "torchscript"


def test_invalid_model_is_exit_1_with_the_checker_message(tmp_path):
    path = tmp_path / "broken.onnx"
    onnx.save(_broken_model(), str(path))
    result = run_cli("check", str(path))
    assert result.exit_code == 1
    assert "INVALID" in result.stdout
    data = json.loads(run_cli("check", str(path), "--json").stdout)
    assert data["valid"] is False and data["errors"]


def test_unreadable_files_are_exit_2(tmp_path):
    assert_one_line_error(run_cli("check", str(tmp_path / "none.onnx")), "does not exist")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli("check", str(empty)), "is empty")
    assert_one_line_error(run_cli("check", str(tmp_path)), "is not a file")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is not protobuf \x00\x01" * 10)
    assert_one_line_error(run_cli("check", str(junk)), "is not an ONNX model")


def test_truncated_model_is_refused(zoo_file, tmp_path):
    data = zoo_file("combinednn", "dynamo").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    result = run_cli("check", str(cut))
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.stderr


def test_missing_external_data_is_named(tmp_path):
    from tests._faults import external_data_model

    path = external_data_model(tmp_path / "ext.onnx", location="ext.onnx.data")
    assert check_file(path)
    (tmp_path / "ext.onnx.data").unlink()
    assert_one_line_error(
        run_cli("check", str(path)), "external data that is missing", "ext.onnx.data"
    )


def test_read_io_lists_real_inputs_only(zoo_file):
    inputs, outputs = read_io(zoo_file("gru", "torchscript"))
    assert [i.name for i in inputs] == ["x"]
    assert [(o.name, o.dims) for o in outputs] == [
        ("output", ("batch", "seq", 20)),
        ("h_n", (2, "batch", 20)),
    ]
