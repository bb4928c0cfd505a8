"""Bad input never crashes, never corrupts, always explains: through the CLI."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests._faults import external_data_model
from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def relu_file(zoo_file):
    return str(zoo_file("relu", "torchscript"))


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_pickled_and_object_arrays_are_refused_never_unpickled(relu_file, tmp_path):
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.npy"
    # A pickle that would create a file if anything unpickled it.
    payload = pickle.dumps(type("P", (), {"__reduce__": lambda s: (open, (str(marker), "w"))})())
    evil.write_bytes(payload)
    assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--input", f"x={evil}"), "not a readable"
    )
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--input", f"x={objects}"), str(objects)
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "not a readable"), (b"just text, not numpy", "not a readable")],
)
def test_files_that_are_not_arrays(relu_file, tmp_path, content, needle):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(content)
    assert_one_line_error(run_cli("infer", relu_file, "-p", "cpu", "--input", f"x={bad}"), needle)


def test_npz_feeds_and_a_missing_name(relu_file, tmp_path):
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.ones((3, 50), np.float32))
    assert run_cli("infer", relu_file, "-p", "cpu", "--input", str(feeds)).exit_code == 0
    assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--input", f"y={feeds}"), "has no array 'y'", "x"
    )


def test_nan_and_inf_inputs_are_allowed_and_reported(relu_file, tmp_path):
    x = np.zeros((2, 50), np.float32)
    x[0, 0], x[1, 1], x[1, 2] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "x.npy", x)
    result = run_cli("infer", relu_file, "-p", "cpu", "--input", f"x={tmp_path / 'x.npy'}")
    assert result.exit_code == 0, result.stderr
    assert "note: input x holds 1 NaN and 2 Inf values" in result.stdout
    data = json.loads(
        run_cli(
            "infer", relu_file, "-p", "cpu", "--input", f"x={tmp_path / 'x.npy'}", "--json"
        ).stdout
    )
    assert (data["inputs"][0]["nan_count"], data["inputs"][0]["inf_count"]) == (1, 2)
    assert (data["outputs"][0]["nan_count"], data["outputs"][0]["inf_count"]) == (1, 1)


def _not_a_model(tmp_path):
    # Valid protobuf of another message: a TensorProto.
    path = tmp_path / "tensor.onnx"
    path.write_bytes(onnx.numpy_helper.from_array(np.ones(4, np.float32), "t").SerializeToString())
    return path


def _checker_rejects(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["nowhere"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "dangling.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10),
        str(path),
    )
    return path


@pytest.mark.parametrize(
    "make", [_not_a_model, _checker_rejects], ids=["not-a-model", "checker-rejects"]
)
@pytest.mark.parametrize("provider", ["cpu", "openvino", "tract", "reference"])
def test_bad_model_files_never_reach_a_runtime(tmp_path, make, provider):
    path = make(tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "out.npz"
    err = assert_one_line_error(
        run_cli("infer", str(path), "-p", provider, "--save", str(out)), str(path)
    )
    assert "not" in err
    assert _snapshot(tmp_path) == before


def test_truncated_model_through_infer_and_check(zoo_file, tmp_path):
    data = zoo_file("conv2d", "dynamo").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 3])
    assert_one_line_error(run_cli("infer", str(cut), "-p", "cpu"), "cut.onnx")
    assert run_cli("check", str(cut)).exit_code in (1, 2)


def test_existing_output_is_untouched_when_the_run_fails(relu_file, tmp_path):
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous")
    assert_one_line_error(run_cli("infer", relu_file, "-p", "cuda", "--save", str(out)), "cuda")
    assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--shape", "x:2x51", "--save", str(out)), "50"
    )
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_ctrl_c_during_export_leaves_nothing_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnkit", "export", "combinednn", "-o", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.onnx.*.tmp")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the export finished before the signal arrived")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Aborted."
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == ["out.onnx"]
    assert target.read_bytes() == b"previous"


def _random_bytes(tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path


def _external_data_missing(tmp_path):
    path = external_data_model(tmp_path / "ext.onnx", location="ext.weights")
    (tmp_path / "ext.weights").unlink()
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_random_bytes, "is not an ONNX model"),
        (_empty, "is empty"),
        (_external_data_missing, "external data that is missing: ext.weights"),
    ],
    ids=["random-bytes", "empty", "external-data-missing"],
)
@pytest.mark.parametrize("provider", ["cpu", "openvino", "tract", "reference"])
def test_unreadable_model_files_are_refused_by_infer(tmp_path, make, needle, provider):
    path = make(tmp_path)
    before = _snapshot(tmp_path)
    assert_one_line_error(
        run_cli("infer", str(path), "-p", provider, "--save", str(tmp_path / "o.npz")), needle
    )
    assert _snapshot(tmp_path) == before
