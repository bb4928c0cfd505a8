"""Bad input never crashes, never corrupts, always explains: through the CLI."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests._faults import external_data_model
from tests._hostile import device_node, odd_names_model
from tests.conftest import assert_one_line_error, run_cli, unavailable


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


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("-p", "cuda"), "cuda"), (("-p", "cpu", "--shape", "x:2x51"), "50")],
    ids=["backend-not-available", "bad-shape"],
)
def test_existing_output_is_untouched_when_the_run_fails(relu_file, tmp_path, args, needle):
    if "cuda" in args:
        unavailable("cuda")
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous")
    assert_one_line_error(run_cli("infer", relu_file, *args, "--save", str(out)), needle)
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


# -- devices and links through every command that writes --------------------------------


#: Every option that writes a file, as ``nnkit`` arguments with the path left off.
WRITERS = {
    "m.onnx": "export relu --exporter torchscript -o",
    "o.npz": "infer RELU -p cpu --save",
    "r.json": "parity relu --exporters torchscript --backends cpu --json",
    "r.md": "parity relu --exporters torchscript --backends cpu --markdown",
    "r.xml": "parity relu --exporters torchscript --backends cpu --junit",
    "b.json": "bench RELU --backends cpu --batch 1 --iterations 2 --json",
    "b.png": "bench RELU --backends cpu --batch 1 --iterations 2 --plot",
}


def _writer(name: str, relu_file: str, target: str | Path) -> list[str]:
    return [relu_file if w == "RELU" else w for w in WRITERS[name].split()] + [str(target)]


def test_every_output_option_writes_into_dev_null_and_keeps_it_a_device(relu_file, tmp_path):
    null = device_node(tmp_path, "null")  # /dev/null's device; a private node as root
    before = os.stat(null)
    for name in WRITERS:
        if name.endswith(".png"):
            continue  # a plot's format comes from its name's suffix
        result = run_cli(*_writer(name, relu_file, null))
        assert result.exit_code == 0, (name, result.stderr)
        after = os.stat(null)
        assert stat.S_ISCHR(after.st_mode), name
        assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev), name
    assert not list(null.parent.glob(f".{null.name}.*"))


def test_every_output_option_follows_a_symlink_and_keeps_it(relu_file, tmp_path):
    (tmp_path / "real").mkdir()
    for name in WRITERS:
        link = tmp_path / f"link-{name}"
        link.symlink_to(tmp_path / "real" / name)
        result = run_cli(*_writer(name, relu_file, link))
        assert result.exit_code == 0, (name, result.stderr)
        assert link.is_symlink(), name
        assert (tmp_path / "real" / name).stat().st_size > 0, name
    assert sorted(os.listdir(tmp_path / "real")) == sorted(WRITERS)


def test_a_fifo_receives_a_report(tmp_path):
    fifo = tmp_path / "report.pipe"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnkit",
            "parity",
            "relu",
            "--exporters",
            "torchscript",
            "--backends",
            "cpu",
            "--json",
            str(fifo),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open(fifo, "rb") as f:  # blocks until nnkit opens it for writing
            data = json.loads(f.read())
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert data["verdict"] == "pass"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_special_files_are_refused_before_any_work(relu_file, tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s.sock"))
    try:
        assert_one_line_error(
            run_cli("infer", relu_file, "-p", "cpu", "--save", str(tmp_path / "s.sock")),
            "it is a socket",
        )
    finally:
        server.close()
    assert_one_line_error(run_cli("export", "relu", "-o", str(tmp_path)), "is a directory")


# -- an output that is one of the inputs ----------------------------------------------------


def test_outputs_that_are_inputs_are_refused_before_any_work(relu_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(Path(relu_file).read_bytes())
    np.savez(tmp_path / "a.npz", x=np.ones((2, 50), np.float32))
    (tmp_path / "hard.npz").hardlink_to(tmp_path / "a.npz")
    (tmp_path / "soft.onnx").symlink_to("m.onnx")
    (tmp_path / "pic.png").symlink_to(model)
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\n\ndef make():\n    return nn.ReLU()\n")
    before = _snapshot(tmp_path)
    refused = [
        ("infer", "m.onnx", "-p", "cpu", "--input", "a.npz", "--save", "a.npz"),
        ("infer", "m.onnx", "-p", "cpu", "--input", "a.npz", "--save", "hard.npz"),
        ("infer", "m.onnx", "-p", "cpu", "--save", "./soft.onnx"),
        ("bench", "m.onnx", "--json", "m.onnx"),
        ("bench", "soft.onnx", "--plot", "pic.png"),
        ("parity", "relu", "--onnx", "m.onnx", "--json", "m.onnx"),
        ("parity", "relu", "--onnx", "m.onnx", "--markdown", "soft.onnx"),
        ("parity", "relu", "--json", "r.json", "--junit", "./r.json"),
        ("parity", "net.py:make", "--input", "x:2", "--junit", "net.py"),
        ("export", "net.py:make", "--input", "x:2", "-o", "net.py"),
    ]
    for args in refused:
        err = assert_one_line_error(run_cli(*args), args[-1].lstrip("./"))
        assert "same file" in err or "one file" in err, err
    assert _snapshot(tmp_path) == before


# -- OS errors on outputs ------------------------------------------------------------------


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_full_disk_is_not_blamed_on_the_exporter(full_disk, exporter):
    target = full_disk / "c.onnx"
    target.write_bytes(b"previous")
    err = assert_one_line_error(
        run_cli("export", "combinednn", "--exporter", exporter, "-o", str(target)),
        f"cannot write '{target}': No space left on device",
    )
    assert "try --exporter" not in err
    assert target.read_bytes() == b"previous"
    assert os.listdir(full_disk) == ["c.onnx"]


def test_dev_full_is_one_line_from_every_writer(relu_file, tmp_path):
    full = device_node(tmp_path, "full")  # /dev/full's device; a private node as root
    line = f"Error: cannot write '{full}': No space left on device"
    assert_one_line_error(run_cli("infer", relu_file, "-p", "cpu", "--save", str(full)), line)
    result = run_cli(*WRITERS["r.xml"].split(), str(full))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == line


@pytest.mark.parametrize("length", [243, 250, 255])
def test_long_file_names_are_written(relu_file, tmp_path, length):
    # The temporary name beside the target is longer than the target's: it is shortened.
    out = tmp_path / ("o" * (length - 4) + ".npz")
    result = run_cli("infer", relu_file, "-p", "cpu", "--save", str(out))
    assert result.exit_code == 0, result.stderr
    assert os.listdir(tmp_path) == [out.name]


def test_a_name_over_255_bytes_is_one_line(relu_file, tmp_path):
    out = tmp_path / ("o" * 256 + ".onnx")
    assert_one_line_error(
        run_cli("export", "relu", "--exporter", "torchscript", "-o", str(out)),
        "the file name is 261 bytes, over the file system's limit of 255",
    )
    assert_one_line_error(run_cli("infer", relu_file, "-p", "cpu", "--save", str(out)), "261 bytes")


# -- names holding ':' or '=' ------------------------------------------------------------


def test_tensorflow_style_input_names_through_infer(tmp_path):
    path = odd_names_model(tmp_path / "tf.onnx")
    np.save(tmp_path / "a.npy", np.ones((2, 3), np.float32))
    for args in (
        ["--shape", "input:0:4x3", "--shape", '"a=b":4x3'],
        ["--shape", '"input:0":4x3', "--shape", '"a=b":4x3'],
        ["--input", f'"input:0"={tmp_path / "a.npy"}', "--input", f'"a=b"={tmp_path / "a.npy"}'],
        ["--input", f"input:0={tmp_path / 'a.npy'}", "--input", f'"a=b"={tmp_path / "a.npy"}'],
    ):
        result = run_cli("infer", str(path), "-p", "cpu", "--json", *args)
        assert result.exit_code == 0, (args, result.stderr)
        assert [i["name"] for i in json.loads(result.stdout)["inputs"]] == ["input:0", "a=b"]
    err = assert_one_line_error(
        run_cli(
            "infer",
            str(path),
            "-p",
            "cpu",
            "--input",
            f'"input:0"={tmp_path / "a.npy"}',
            "--input",
            f"a=b={tmp_path / 'a.npy'}",
        ),
        "a name holding '=' goes in double quotes",
    )
    assert f"'\"a=b\"={tmp_path / 'a.npy'}'" in err


def test_a_user_model_with_a_colon_input_name_exports_and_checks(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\n\ndef make():\n    return nn.Linear(3, 2)\n")
    out = tmp_path / "net.onnx"
    result = run_cli(
        "export",
        f"{net}:make",
        "--exporter",
        "torchscript",
        "-o",
        str(out),
        "--input",
        '"input:0":batch=2x3',
    )
    assert result.exit_code == 0, result.stderr
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["input:0"]
    from nnkit.onnxfile import stamped_specs

    assert [str(s) for s in stamped_specs(model)] == ['"input:0":batch=2x3:float32']
    result = run_cli("parity", f"{net}:make", "--onnx", str(out), "--backends", "cpu")
    assert result.exit_code == 0, result.output


# -- signals and closed pipes ---------------------------------------------------------------


def _signal_when(
    args: list[str], ready, sig: signal.Signals, cwd: Path, tmpdir: Path
) -> subprocess.CompletedProcess:
    """Run ``nnkit ARGS``, send ``sig`` once ``ready()`` holds, and wait (bounded)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnkit", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    try:
        deadline = time.monotonic() + 90
        while not ready() and proc.poll() is None:
            assert time.monotonic() < deadline, "the command never reached the point to signal"
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


