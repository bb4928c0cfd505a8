"""The worker process: whatever the code it runs does, the caller stays in charge."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnkit.errors import EXIT_INTERNAL, BackendError, failure
from nnkit.worker import (
    InProcess,
    RemoteBug,
    Worker,
    WorkerExit,
    WorkerLost,
    WorkerTimeout,
    last_words,
    stuck_at,
)

# Functions the worker runs: importable from the worker through the parent's sys.path.
HOSTILE = """\
import os, subprocess, sys, threading, time

def add(a, b):
    return a + b

def pid():
    return os.getpid()

def leave(code):
    sys.exit(code)

def vanish():
    os._exit(0)

def abort():
    os.abort()

def spin():
    while True:
        pass

def hang_with_company(marker):
    threading.Thread(target=time.sleep, args=(1000,)).start()  # a non-daemon thread
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    with open(marker, "w") as f:
        f.write(str(child.pid))
    spin()

def raise_backend_error():
    from nnkit.errors import EXIT_INTERNAL, BackendError, failure
    raise BackendError("tract: cannot run x.onnx", backend="tract", model_path="x.onnx")

def raise_bug():
    return {}["missing"]

def chatty():
    print("printed by user code")
    os.write(1, b"written to fd 1 by user code\\n")
    return "done"

def lingering_thread():
    threading.Thread(target=time.sleep, args=(1000,)).start()
    return "started"
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile_calls.py").write_text(HOSTILE)
    sys.path.insert(0, str(folder))
    try:
        import hostile_calls

        yield hostile_calls
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("hostile_calls", None)


@pytest.fixture
def worker():
    with Worker("test") as w:
        yield w


def test_a_call_returns_its_result_and_the_worker_is_another_process(hostile, worker) -> None:
    assert worker.call(hostile.add, 2, b=3) == 5
    assert worker.call(hostile.pid) != os.getpid()


def test_sys_exit_is_an_error_naming_the_code_and_the_line(hostile, worker) -> None:
    with pytest.raises(WorkerExit, match=r"called sys.exit\(3\) in leave at .*hostile_calls.py:10"):
        worker.call(hostile.leave, 3)
    assert worker.call(hostile.add, 1, 1) == 2  # the worker lives on


def test_os_exit_and_abort_say_how_the_process_ended(hostile, worker) -> None:
    with pytest.raises(WorkerLost, match="exited with status 0"):
        worker.call(hostile.vanish)
    with pytest.raises(WorkerLost, match=r"aborted \(SIGABRT\)"):
        worker.call(hostile.abort)
    assert worker.call(hostile.add, 1, 2) == 3  # a fresh worker took its place


def test_a_hang_is_stopped_with_where_it_was_and_nothing_is_left_running(
    hostile, worker, tmp_path: Path
) -> None:
    marker = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(WorkerTimeout) as info:
        worker.call(hostile.hang_with_company, str(marker), timeout=1.5)
    assert time.monotonic() - start < 15
    assert "did not finish within 1.5 s" in info.value.format_message()
    assert re.fullmatch(r"spin at .*hostile_calls.py:(19|20)", info.value.where)
    # The user's subprocess went with the worker's process group.
    assert _ends(int(marker.read_text()))


def test_nnkit_errors_cross_intact_and_anything_else_is_a_bug(hostile, worker) -> None:
    with pytest.raises(BackendError) as info:
        worker.call(hostile.raise_backend_error)
    assert (info.value.backend, info.value.model_path) == ("tract", "x.onnx")
    with pytest.raises(RemoteBug, match="KeyError") as bug:
        worker.call(hostile.raise_bug)
    assert "Traceback" in bug.value.detail and "raise_bug" in bug.value.detail
    assert "this is a bug in nnkit" in bug.value.format_message()
    # A bug, exit 3; its traceback: the worker's, then where it reached this process.
    f = failure(bug.value)
    assert bug.value.exit_code == f.exit_code == EXIT_INTERNAL
    assert f.message.startswith("internal error in a worker: KeyError: 'missing' (")
    worker_side, _, here = f.traceback.partition("reached nnkit here")
    assert "in raise_bug" in worker_side and "test_worker.py" not in worker_side
    assert "test_nnkit_errors_cross_intact" in here and "in call" in here


def test_what_user_code_prints_never_reaches_the_callers_stdout(tmp_path: Path) -> None:
    (tmp_path / "hostile_calls.py").write_text(HOSTILE)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import hostile_calls\n"
        "from nnkit.worker import Worker\n"
        "with Worker('t') as w:\n"
        "    print(w.call(hostile_calls.chatty))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done\n"


def test_closing_does_not_wait_for_threads_the_code_left_running(hostile) -> None:
    w = Worker("test")
    assert w.call(hostile.lingering_thread) == "started"
    start = time.monotonic()
    w.close()
    assert time.monotonic() - start < 10
    assert not w.alive


def test_a_worker_dies_with_its_parent(tmp_path: Path) -> None:
    (tmp_path / "hostile_calls.py").write_text(HOSTILE)
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import hostile_calls\n"
        "from nnkit.worker import Worker\n"
        "w = Worker('t')\n"
        "print(w.call(hostile_calls.pid), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -signal.SIGKILL
    assert _ends(int(out.stdout.split()[0])), "the worker outlived its parent"


def _ends(pid: int, within: float = 10) -> bool:
    """Whether process ``pid`` is gone (or a zombie nobody reaped yet) within seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_in_process_runs_here_and_still_catches_sys_exit(hostile) -> None:
    runner = InProcess()
    assert runner.call(hostile.pid) == os.getpid()
    with pytest.raises(WorkerExit, match=r"sys.exit\(4\)"):
        runner.call(hostile.leave, 4)


def test_last_words_prefer_a_rust_panic_to_the_stack_dump() -> None:
    log = (
        "\nthread '<unnamed>' (11855) panicked at core/src/ops/array/gather.rs:85:59:\n"
        "range start index 28 out of range for slice of length 12\n"
        "stack backtrace:\n   0: __rustc::rust_begin_unwind\n"
        "Fatal Python error: Aborted\n\nCurrent thread 0x00007f (most recent call first):\n"
        '  File "/x/tract.py", line 3 in run\n'
    )
    assert last_words(log) == (
        "panicked: range start index 28 out of range for slice of length 12 "
        "(core/src/ops/array/gather.rs:85:59)"
    )
    assert last_words("some message\nFatal Python error: Aborted\n") == "some message"


def test_stuck_at_names_the_users_frame_of_the_main_thread() -> None:
    dump = (
        "Thread 0x0001 (most recent call first):\n"
        '  File "/usr/lib/python3.11/threading.py", line 320 in wait\n'
        "\nCurrent thread 0x0002 (most recent call first):\n"
        '  File "/site-packages/torch/nn/modules/module.py", line 1 in _call_impl\n'
        '  File "/src/net.py", line 12 in forward\n'
        '  File "/repo/toolkit/nnkit/steps.py", line 80 in reference_outputs\n'
        '  File "/repo/toolkit/nnkit/worker.py", line 300 in _serve\n'
    )
    assert stuck_at(dump) == "forward at /src/net.py:12"
