"""Run code that can end, hang or crash a process in a child process nnkit controls.

Users' models (their import, ``__init__`` and ``forward``, and the exporter tracing them)
and native runtimes (tract aborts the process on some files) run in a :class:`Worker`: a
child Python process (``python -m nnkit.worker``) that takes calls over a private pipe.
Whatever the code does, the parent stays in charge:

- it calls ``sys.exit`` or ``os._exit``, or the runtime aborts (a Rust panic, SIGSEGV):
  the call raises :class:`WorkerLost`, saying how the process ended and the last thing it
  printed (the panic message);
- it runs past the timeout: the worker's Python stacks are dumped (``faulthandler``), its
  process group is killed (the user's threads and subprocesses with it), and the call
  raises :class:`WorkerTimeout`, naming where it was stuck;
- it prints: the worker's stdout and stderr go to a log file, never to nnkit's stdout,
  which stays machine-readable.

A worker that died is started afresh by the next call. :class:`InProcess` has the same
``call`` and runs in the calling process: for objects that cannot cross a process boundary
(an ``nn.Module`` handed to the Python API). It still turns ``SystemExit`` into an error.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import IO, Any, TypeVar

from nnkit.errors import InternalError, NnkitError

T = TypeVar("T")

#: Seconds a worker is given to write its stacks after SIGUSR1, before it is killed.
STACK_GRACE = 2.0
#: Seconds a closing worker is given to exit after its pipe closes, before it is killed.
CLOSE_GRACE = 2.0


class WorkerFailure(NnkitError):
    """A call that did not return: the worker died, or ran out of time. ``detail`` holds
    what the worker printed since the call began (its stacks, after a timeout)."""


class WorkerLost(WorkerFailure):
    """The worker process ended during a call: an exit, a signal (abort, segfault)."""


class WorkerTimeout(WorkerFailure):
    """A call ran past its timeout; the worker was killed."""

    def __init__(self, message: str = "", *, detail: str = "", where: str = "") -> None:
        super().__init__(message, detail=detail)
        #: Where the call was stuck (``forward at net.py:12``), or "".
        self.where = where


class WorkerExit(WorkerFailure):
    """The called code raised ``SystemExit`` (``sys.exit``); the worker lives on."""


class RemoteBug(InternalError):
    """An unexpected exception in the worker: a bug in nnkit, exit status 3. ``detail``
    is its traceback in the worker (:func:`nnkit.errors.failure` adds this process's)."""

    where = " in a worker"


class InProcess:
    """The :class:`Worker` interface, run in this process (no isolation, no timeout)."""

    label = "in-process"

    def call(
        self, fn: Callable[..., T], /, *args: Any, timeout: float | None = None, **kw: Any
    ) -> T:
        try:
            return fn(*args, **kw)
        except SystemExit as e:
            raise WorkerExit(_exit_message(e.code, _raised_at(e))) from None

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker:
    """A child Python process that runs calls for this one (see the module docstring).

    Args:
        label: what runs in it, for messages ("PyTorch", "tract").
        env: extra environment variables for the child.
        show_output: let what the worker prints through to this process's stderr
            (``--verbose``), instead of keeping it in a log; never to stdout.
    """

    def __init__(
        self, label: str, *, env: dict[str, str] | None = None, show_output: bool = False
    ) -> None:
        self.label = label
        self._env = env or {}
        self._show = show_output
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None
        self._log: IO[bytes] | None = None
        _LIVE.add(self)

    # -- the contract -----------------------------------------------------------------
    def call(
        self, fn: Callable[..., T], /, *args: Any, timeout: float | None = None, **kw: Any
    ) -> T:
        """Run ``fn(*args, **kw)`` in the worker and return its result.

        ``fn`` must be a module-level function, and its arguments and result picklable.

        Raises:
            NnkitError: what ``fn`` raised, when it is nnkit's own error type.
            WorkerExit: ``fn`` raised SystemExit.
            WorkerLost: the worker process ended during the call.
            WorkerTimeout: the call ran past ``timeout`` seconds (None or 0: no limit).
            RemoteBug: any other exception in the worker (its traceback in ``detail``).
        """
        self._ensure_started()
        assert self._requests is not None and self._replies is not None
        mark = self._log_size()
        try:
            self._requests.send((fn, args, kw))
        except (BrokenPipeError, ConnectionError, OSError):
            raise self._lost(mark) from None
        try:
            if not self._replies.poll(timeout or None):
                raise self._timed_out(mark, timeout or 0.0)
            kind, payload, detail = self._replies.recv()
        except (EOFError, ConnectionError, OSError):
            raise self._lost(mark) from None
        except WorkerFailure:
            raise
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) while the worker runs: what it is doing is
            # abandoned, and it must not go on writing into folders being cleaned up.
            self._kill()
            raise
        if kind == "ok":
            return payload
        if kind == "raise":
            raise payload
        if kind == "exit":
            code, where = payload
            raise WorkerExit(_exit_message(code, where), detail=detail)
        raise RemoteBug(payload, detail=detail)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _kill(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
        self.close()

    def close(self) -> None:
        """End the worker: close its pipe, then kill its process group if it lingers."""
        proc, self._proc = self._proc, None
        for conn in (self._requests, self._replies):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        self._requests = self._replies = None
        if proc is not None:
            try:
                proc.wait(timeout=CLOSE_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the process --------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self.alive:
            return
        self.close()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        self._log = tempfile.TemporaryFile(prefix="nnkit-worker-")  # noqa: SIM115 - closed in close()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "nnkit.worker", str(req_r), str(rep_w)],
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                stdout=2 if self._show else self._log,
                stderr=2 if self._show else self._log,
                start_new_session=True,  # its own process group: killed as one
                env={**os.environ, **self._env},
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._requests = Connection(req_w, readable=False)
        self._replies = Connection(rep_r, writable=False)
        # The child imports what the parent can: the same module search path.
        self._requests.send({"sys_path": list(sys.path), "cwd": os.getcwd()})

    def _log_size(self) -> int:
        assert self._log is not None
        self._log.seek(0, os.SEEK_END)
        return self._log.tell()

    def _log_since(self, mark: int) -> str:
        if self._log is None:
            return ""
        self._log.seek(mark)
        return self._log.read().decode("utf-8", "replace")

    def _lost(self, mark: int) -> WorkerLost:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code = proc.returncode
        log = self._log_since(mark)
        self.close()
        how = _ending(code)
        said = last_words(log)
        return WorkerLost(f"the process {how}{': ' + said if said else ''}", detail=log)

    def _timed_out(self, mark: int, timeout: float) -> WorkerTimeout:
        proc = self._proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGUSR1)  # faulthandler writes every thread's stack
        log = self._settled_log(mark)
        _kill_group(proc)
        self.close()
        where = stuck_at(log)
        at = f"; it was at {where}" if where else ""
        return WorkerTimeout(
            f"did not finish within {timeout:g} s (--timeout){at}", detail=log, where=where
        )

    def _settled_log(self, mark: int) -> str:
        """The log since ``mark``, once the stack dump has stopped growing."""
        deadline = time.monotonic() + STACK_GRACE
        size = -1
        while time.monotonic() < deadline:
            now = self._log_size()
            if now == size and "most recent call first" in self._log_since(mark):
                break
            size = now
            time.sleep(0.1)
        return self._log_since(mark)


#: Workers not yet closed: closed when the interpreter exits.
_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for worker in list(_LIVE):
        worker.close()


def _exit_message(code: object, where: str) -> str:
    return f"the model's code called sys.exit({code!r}){' in ' + where if where else ''}"


def _raised_at(e: BaseException) -> str:
    """The innermost frame of a traceback outside nnkit and installed packages."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not _library(f.filename)]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.name} at {f.filename}:{f.lineno}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _ending(code: int | None) -> str:
    """How a process ended, in words: ``aborted (SIGABRT)``, ``exited with status 0``."""
    if code is None:
        return "ended"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        word = {"SIGABRT": "aborted", "SIGSEGV": "crashed", "SIGKILL": "was killed"}.get(
            name, "was stopped"
        )
        return f"{word} ({name})"
    return f"exited with status {code}"


_FAULT_LINE = re.compile(r'^(Fatal Python error|Current thread|Thread 0x|File "|Extension modules)')
_PANIC = re.compile(r"panicked at (.*)")


def last_words(log: str) -> str:
    """The line of a dying process's output that says why: a Rust panic's message, else
    the last line that is not part of a Python stack dump."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        m = _PANIC.search(line)
        if m:
            message = lines[i + 1] if i + 1 < len(lines) else ""
            where = m.group(1).rstrip(":")
            return f"panicked: {message} ({where})" if message else f"panicked at {where}"
    kept = [ln for ln in lines if not _FAULT_LINE.match(ln) and not ln.startswith("<")]
    return kept[-1][:300] if kept else ""


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def stuck_at(stacks: str) -> str:
    """Where the worker's main thread was, from a faulthandler dump: the innermost frame
    of code that is not nnkit's, torch's or another installed package's, else the
    innermost frame (``forward at /src/net.py:12``)."""
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", stacks)
    main = next((b for b in blocks if "nnkit/worker.py" in b), "")
    frames = [m.groupdict() for m in _FRAME.finditer(main)]  # most recent call first
    if not frames:
        return ""
    own = [f for f in frames if not _library(f["file"])]
    f = own[0] if own else frames[0]
    return f"{f['func']} at {f['file']}:{f['line']}"


def _library(path: str) -> bool:
    """Code that is not the user's: nnkit, installed packages, the standard library."""
    return "site-packages" in path or "/nnkit/" in path or path.startswith(("<", _STDLIB))


_STDLIB = sysconfig.get_paths()["stdlib"]


def preload(modules: list[str]) -> None:
    """Import ``modules`` (a worker's heavy imports, done before any timed call)."""
    import importlib

    for name in modules:
        importlib.import_module(name)


# -- the child ------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no orphan keeps running)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _serve(requests: Connection, replies: Connection) -> None:
    while True:
        try:
            message = requests.recv()
        except EOFError:
            return
        except Exception as e:  # a request that cannot be unpickled here
            replies.send(("bug", f"cannot read the request: {type(e).__name__}: {e}", ""))
            continue
        fn, args, kw = message
        try:
            reply = ("ok", fn(*args, **kw), "")
        except SystemExit as e:
            reply = ("exit", (e.code, _raised_at(e)), traceback.format_exc())
        except NnkitError as e:
            reply = ("raise", e, traceback.format_exc())
        except MemoryError as e:  # the machine's limit, not a bug: said as the parent says it
            from nnkit.errors import failure

            reply = ("raise", NnkitError(failure(e).message), traceback.format_exc())
        except BaseException as e:
            reply = ("bug", f"{type(e).__name__}: {e}", traceback.format_exc())
        try:
            replies.send(reply)
        except Exception as e:  # a result or an error that does not pickle
            replies.send(("bug", f"cannot send the result: {type(e).__name__}: {e}", ""))


def main(argv: list[str]) -> None:
    """The worker's entry point: ``python -m nnkit.worker REQUEST_FD REPLY_FD``."""
    import faulthandler

    _die_with_parent()
    os.dup2(2, 1)  # what the user's code prints goes to the log, not to a pipe of ours
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    requests = Connection(int(argv[0]), writable=False)
    replies = Connection(int(argv[1]), readable=False)
    hello = requests.recv()
    sys.path[:] = hello["sys_path"]
    with contextlib.suppress(OSError):
        os.chdir(hello["cwd"])
    _serve(requests, replies)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a user's code may have closed it
            stream.flush()
    os._exit(0)  # threads the user's code left running must not keep the worker alive


if __name__ == "__main__":
    main(sys.argv[1:])