SIGNALED = [
    ("export", signal.SIGTERM, ["export", "combinednn", "-o", "out.onnx"]),
    ("export", signal.SIGHUP, ["export", "combinednn", "-o", "out.onnx"]),
    (
        "parity",
        signal.SIGTERM,
        ["parity", "lstm", "gru", "--backends", "cpu,reference", "--json", "r.json"],
    ),
    (
        "parity",
        signal.SIGHUP,
        ["parity", "lstm", "gru", "--backends", "cpu,reference", "--json", "r.json"],
    ),
    ("bench", signal.SIGTERM, ["bench", "lstm", "--backends", "cpu,torch", "--json", "b.json"]),
    ("bench", signal.SIGHUP, ["bench", "lstm", "--backends", "cpu,torch", "--json", "b.json"]),
]


@pytest.mark.parametrize(
    ("command", "sig", "args"), SIGNALED, ids=[f"{c}-{s.name}" for c, s, _ in SIGNALED]
)
def test_sigterm_and_sighup_clean_up_as_ctrl_c_does(tmp_path, command, sig, args):
    work, tmpdir = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmpdir.mkdir()
    (work / "out.onnx").write_bytes(b"previous")

    def ready() -> bool:
        if command == "export":
            return bool(list(work.glob(".out.onnx.*.tmp")))
        return bool(list(tmpdir.glob(f"nnkit-{command}-*")))

    result = _signal_when(args, ready, sig, work, tmpdir)
    if result.returncode == 0:
        pytest.skip("the command finished before the signal arrived")
    assert result.returncode == 128 + sig, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Aborted ({sig.name}).", result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(work)) == ["out.onnx"]
    assert (work / "out.onnx").read_bytes() == b"previous"
    assert not list(tmpdir.glob("nnkit-*"))


