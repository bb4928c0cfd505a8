"""nnkit check: the verdict, the summary, and files that are not models."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nnkit.check import check_file
from nnkit.onnxfile import read_io
from tests._hostile import external_tensor_model, peak_rss
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


# -- external data: checked from sizes, never read, never outside the folder -----------


def _lies(tmp_path):
    """(name, model path, needle) for each way external data can lie or escape."""
    data = tmp_path / "w.bin"
    data.write_bytes(b"\0" * 40)
    (tmp_path / "short.bin").write_bytes(b"\0" * 20)
    (tmp_path / "long.bin").write_bytes(b"\0" * 400)
    (tmp_path / "link.bin").symlink_to(data)
    (tmp_path / "up").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(tmp_path / "fifo.bin")  # opening it would block: it must not be opened
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"\0" * 40)
    cases = {
        "short": ({"location": "short.bin"}, "runs from offset 0 to the end of the file: 20 bytes"),
        "long-without-length": ({"location": "long.bin"}, "needs 40 bytes"),
        "length-too-small": ({"location": "w.bin", "length": "20"}, "length 20 does not match"),
        "offset-past-end": (
            {"location": "w.bin", "offset": "100", "length": "40"},
            "offset 100 is past the end",
        ),
        "range-past-end": ({"location": "w.bin", "offset": "8", "length": "40"}, "holds only 32"),
        "negative-offset": ({"location": "w.bin", "offset": "-1"}, "not a non-negative integer"),
        "absolute": ({"location": str(outside)}, "is an absolute path"),
        "dotdot": ({"location": f"../{outside.name}"}, "climbs out of the model's folder"),
        "symlink": ({"location": "link.bin"}, "is a symbolic link"),
        "through-a-linked-folder": (
            {"location": "up/passwd"},
            "resolves outside the model's folder",
        ),
        "fifo": ({"location": "fifo.bin"}, "is not a file"),
        "no-location": ({"location": ""}, "no file named"),
    }
    for name, (fields, needle) in cases.items():
        location = fields.pop("location")
        path = external_tensor_model(tmp_path / f"{name}.onnx", location=location, **fields)
        yield name, path, needle


def test_external_data_that_lies_or_escapes_is_invalid(tmp_path):
    for name, path, needle in _lies(tmp_path):
        result = run_cli("check", str(path))
        assert result.exit_code == 1, (name, result.stdout, result.stderr)
        assert f"{path}: INVALID: " in result.stdout and needle in result.stdout, name
        data = json.loads(run_cli("check", str(path), "--json").stdout)
        assert data["valid"] is False and needle in data["errors"][0], name


@pytest.mark.parametrize("provider", ["cpu", "openvino", "tract", "reference"])
def test_no_runtime_is_handed_lying_external_data(tmp_path, provider):
    for name, path, needle in _lies(tmp_path):
        (
            assert_one_line_error(
                run_cli("infer", str(path), "-p", provider),
                str(path),
                "not a valid ONNX model",
                needle,
            ),
            name,
        )


def test_sound_external_data_is_valid(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\1" * 100)
    exact = external_tensor_model(tmp_path / "exact.onnx", location="w.bin", offset="60")
    ranged = external_tensor_model(
        tmp_path / "ranged.onnx", location="w.bin", offset="8", length="40"
    )
    assert check_file(exact) and check_file(ranged)
    result = run_cli("infer", str(ranged), "-p", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["shape"] == [10]


def test_tensors_in_attributes_are_checked_too(tmp_path):
    from onnx import numpy_helper

    value = numpy_helper.from_array(np.ones(10, np.float32), "c")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value="/etc/hostname")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=value)],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10])],
    )
    path = tmp_path / "attr.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10),
        str(path),
    )
    result = run_cli("check", str(path))
    assert result.exit_code == 1 and "is an absolute path" in result.stdout


def test_a_2_gb_external_file_is_checked_without_reading_it(tmp_path):
    # Sparse: 2 GiB long, nothing on disk. Reading it whole took 4.1 GB of memory.
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)
    lying = external_tensor_model(tmp_path / "lying.onnx", location="big.bin")
    code, stdout, _, peak = peak_rss([sys.executable, "-m", "nnkit", "check", str(lying)])
    assert code == 1 and "INVALID" in stdout and "2147483648 bytes" in stdout
    assert peak < 300 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"
    at_the_end = external_tensor_model(
        tmp_path / "end.onnx", location="big.bin", offset=str(2 * 1024**3 - 40), length="40"
    )
    code, stdout, _, peak = peak_rss([sys.executable, "-m", "nnkit", "check", str(at_the_end)])
    assert code == 0 and ": valid" in stdout, stdout
    assert peak < 300 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"
