"""Hostile material: files, arrays and user models an adversary would hand nnkit.

Shared by the tests and by ``scripts/hostile.py`` (which runs the whole hostile set and
counts what nnkit handled). Every builder writes real files; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: IR version onnxruntime 1.31 reads (onnx 1.23 stamps 14 by default).
IR_VERSION = 10


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )


def external_tensor_model(dst: Path, *, location: str, **fields: str) -> Path:
    """``y = x + w``, w ten float32s (40 bytes) kept as external data at ``location``.

    ``fields`` are written as they are (``offset="4096"``, ``length="40"``), so a
    test can plant any lie about where the bytes are.
    """
    w = numpy_helper.from_array(np.ones(10, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, **fields}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    model = _model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10])],
        [w],
    )
    dst.write_bytes(model.SerializeToString())
    return dst


def npy_header_only(
    dst: Path, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b""
) -> Path:
    """A ``.npy`` file whose header declares ``shape`` and which holds only ``data``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    dst.write_bytes(header.getvalue() + data)
    return dst


def npz_bomb(dst: Path, *, name: str = "x", nbytes: int = 256 * 1024**2) -> Path:
    """An ``.npz`` whose one member inflates to ``nbytes`` of zeros (a few hundred KiB)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)}
    )
    chunk = b"\0" * (1 << 22)
    with (
        zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(f"{name}.npy", "w", force_zip64=True) as member,
    ):
        member.write(header.getvalue())
        for _ in range(nbytes // len(chunk)):
            member.write(chunk)
    return dst


def gather_out_of_range(dst: Path) -> Path:
    """Gather with index 100 on a dim of 2: the checker passes it; tract panics (SIGABRT)."""
    idx = numpy_helper.from_array(np.array([0, 100], np.int64), "idx")
    model = _model(
        [helper.make_node("Gather", ["x", "idx"], ["y"], axis=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [idx],
    )
    onnx.save(model, str(dst))
    return dst


def reshape_fails_at_run_time(dst: Path) -> Path:
    """Reshape to [7, -1]: loads everywhere, fails in the kernel for most input sizes."""
    shape = numpy_helper.from_array(np.array([7, -1], np.int64), "s")
    model = _model(
        [helper.make_node("Reshape", ["x", "s"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
        [shape],
    )
    onnx.save(model, str(dst))
    return dst


def odd_names_model(dst: Path, names: tuple[str, ...] = ("input:0", "a=b")) -> Path:
    """One Relu per input, inputs named like TensorFlow's (``input:0``) or with ``=``."""
    model = _model(
        [helper.make_node("Relu", [n], [f"out{i}"]) for i, n in enumerate(names)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in names],
        [
            helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, ["n", 3])
            for i in range(len(names))
        ],
    )
    onnx.save(model, str(dst))
    return dst


def stamped_model(dst: Path, stamp: str) -> Path:
    """``y = relu(x)``, x ``[batch, n]``, with ``nnkit.inputs`` metadata set to ``stamp``."""
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
    )
    helper.set_model_props(model, {"nnkit.inputs": stamp})
    onnx.save(model, str(dst))
    return dst


#: A user model file: ``Net`` is ``nn.Linear(3, 3)`` with a hostile line planted at
#: import, in ``__init__`` or in ``forward``.
USER_MODEL = """\
import os, sys, threading, time
import torch
from torch import nn

{at_import}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        {at_init}

    def forward(self, x):
        {at_forward}
        return self.fc(x)
"""

#: Hostile lines a user model may run, by name.
HOSTILE_CODE = {
    "sys_exit_0": "sys.exit(0)",
    "sys_exit_3": "sys.exit(3)",
    "os_exit_0": "os._exit(0)",
    "loop": "while True: pass",
    "thread": "threading.Thread(target=lambda: time.sleep(3600)).start()",
    "print": "print('user output on stdout')",
    "close_stdout": "sys.stdout.close()",
}


def user_model(dst: Path, *, code: str, where: str) -> Path:
    """A user model file running ``HOSTILE_CODE[code]`` at ``where``."""
    slots = {"at_import": "", "at_init": "pass", "at_forward": "pass"}
    slots[f"at_{where}"] = HOSTILE_CODE[code]
    dst.write_text(USER_MODEL.format(**slots))
    return dst


@contextlib.contextmanager
def small_disk(folder: Path, *, size: str = "64k") -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted on ``folder``: a real full disk, soon. None where
    mounting is not allowed (it needs root)."""
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30, check=False)


#: Character devices by name: (major, minor) on Linux.
DEVICES = {"null": (1, 3), "full": (1, 7)}


def device_node(folder: Path, name: str) -> Path:
    """``/dev/NAME``'s device, as a private node in ``folder`` when root can make one.

    Attacks on writing into devices must not put the machine's own /dev at risk: run as
    root, a regression would replace /dev/null for every process. A node of the same
    device behaves the same for nnkit. Without root, /dev/NAME itself (which a regression
    could not replace: /dev is not writable).
    """
    if os.geteuid() != 0:
        return Path("/dev") / name
    node = folder / name
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(*DEVICES[name]))
    return node


def stdout_link(folder: Path) -> Path:
    """A private ``/dev/stdout``: a link to ``/proc/self/fd/1``, as /dev/stdout is."""
    link = folder / "stdout"
    link.symlink_to("/proc/self/fd/1")
    return link


#: Runs ``argv`` and reports its peak RSS (``RUSAGE_CHILDREN``) as JSON.
_LAUNCHER = (
    "import json, resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps([r.returncode, r.stdout, r.stderr, peak]))\n"
)


def peak_rss(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str, int]:
    """``(exit status, stdout, stderr, peak RSS in bytes)`` of running ``argv``.

    Through a small launcher: a child's ``ru_maxrss`` starts from its parent's at fork,
    so measured straight from a test process holding torch it would read hundreds of
    MiB before the child did anything.
    """
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(timeout), *argv],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        env=env,
        check=True,
    )
    code, stdout, stderr, peak = json.loads(out.stdout)
    return code, stdout, stderr, peak