def test_a_closed_pipe_keeps_the_verdict_and_the_reports(zoo_file, tmp_path):
    # nnkit parity ... | head -1: the reader goes away; the verdict and reports stay.
    tanh = zoo_file("tanh", "torchscript")
    for onnx_file, verdict in ((tanh, 0), (tanh, 1)):
        model = "tanh" if verdict == 0 else "sigmoid"
        report = tmp_path / f"{model}.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nnkit",
                "parity",
                model,
                "--onnx",
                str(onnx_file),
                "--backends",
                "cpu",
                "--json",
                str(report),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()  # the reader is gone before nnkit prints a line
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == verdict, err
        assert b"BrokenPipeError" not in err and b"internal error" not in err, err
        assert json.loads(report.read_text())["exit_code"] == verdict


def test_closed_stdout_and_stderr_keep_the_exit_status(relu_file, tmp_path):
    out = tmp_path / "o.npz"
    for closed in ((1,), (2,), (1, 2)):
        proc = subprocess.run(
            [sys.executable, "-m", "nnkit", "infer", relu_file, "-p", "cpu", "--save", str(out)],
            preexec_fn=lambda closed=closed: [os.close(fd) for fd in closed],
            capture_output=False,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, closed
        assert out.stat().st_size > 0
        out.unlink()


def test_closed_stdout_keeps_an_error_exit_status(relu_file):
    unavailable("cuda")
    proc = subprocess.run(
        [sys.executable, "-m", "nnkit", "infer", relu_file, "-p", "cuda"],
        preexec_fn=lambda: os.close(1),
        capture_output=False,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2


def test_head_of_json_to_stdout(relu_file):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnkit",
            "bench",
            relu_file,
            "--backends",
            "cpu",
            "--batch",
            "1",
            "--iterations",
            "2",
            "--json",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.read(1)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert first == b"{"
    assert proc.returncode == 0, err
    assert b"internal error" not in err
