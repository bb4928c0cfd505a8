"""Run the hostile set of issue 10 against nnkit and count what it handled.

Every attack is a real ``python -m nnkit`` run (or, for the library's comparison, a real
``python -c``) in a fresh folder, bounded by a timeout, and judged by what a user would
see: the exit status, stderr, the files left behind. Each of the issue's 18 items has
its attacks; an item fixed on another branch shows defects until that branch is merged,
so the lead can re-run this after merging::

    .venv/bin/python scripts/hostile.py               # everything: a table, then each attack
    .venv/bin/python scripts/hostile.py --items 5,7   # some items
    .venv/bin/python scripts/hostile.py --summary     # the table only
    .venv/bin/python scripts/hostile.py --json hostile.json

Exit status 0 when every attack that was tried ended clean, 1 otherwise. Attacks that
need root (a small tmpfs for a full disk) are "not tried" without it. The machine's own
/dev is never attacked: run as root, a private node of the same device stands in for
/dev/null and /dev/full, and a private link to /proc/self/fd/1 for /dev/stdout (the code
before this hardening replaced all three with regular files).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._hostile import (  # noqa: E402 (after the path set-up)
    device_node,
    external_tensor_model,
    gather_out_of_range,
    npy_header_only,
    odd_names_model,
    peak_rss,
    reshape_fails_at_run_time,
    small_disk,
    stamped_model,
    stdout_link,
    user_model,
)

ITEMS = {
    1: "an ONNX file's metadata names a model: never imported",
    2: "user code that exits (sys.exit, os._exit) never passes",
    3: "NaN, infinite, out-of-range numeric options refused",
    4: "NaN/inf tolerances in the library: no hang, no pass",
    5: "external data that lies or escapes: INVALID, never read",
    6: "a runtime that aborts (tract panic) spares the rest",
    7: "devices, links and FIFOs as outputs are kept",
    8: "SIGTERM/SIGHUP clean up and exit 128+signal",
    9: "user code that hangs is bounded",
    10: "resource bombs are user errors, not MemoryError",
    11: "user code's stdout stays out of machine output",
    12: "onnxruntime's run-time log stays off the terminal",
    13: "OS errors on outputs name the path and the errno",
    14: "input names with ':' or '=' can be given",
    15: "an output that is an input is refused",
    16: "--threads above the usable cores warns",
    17: "a closed stdout keeps the verdict and the reports",
    18: "--seed -1 and 243-255 byte file names",
}

#: Quick runs: parity of one zoo model on one exporter and backend, bench of two runs.
PARITY = "parity relu --exporters torchscript --backends cpu"
BENCH = "--backends cpu --batch 1 --iterations 2"
#: Seconds an attack on user code that hangs may run before it counts as a hang.
HANG_SECONDS = 60.0


def argv(text: str, **paths: object) -> list[str]:
    """``text`` split at spaces, each word that is a key of ``paths`` replaced by its value."""
    return [str(paths[w]) if w in paths else w for w in text.split()]


# -- running nnkit ----------------------------------------------------------------------


@dataclass
class Run:
    """One finished (or killed) process."""

    rc: int | None
    out: str
    err: str
    timed_out: bool

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    def describe(self) -> str:
        if self.timed_out:
            return "hung (killed at the time limit)"
        if self.rc is not None and self.rc < 0:
            status = f"killed by {signal.Signals(-self.rc).name}"
        elif self.rc in (134, 139):
            status = f"exit {self.rc} (aborted)"
        else:
            status = f"exit {self.rc}"
        last = self.lines[-1][:150] if self.lines else "(nothing on stderr)"
        return f"{status}: {last}"


def nnkit(*args: str, cwd: Path, timeout: float = 180, **kwargs) -> Run:
    return run([sys.executable, "-m", "nnkit", *args], cwd=cwd, timeout=timeout, **kwargs)


def run(
    command: list[str],
    *,
    cwd: Path,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    stdout=subprocess.PIPE,
    preexec_fn=None,
    close_stdout: bool = False,
    while_running: Callable[[subprocess.Popen], None] | None = None,
) -> Run:
    """Run ``command`` in a session of its own; kill the whole session at the time limit."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    if close_stdout and proc.stdout is not None:
        proc.stdout.close()
    if while_running is not None:
        while_running(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        timed_out = True
    text = (out or b"").decode(errors="replace")
    return Run(proc.returncode, text, err.decode(errors="replace"), timed_out)


# -- outcomes ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """How one attack ended: clean (True), a defect (False) or not tried (None)."""

    clean: bool | None
    how: str


def ok(how: str) -> Outcome:
    return Outcome(True, how)


def bad(how: str) -> Outcome:
    return Outcome(False, how)


def crashed(r: Run) -> str:
    """What went wrong when ``r`` did not end on nnkit's terms; '' when it did."""
    if r.timed_out or r.rc is None or r.rc < 0 or r.rc in (134, 139):
        return r.describe()
    if "internal error" in r.err or "Traceback" in r.err:
        return r.describe()
    return ""


def refused(r: Run, *needles: str, last_line: bool = False) -> Outcome:
    """Exit 2, one line on stderr (or, with ``last_line``, ending in one) holding ``needles``."""
    if r.timed_out or r.rc != 2:
        return bad(r.describe())
    line = r.lines[-1] if r.lines else ""
    if not line.startswith("Error:") or (not last_line and len(r.lines) != 1):
        return bad(f"exit 2, but stderr is {len(r.lines)} line(s): {line[:150]}")
    if crashed(r):
        return bad(crashed(r))
    missing = [n for n in needles if n not in line]
    if missing:
        return bad(f"exit 2, but the line lacks {missing[0]!r}: {line[:150]}")
    return ok(f"exit 2: {line[:150]}")


# -- shared material ----------------------------------------------------------------------


@dataclass
class Material:
    """Files every attack may read (never write), built once per run."""

    relu: Path
    tanh: Path
    gnet: Path  # gnet.py: Net (Gather by a buffer) and Emb (an embedding)
    gather_bad: Path  # Net's export, its index buffer set out of range
    embedding: Path
    bad_ids: Path


GNET = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.tensor([0, 1]))

    def forward(self, x):
        return x.index_select(0, self.idx) * 2


class Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.e(ids)
"""


def build_material(folder: Path) -> Material:
    def export(model: str, out: str, *extra: str) -> Path:
        r = nnkit("export", model, "--exporter", "torchscript", "-o", out, *extra, cwd=folder)
        if r.rc != 0:
            raise SystemExit(f"cannot build the hostile material: {r.describe()}")
        (folder / out).chmod(0o444)
        return folder / out

    gnet = folder / "gnet.py"
    gnet.write_text(GNET)
    proto = onnx.load(str(export(f"{gnet}:Net", "gnet.onnx", "--input", "x:2x3")))
    for t in proto.graph.initializer:  # the index buffer: [0, 1] -> [0, 100]
        if t.data_type == onnx.TensorProto.INT64:
            t.CopyFrom(numpy_helper.from_array(np.array([0, 100], np.int64), t.name))
    onnx.save(proto, str(folder / "gnet_oob.onnx"))
    np.save(folder / "ids_oob.npy", np.full((2, 5), 100, np.int64))
    return Material(
        relu=export("relu", "relu.onnx"),
        tanh=export("tanh", "tanh.onnx"),
        gnet=gnet,
        gather_bad=folder / "gnet_oob.onnx",
        embedding=export(f"{gnet}:Emb", "emb.onnx", "--input", "ids:2x5:int64"),
        bad_ids=folder / "ids_oob.npy",
    )


# -- the attacks, by item ------------------------------------------------------------------

Attack = Callable[[Path, Material], Outcome]
ATTACKS: list[tuple[int, str, Attack]] = []


def attack(item: int, name: str) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        ATTACKS.append((item, name, fn))
        return fn

    return register


def each(item: int, variants: dict[str, object], make: Callable[[object], Attack]) -> None:
    """One attack per variant: ``make(value)`` named by its key."""
    ATTACKS.extend((item, name, make(value)) for name, value in variants.items())


def refusal(text: str, *needles: str, last_line: bool = False) -> Attack:
    """An attack: ``nnkit TEXT`` (RELU, TANH: the material's files) must be refused."""

    def go(ws: Path, m: Material) -> Outcome:
        r = nnkit(*argv(text, RELU=m.relu, TANH=m.tanh), cwd=ws, timeout=180)
        return refused(r, *needles, last_line=last_line)

    return go


# 1: metadata names a model -------------------------------------------------------------


def _metadata_model(ref: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        marker = ws / "imported"
        (ws / "evil.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran')\n"
            "from torch import nn\n\n"
            "class Net(nn.Module):\n"
            "    def forward(self, x):\n"
            "        return x\n"
        )
        named = ref.replace("WS", str(ws))
        proto = onnx.load(str(m.relu))
        helper.set_model_props(proto, {"nnkit.model": named, "nnkit.inputs": "x:batch=2x50"})
        onnx.save(proto, str(ws / "received.onnx"))
        r = nnkit("parity", "--onnx", "received.onnx", "--backends", "cpu", cwd=ws)
        if marker.exists():
            return bad(f"imported {named!r}, named inside the file ({r.describe()})")
        return ok(f"not imported; {r.describe()}")

    return go


each(
    1,
    {
        "parity --onnx, metadata names /abs/evil.py:Net": "WS/evil.py:Net",
        "parity --onnx, metadata names evil.py:Net": "evil.py:Net",
        "parity --onnx, metadata names module evil:Net": "evil:Net",
    },
    _metadata_model,
)


# 2: user code that exits ----------------------------------------------------------------


def _exits(spec: tuple[str, str, str]) -> Attack:
    code, where, command = spec

    def go(ws: Path, m: Material) -> Outcome:
        net = user_model(ws / "net.py", code=code, where=where)
        if command == "export":
            r = nnkit(
                *argv(
                    "export NET --input x:2x3 --exporter torchscript -o o.onnx", NET=f"{net}:Net"
                ),
                cwd=ws,
            )
            return ok(r.describe()) if r.rc == 2 and not crashed(r) else bad(r.describe())
        r = nnkit(
            *argv(
                "parity NET --input x:2x3 --exporters torchscript --backends cpu --json r.json",
                NET=f"{net}:Net",
            ),
            cwd=ws,
        )
        report = "; report written" if (ws / "r.json").is_file() else "; no report"
        said = bool(r.lines) and r.lines[-1].startswith(("Error:", "FAIL"))
        if r.rc == 0 or crashed(r) or not (report == "; report written" or said):
            return bad(r.describe() + report)
        return ok(r.describe() + report)

    return go


each(
    2,
    {
        f"{cmd}: {code} in {where}": (code, where, cmd)
        for cmd in ("export", "parity")
        for code in ("sys_exit_0", "sys_exit_3", "os_exit_0")
        for where in ("import", "init", "forward")
    },
    _exits,
)


# 3: numeric options ---------------------------------------------------------------------


@attack(3, "parity sigmoid --onnx tanh.onnx --atol nan")
def _atol_nan(ws: Path, m: Material) -> Outcome:
    r = nnkit(
        *argv("parity sigmoid --onnx TANH --backends cpu --atol nan", TANH=m.tanh),
        cwd=ws,
        timeout=120,
    )
    if r.rc == 0:
        return bad("a tanh file passed as sigmoid: exit 0")
    return bad(crashed(r)) if crashed(r) else ok(r.describe())


each(
    3,
    {
        text.replace("RELU", "relu.onnx").replace("TANH", "tanh.onnx"): text
        for text in [
            "parity sigmoid --onnx TANH --backends cpu --rtol nan",
            "parity relu --atol inf",
            "parity relu --atol -1",
            "parity relu --rtol -inf",
            f"bench RELU {BENCH} --seconds inf",
            f"bench RELU {BENCH} --seconds nan",
            f"bench RELU {BENCH} --threads 2147483648",
            "infer RELU -p cpu --threads 2147483648",
            f"bench RELU {BENCH} --warmup -1",
            "infer RELU -p cpu --iterations -5",
        ]
    },
    lambda text: refusal(text, "Invalid value"),
)


# 4: tolerances in the library ------------------------------------------------------------


def _library_tolerance(spec: tuple[str, str]) -> Attack:
    atol, rtol = spec

    def go(ws: Path, m: Material) -> Outcome:
        code = (
            "import numpy as np\n"
            "from nnkit.compare import compare_arrays\n"
            "ref = np.array([0.0, 1.0], np.float32)\n"  # a zero: no rtol can cover it
            "try:\n"
            f"    r = compare_arrays('y', ref, ref + 1, atol={atol}, rtol={rtol})\n"
            "    print('PASSED' if r else 'FAILED')\n"
            "except Exception as e:\n"
            "    print('REFUSED', type(e).__name__, e)\n"
        )
        r = run([sys.executable, "-c", code], cwd=ws, timeout=30)
        if r.timed_out:
            return bad("compare_arrays never returned")
        if r.out.strip() == "PASSED":
            return bad("an output off by 1 passed")
        return bad(r.describe()) if r.rc != 0 else ok(r.out.strip()[:150])

    return go


each(
    4,
    {
        "compare_arrays rtol=nan": ("0.0", "float('nan')"),
        "compare_arrays rtol=inf, a zero in the reference": ("0.0", "float('inf')"),
        "compare_arrays atol=nan": ("float('nan')", "0.0"),
    },
    _library_tolerance,
)


# 5: external data ------------------------------------------------------------------------

LIES = {
    "shorter than the tensor": ("location=short.bin", "20 bytes"),
    "no length, data runs on to EOF": ("location=long.bin", "needs 40 bytes"),
    "length smaller than the tensor": ("location=w.bin length=20", "length 20"),
    "offset past the end": ("location=w.bin offset=100 length=40", "offset 100"),
    "range past the end": ("location=w.bin offset=8 length=40", "holds only"),
    "negative offset": ("location=w.bin offset=-1", "non-negative"),
    "absolute path": ("location=OUTSIDE", "absolute path"),
    "'..' out of the folder": ("location=../outside.bin", "climbs out"),
    "symlink to a file outside": ("location=link.bin", "symbolic link"),
    "through a linked folder": ("location=up/outside.bin", "outside the model's folder"),
    "a FIFO": ("location=fifo.bin", "is not a file"),
}


def _lying_model(ws: Path, fields: str) -> Path:
    """A model in ``ws/model`` whose external data says ``fields`` (key=value ...)."""
    folder = ws / "model"
    folder.mkdir()
    outside = ws / "outside.bin"
    outside.write_bytes(b"\0" * 40)
    for name, size in (("w.bin", 40), ("short.bin", 20), ("long.bin", 400)):
        (folder / name).write_bytes(b"\0" * size)
    (folder / "link.bin").symlink_to(outside)
    (folder / "up").symlink_to(ws, target_is_directory=True)
    os.mkfifo(folder / "fifo.bin")
    given = dict(f.split("=", 1) for f in fields.replace("OUTSIDE", str(outside)).split())
    return external_tensor_model(folder / "m.onnx", location=given.pop("location"), **given)


def _check_lie(spec: tuple[str, str]) -> Attack:
    fields, needle = spec

    def go(ws: Path, m: Material) -> Outcome:
        r = nnkit("check", str(_lying_model(ws, fields)), cwd=ws, timeout=60)
        first = (r.out.splitlines() or r.lines or [""])[0]
        if crashed(r):
            return bad(crashed(r))
        if r.rc == 1 and "INVALID" in first and needle in first:
            return ok("INVALID: " + first.split("INVALID: ", 1)[1][:140])
        return bad(f"exit {r.rc}: {first[:150]}")

    return go


def _infer_lie(spec: tuple[str, str, str]) -> Attack:
    provider, fields, needle = spec

    def go(ws: Path, m: Material) -> Outcome:
        path = _lying_model(ws, fields)
        return refused(nnkit("infer", str(path), "-p", provider, cwd=ws, timeout=60), needle)

    return go


each(5, {f"check: {k}": v for k, v in LIES.items()}, _check_lie)
each(
    5,
    {
        f"infer -p {p}: {k}": (p, *LIES[k])
        for p in ("cpu", "tract")
        for k in ("shorter than the tensor", "absolute path", "symlink to a file outside")
    },
    _infer_lie,
)


@attack(5, "check: a 40-byte tensor in a 2 GiB file (peak memory)")
def _big_external(ws: Path, m: Material) -> Outcome:
    with (ws / "big.bin").open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: nothing on disk
    path = external_tensor_model(ws / "big.onnx", location="big.bin")
    code, out, err, peak = peak_rss([sys.executable, "-m", "nnkit", "check", str(path)])
    verdict = (out or err).strip().splitlines()[0] if (out or err).strip() else ""
    how = f"exit {code}, peak RSS {peak >> 20} MiB: {verdict[:100]}"
    return ok(how) if code == 1 and peak < 500 << 20 else bad(how)


# 6: runtimes that abort -----------------------------------------------------------------


@attack(6, "infer -p tract: Gather index out of range (exported, edited)")
def _tract_gather(ws: Path, m: Material) -> Outcome:
    return refused(nnkit("infer", str(m.gather_bad), "-p", "tract", cwd=ws))


@attack(6, "infer -p tract: Gather index out of range (hand-built)")
def _tract_gather_built(ws: Path, m: Material) -> Outcome:
    path = gather_out_of_range(ws / "g.onnx")
    return refused(nnkit("infer", str(path), "-p", "tract", cwd=ws))


@attack(6, "infer -p tract --input ids out of range")
def _tract_ids(ws: Path, m: Material) -> Outcome:
    r = nnkit(
        *argv("infer EMB -p tract --input IDS", EMB=m.embedding, IDS=f"ids={m.bad_ids}"), cwd=ws
    )
    return refused(r)


@attack(6, "bench --backends cpu,tract: the cpu rows survive")
def _bench_abort(ws: Path, m: Material) -> Outcome:
    r = nnkit(
        *argv(
            "bench BAD --backends cpu,tract --batch 2 --iterations 2 --json b.json",
            BAD=m.gather_bad,
        ),
        cwd=ws,
    )
    if crashed(r):
        return bad(crashed(r))
    if not (ws / "b.json").is_file():
        return bad(f"no report; {r.describe()}")
    rows = json.loads((ws / "b.json").read_text()).get("results", [])
    return ok(f"{r.describe()}; rows for {sorted({row.get('backend') for row in rows})}")


@attack(6, "parity --backends tract,cpu: the matrix survives")
def _parity_abort(ws: Path, m: Material) -> Outcome:
    r = nnkit(
        *argv(
            "parity NET --input x:2x3 --onnx BAD --backends tract,cpu --json r.json",
            NET=f"{m.gnet}:Net",
            BAD=m.gather_bad,
        ),
        cwd=ws,
    )
    if crashed(r):
        return bad(crashed(r))
    if not (ws / "r.json").is_file():
        return bad(f"no report; {r.describe()}")
    cells = {c["backend"]: c["status"] for c in json.loads((ws / "r.json").read_text())["cells"]}
    if r.rc == 1 and cells.get("tract") == "error" and "cpu" in cells:
        return ok(f"exit 1; cells {cells}")
    return bad(f"{r.describe()}; cells {cells}")


# 7: devices, links, FIFOs -----------------------------------------------------------------


def _device_write(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        node = device_node(ws, "null")
        before = os.stat(node)
        r = nnkit(*argv(text, DEV=node, RELU=m.relu), cwd=ws)
        after = os.stat(node)
        if not stat.S_ISCHR(after.st_mode) or after.st_rdev != before.st_rdev:
            return bad(f"the device was replaced by a regular file ({r.describe()})")
        if crashed(r) or r.rc != 0:
            return bad(r.describe())
        left = [p.name for p in node.parent.glob(f".{node.name}.*")]
        return bad(f"left {left}") if left else ok("still a character device; exit 0")

    return go


each(
    7,
    {
        text.replace("DEV", "/dev/null").replace("RELU", "relu.onnx"): text
        for text in [
            "export relu --exporter torchscript -o DEV",
            "infer RELU -p cpu --save DEV",
            f"{PARITY} --json DEV",
            f"{PARITY} --markdown DEV",
            f"{PARITY} --junit DEV",
            f"bench RELU {BENCH} --json DEV",
        ]
    },
    _device_write,
)


@attack(7, "infer --save link.npz -> real.npz")
def _symlink(ws: Path, m: Material) -> Outcome:
    (ws / "link.npz").symlink_to("real.npz")
    r = nnkit("infer", str(m.relu), "-p", "cpu", "--save", "link.npz", cwd=ws)
    if not (ws / "link.npz").is_symlink():
        return bad(f"the link was replaced by a file ({r.describe()})")
    if not (ws / "real.npz").is_file():
        return bad(f"the link's target was not written ({r.describe()})")
    return ok("the link stays a link; its target holds the outputs")


@attack(7, "infer --save STDOUT > file (STDOUT: a link to /proc/self/fd/1, as /dev/stdout)")
def _dev_stdout(ws: Path, m: Material) -> Outcome:
    link = stdout_link(ws)
    with (ws / "out.txt").open("wb") as f:
        r = nnkit("infer", str(m.relu), "-p", "cpu", "--save", str(link), cwd=ws, stdout=f)
    data = (ws / "out.txt").read_bytes()
    if not link.is_symlink():
        return bad(f"the link was replaced ({r.describe()})")
    if r.rc != 0:
        return bad(r.describe())
    if not (data.startswith(b"PK") and b"saved 1 outputs" in data):
        return bad(f"stdout holds {len(data)} bytes, not the .npz then the summary")
    return ok("the .npz, then the summary, both on stdout")


@attack(7, "parity --json FIFO")
def _fifo(ws: Path, m: Material) -> Outcome:
    fifo = ws / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = nnkit(*argv(f"{PARITY} --json FIFO", FIFO=fifo), cwd=ws)
    reader.join(timeout=10)
    if reader.is_alive():  # nnkit never opened it: release the reader
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    if not stat.S_ISFIFO(os.stat(fifo).st_mode):
        return bad(f"the FIFO was replaced ({r.describe()})")
    if r.rc != 0 or not got or not got[0]:
        return bad(r.describe())
    return ok(f"the reader got {len(got[0])} bytes of JSON")


# 8: signals -------------------------------------------------------------------------------


def _signal(spec: tuple[signal.Signals, str, str]) -> Attack:
    sig, text, wait_for = spec

    def go(ws: Path, m: Material) -> Outcome:
        tmp = ws / "tmp"
        tmp.mkdir()
        (ws / "out.onnx").write_bytes(b"previous")
        where, pattern = (ws, ".out.onnx.*.tmp") if wait_for == "tmp" else (tmp, wait_for)

        def send(proc: subprocess.Popen) -> None:
            deadline = time.monotonic() + 120
            while not list(where.glob(pattern)) and proc.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

        r = nnkit(*text.split(), cwd=ws, env={"TMPDIR": str(tmp)}, while_running=send)
        if r.rc == 0:
            return Outcome(None, "the command finished before the signal")
        left = [p.name for p in ws.iterdir() if p.name not in ("tmp", "out.onnx")]
        left += [p.name for p in tmp.glob("nnkit-*")]
        if (ws / "out.onnx").read_bytes() != b"previous":
            return bad("the old target was replaced")
        if left:
            return bad(f"left {left} ({r.describe()})")
        if r.rc != 128 + sig:
            return bad(f"cleaned up, but {r.describe()} (expected exit {128 + sig})")
        return ok(r.describe())

    return go


each(
    8,
    {
        f"{sig.name} during {' '.join(text.split()[:2])}": (sig, text, wait)
        for sig, text, wait in [
            (signal.SIGTERM, "export combinednn -o out.onnx", "tmp"),
            (signal.SIGHUP, "export combinednn -o out.onnx", "tmp"),
            (signal.SIGTERM, "parity lstm gru --backends cpu,reference", "nnkit-parity-*"),
            (signal.SIGHUP, "bench lstm --backends cpu,torch", "nnkit-bench-*"),
        ]
    },
    _signal,
)


# 9: hangs ---------------------------------------------------------------------------------


def _hang(spec: tuple[str, str, str]) -> Attack:
    code, where, command = spec

    def go(ws: Path, m: Material) -> Outcome:
        net = user_model(ws / "net.py", code=code, where=where)
        helped = run([sys.executable, "-m", "nnkit", command, "--help"], cwd=ws, timeout=60)
        bound = "--timeout 20" if "--timeout" in helped.out else ""  # item 9's option
        text = {
            "export": f"export NET --input x:2x3 {bound} --exporter torchscript -o o.onnx",
            "parity": f"parity NET --input x:2x3 {bound} --exporters torchscript --backends cpu",
        }[command]
        start = time.monotonic()
        r = nnkit(*argv(text, NET=f"{net}:Net"), cwd=ws, timeout=HANG_SECONDS)
        took = time.monotonic() - start
        if r.timed_out:
            return bad(f"still running after {HANG_SECONDS:.0f} s")
        if code == "thread":  # the model works; its thread must not keep nnkit running
            if r.rc != 0:
                return bad(f"{r.describe()} after {took:.0f} s")
            return ok(f"exit 0 after {took:.0f} s, with the model's thread still running")
        if r.rc == 0:
            return bad(f"exit 0 after {took:.0f} s")
        return ok(f"{r.describe()} after {took:.0f} s")

    return go


each(
    9,
    {
        f"{cmd}: {code} in {where}": (code, where, cmd)
        for code, where, cmd in [
            ("loop", "import", "export"),
            ("loop", "init", "export"),
            ("loop", "forward", "export"),
            ("thread", "forward", "export"),
            ("loop", "forward", "parity"),
        ]
    },
    _hang,
)


# 10: resource bombs -----------------------------------------------------------------------


def _lying_npz(ws: Path) -> Path:
    """An .npz whose member declares 64 GiB and holds 8 MiB of zeros."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**34,)}
    )
    with zipfile.ZipFile(ws / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", header.getvalue() + b"\0" * (8 << 20))
    return ws / "bomb.npz"


def _bomb(make: Callable[[Path, Material], list[str]]) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        r = nnkit(*make(ws, m), cwd=ws)
        return bad(r.describe()) if "MemoryError" in r.err else refused(r, last_line=True)

    return go


each(
    10,
    {
        "infer --shape x:100000000000x50": lambda ws, m: argv(
            "infer RELU -p cpu --shape x:100000000000x50", RELU=m.relu
        ),
        "infer --input x=.npy declaring 1e12 elements": lambda ws, m: argv(
            "infer RELU -p cpu --input X",
            RELU=m.relu,
            X=f"x={npy_header_only(ws / 'h.npy', (1_000_000, 1_000_000))}",
        ),
        "infer --input .npz declaring 64 GiB": lambda ws, m: argv(
            "infer RELU -p cpu --input NPZ", RELU=m.relu, NPZ=_lying_npz(ws)
        ),
        "bench a file stamped n=1e11": lambda ws, m: argv(
            "bench FILE --backends cpu --batch 1 --iterations 1",
            FILE=stamped_model(ws / "s.onnx", "x:batch=2xn=100000000000:float32"),
        ),
        "export --input x:1000000x1000000": lambda ws, m: argv(
            "export NET --input x:1000000x1000000 -o o.onnx", NET=f"{m.gnet}:Net"
        ),
        "parity --input x:1000000x1000000": lambda ws, m: argv(
            "parity NET --input x:1000000x1000000 --backends cpu", NET=f"{m.gnet}:Net"
        ),
    },
    _bomb,
)


# 11: user code's stdout -------------------------------------------------------------------


def _user_stdout(spec: tuple[str, str]) -> Attack:
    code, where = spec

    def go(ws: Path, m: Material) -> Outcome:
        net = user_model(ws / "net.py", code=code, where=where)
        r = nnkit(
            *argv(
                "bench NET --input x:batch=2x3 --backends torch,cpu --batch 2 "
                "--iterations 2 --json -",
                NET=f"{net}:Net",
            ),
            cwd=ws,
        )
        if crashed(r):
            return bad(crashed(r))
        try:
            data = json.loads(r.out)
        except json.JSONDecodeError:
            return bad(f"stdout is not JSON: {r.out[:80]!r}")
        return ok(f"{r.describe()}; stdout is JSON with {len(data.get('results', []))} results")

    return go


each(
    11,
    {
        "bench --json -: print in forward": ("print", "forward"),
        "bench --json -: print at import": ("print", "import"),
        "bench --json -: sys.stdout.close() in forward": ("close_stdout", "forward"),
    },
    _user_stdout,
)


# 12: onnxruntime's run-time log -----------------------------------------------------------


def _ort_log(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        path = reshape_fails_at_run_time(ws / "r.onnx")
        r = nnkit(*argv(text, FILE=path), cwd=ws, timeout=120)
        if "[E:onnxruntime" in r.err or "\x1b[" in r.err:
            return bad(f"onnxruntime's log reached the terminal ({len(r.lines)} lines)")
        if text.startswith("infer"):
            return refused(r, "Reshape")
        return bad(crashed(r)) if crashed(r) else ok(r.describe())

    return go


each(
    12,
    {
        "infer -p cpu: a Reshape that fails in the kernel": "infer FILE -p cpu --shape x:2x3",
        "bench --backends cpu: a Reshape that fails in the kernel": (
            "bench FILE --backends cpu --batch 2 --iterations 2"
        ),
    },
    _ort_log,
)


# 13: OS errors on outputs -----------------------------------------------------------------


def _full_disk(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        with small_disk(ws / "small") as disk:
            if disk is None:
                return Outcome(None, "cannot mount a small tmpfs (needs root)")
            target = disk / "out"
            target.write_bytes(b"previous")
            r = nnkit(*argv(text, OUT=target, RELU=m.relu), cwd=ws)
            if target.read_bytes() != b"previous" or os.listdir(disk) != ["out"]:
                return bad(f"the old file or the folder changed ({r.describe()})")
            if "try --exporter" in r.err:
                return bad("blamed on the exporter: " + r.lines[-1][:120])
            return refused(r, "No space left on device", last_line=True)

    return go


each(
    13,
    {
        "export -o onto a full disk (torchscript)": "export combinednn --exporter torchscript -o OUT",
        "export -o onto a full disk (dynamo)": "export combinednn -o OUT",
        "infer --save onto a full disk": "infer RELU -p cpu --shape x:2000x50 --save OUT",
    },
    _full_disk,
)


def _dev_full(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        full = device_node(ws, "full")  # /dev/full's device, a private node as root
        r = nnkit(*argv(text, FULL=full, RELU=m.relu), cwd=ws)
        if not stat.S_ISCHR(os.stat(full).st_mode):
            return bad(f"the device was replaced by a regular file ({r.describe()})")
        return refused(r, "No space left on device", last_line=True)

    return go


each(
    13,
    {
        "infer --save /dev/full": "infer RELU -p cpu --save FULL",
        "parity --junit /dev/full": f"{PARITY} --junit FULL",
    },
    _dev_full,
)
ATTACKS.append(
    (
        13,
        "export -o a 260-byte name",
        refusal(f"export relu --exporter torchscript -o {'n' * 255}.onnx", "260 bytes"),
    )
)


# 14: input names with ':' or '=' -----------------------------------------------------------


def _names(args: list[str], needle: str = "") -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        path = odd_names_model(ws / "tf.onnx")
        np.save(ws / "a.npy", np.ones((2, 3), np.float32))
        r = nnkit("infer", str(path), "-p", "cpu", "--json", *args, cwd=ws, timeout=60)
        if needle:
            return refused(r, needle)
        if r.rc != 0:
            return bad(r.describe())
        return ok(f"ran with inputs {[i['name'] for i in json.loads(r.out)['inputs']]}")

    return go


ATTACKS.extend(
    [
        (
            14,
            "infer --shape input:0:4x3 --shape '\"a=b\":4x3'",
            _names(["--shape", "input:0:4x3", "--shape", '"a=b":4x3']),
        ),
        (
            14,
            "infer --input '\"input:0\"=a.npy' --input '\"a=b\"=a.npy'",
            _names(["--input", '"input:0"=a.npy', "--input", '"a=b"=a.npy']),
        ),
        (
            14,
            "infer --input a=b=a.npy: the message says how to quote",
            _names(["--input", '"input:0"=a.npy', "--input", "a=b=a.npy"], "double quotes"),
        ),
    ]
)


@attack(14, "export --input '\"input:0\":batch=2x3', then parity --onnx")
def _export_colon(ws: Path, m: Material) -> Outcome:
    (ws / "net.py").write_text("from torch import nn\n\ndef make():\n    return nn.Linear(3, 2)\n")
    r = nnkit(
        "export",
        "net.py:make",
        "--exporter",
        "torchscript",
        "-o",
        "n.onnx",
        "--input",
        '"input:0":batch=2x3',
        cwd=ws,
    )
    if r.rc != 0:
        return bad(r.describe())
    r = nnkit("parity", "net.py:make", "--onnx", "n.onnx", "--backends", "cpu", cwd=ws)
    return ok("exported, then checked against PyTorch") if r.rc == 0 else bad(r.describe())


# 15: an output that is an input -------------------------------------------------------------


def _overwrite(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        shutil.copy(m.relu, ws / "m.onnx")
        np.savez(ws / "a.npz", x=np.ones((2, 50), np.float32))
        (ws / "hard.npz").hardlink_to(ws / "a.npz")
        (ws / "net.py").write_text("from torch import nn\n\ndef make():\n    return nn.ReLU()\n")
        before = {p.name: p.read_bytes() for p in ws.iterdir()}
        r = nnkit(*text.split(), cwd=ws)
        if any((ws / name).read_bytes() != data for name, data in before.items()):
            return bad(f"an input was overwritten ({r.describe()})")
        return refused(r, "same file")

    return go


each(
    15,
    {
        text: text
        for text in [
            "infer m.onnx -p cpu --input a.npz --save a.npz",
            "infer m.onnx -p cpu --input a.npz --save hard.npz",
            f"bench m.onnx {BENCH} --json m.onnx",
            "parity relu --onnx m.onnx --backends cpu --json ./m.onnx",
            "export net.py:make --input x:2 -o net.py",
        ]
    },
    _overwrite,
)


# 16: threads above the cores --------------------------------------------------------------


def _threads(text: str) -> Attack:
    def go(ws: Path, m: Material) -> Outcome:
        r = nnkit(*argv(text, RELU=m.relu), cwd=ws)
        if r.rc != 0:
            return bad(r.describe())
        warned = any(ln.startswith("warning: --threads") for ln in r.lines)
        return ok("warned, then ran") if warned else bad("ran without a warning")

    return go


each(
    16,
    {
        "infer --threads 1000": "infer RELU -p cpu --threads 1000",
        "bench --threads 1000": f"bench RELU {BENCH} --threads 1000",
    },
    _threads,
)


# 17: closed stdout -----------------------------------------------------------------------


def _closed_pipe(spec: tuple[str, int]) -> Attack:
    model, verdict = spec

    def go(ws: Path, m: Material) -> Outcome:
        r = nnkit(
            *argv(f"parity {model} --onnx TANH --backends cpu --json r.json", TANH=m.tanh),
            cwd=ws,
            close_stdout=True,
        )
        if "BrokenPipeError" in r.err or crashed(r):
            return bad(r.describe())
        if not (ws / "r.json").is_file():
            return bad(f"no report ({r.describe()})")
        if r.rc != verdict:
            return bad(f"the verdict was lost: exit {r.rc}, expected {verdict}")
        return ok(f"exit {r.rc}, report written")

    return go


each(
    17,
    {
        "parity (passing) | closed pipe": ("tanh", 0),
        "parity (failing) | closed pipe": ("sigmoid", 1),
    },
    _closed_pipe,
)


@attack(17, "infer --save with stdout closed (>&-)")
def _closed_stdout(ws: Path, m: Material) -> Outcome:
    r = nnkit(
        "infer",
        str(m.relu),
        "-p",
        "cpu",
        "--save",
        "o.npz",
        cwd=ws,
        stdout=None,
        preexec_fn=lambda: os.close(1),
    )
    if r.rc != 0 or not (ws / "o.npz").is_file():
        return bad(r.describe())
    return ok("exit 0, outputs saved")


@attack(17, "bench --json - | head -c 1")
def _head(ws: Path, m: Material) -> Outcome:
    def read_one(proc: subprocess.Popen) -> None:
        proc.stdout.read(1)
        proc.stdout.close()

    r = nnkit(*argv(f"bench RELU {BENCH} --json -", RELU=m.relu), cwd=ws, while_running=read_one)
    if "BrokenPipeError" in r.err or crashed(r) or r.rc != 0:
        return bad(r.describe())
    return ok("exit 0")


# 18: seeds and long names ------------------------------------------------------------------


each(
    18,
    {
        "infer --seed -1": "infer RELU -p cpu --seed -1",
        "bench --seed -1": f"bench RELU {BENCH} --seed -1",
    },
    lambda text: refusal(text, "--seed"),
)


def _long_name(spec: tuple[str, int]) -> Attack:
    command, length = spec

    def go(ws: Path, m: Material) -> Outcome:
        name = "n" * (length - 5) + (".onnx" if command == "export" else ".npzz")
        text = {
            "export": "export relu --exporter torchscript -o NAME",
            "infer": "infer RELU -p cpu --save NAME",
        }[command]
        r = nnkit(*argv(text, RELU=m.relu, NAME=name), cwd=ws)
        if r.rc != 0 or not (ws / name).is_file():
            return bad(r.describe())
        return ok(f"wrote a {length}-byte name")

    return go


each(
    18,
    {
        f"{cmd} to a {n}-byte name": (cmd, n)
        for cmd, n in [("infer", 243), ("infer", 250), ("infer", 255), ("export", 255)]
    },
    _long_name,
)


# -- the run -------------------------------------------------------------------------------


@dataclass
class Result:
    item: int
    attack: str
    clean: bool | None
    how: str
    seconds: float


def run_attack(item: int, name: str, fn: Attack, base: Path, m: Material) -> Result:
    ws = Path(tempfile.mkdtemp(prefix=f"item{item}-", dir=base))
    start = time.monotonic()
    try:
        outcome = fn(ws, m)
    except Exception as e:  # the attack itself broke: say so, never count it as clean
        outcome = bad(f"the attack failed to run: {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(ws)
    return Result(item, name, outcome.clean, outcome.how, time.monotonic() - start)


MARKS = {True: "clean", False: "DEFECT", None: "not tried"}


def render(results: list[Result], *, seconds: float, summary_only: bool) -> str:
    head = f"{'item':>4}  {'what':<56}  {'tried':>5}  {'clean':>5}  {'defects':>7}  not tried"
    lines = [f"nnkit hostile set (issue 10): {len(results)} attacks in {seconds:.0f} s", "", head]
    totals = [0, 0, 0, 0]
    for item, title in ITEMS.items():
        mine = [r for r in results if r.item == item]
        if not mine:
            continue
        tried = [r for r in mine if r.clean is not None]
        clean = sum(r.clean is True for r in tried)
        counts = [len(tried), clean, len(tried) - clean, len(mine) - len(tried)]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        lines.append(
            f"{item:>4}  {title:<56}  {counts[0]:>5}  {counts[1]:>5}  {counts[2]:>7}  {counts[3]}"
        )
    lines.append(
        f"{'':>4}  {'total':<56}  {totals[0]:>5}  {totals[1]:>5}  {totals[2]:>7}  {totals[3]}"
    )
    if not summary_only:
        for item, title in ITEMS.items():
            mine = [r for r in results if r.item == item]
            if mine:
                lines += ["", f"item {item}: {title}"]
                lines += [f"  {MARKS[r.clean]:<9} {r.attack}: {r.how}" for r in mine]
    return "\n".join(lines)


def main(argv_: list[str] | None = None) -> int:
    global HANG_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", help="comma-separated item numbers (default: all 18)")
    parser.add_argument("--jobs", type=int, default=2, help="attacks run at once (default 2)")
    parser.add_argument("--json", type=Path, help="write every result as JSON here")
    parser.add_argument("--summary", action="store_true", help="print the table only")
    parser.add_argument(
        "--hang-seconds",
        type=float,
        default=HANG_SECONDS,
        help="how long an attack on hanging user code may run (default 60)",
    )
    args = parser.parse_args(argv_)
    HANG_SECONDS = args.hang_seconds
    wanted = {int(i) for i in args.items.split(",")} if args.items else set(ITEMS)
    chosen = [(i, n, fn) for i, n, fn in ATTACKS if i in wanted]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nnkit-hostile-") as tmp:
        base = Path(tmp)
        (base / "material").mkdir()
        material = build_material(base / "material")
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            futures = [pool.submit(run_attack, i, n, fn, base, material) for i, n, fn in chosen]
            results = []
            for k, future in enumerate(futures, 1):
                r = future.result()
                results.append(r)
                print(
                    f"[{k}/{len(futures)}] item {r.item} {r.attack}: {MARKS[r.clean]}",
                    file=sys.stderr,
                    flush=True,
                )
    seconds = time.monotonic() - start
    print(render(results, seconds=seconds, summary_only=args.summary))
    if args.json:
        payload = {"seconds": seconds, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.clean is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
