"""The ``nnkit`` command line: a click group whose commands load when called.

Each command lives in ``nnkit.commands.<name>``: it parses, calls the library, renders.
Only the command that runs is imported, so ``nnkit --help`` and ``nnkit check`` never
import torch or a runtime.

Click lives here and in ``nnkit.commands`` only: the library raises
:class:`nnkit.errors.NnkitError` and this module maps it to one line on stderr and its
exit status (2). Anything else is a bug in nnkit: one line and exit status 3
(``EXIT_INTERNAL``), its traceback (a worker's included) with ``--debug``.

A command returns its exit status (``EXIT_OK``, ``EXIT_FAILED``) and :meth:`LazyGroup.main`
exits with it: the one place the process exits.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import sys
import threading
import traceback
from typing import Any

import click

from nnkit import __version__
from nnkit.errors import DEBUG_HINT, EXIT_OK, NnkitError, failure

#: command name -> module under nnkit.commands; the order of ``nnkit --help``.
COMMANDS = {
    "models": "models",
    "export": "export",
    "check": "check",
    "infer": "infer",
    "parity": "parity",
    "localize": "localize",
    "bench": "bench",
    "doctor": "doctor",
    "report": "report",
}


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, so that cleanup runs as on Ctrl-C.

    A :class:`KeyboardInterrupt`: every ``finally`` and context manager that cleans up
    after Ctrl-C (temporary files beside targets, temporary folders) runs for it too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Signals handled as Ctrl-C is: clean up, one line, exit 128 + the signal's number.
CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, frame: object) -> None:
    # A second signal would interrupt the cleanup itself: until the exit, they are ignored.
    for sig in (*CLEANUP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


class _PipeGuard(io.RawIOBase):
    """A file descriptor that, once its reader has gone (EPIPE), writes to /dev/null.

    Python's advice for a closed pipe (``nnkit parity | head``) is to point stdout at
    /dev/null; doing it at the first failed write, instead of at the top, lets the
    command finish: the reports are written and the exit status is the verdict.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._fd)
            os.close(null)
            return len(memoryview(data))


def _guard_streams() -> dict[str, Any]:
    """Make stdout and stderr survive a reader that went away; return the originals.

    A standard descriptor that is closed (``nnkit ... >&-``) is opened on /dev/null
    first, so no file nnkit opens later takes its number and receives console output.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    saved: dict[str, Any] = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:  # closed when Python started: write to /dev/null instead
            saved[name] = None
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
            continue
        try:
            fd = stream.fileno()
            stream.flush()
        except (AttributeError, ValueError, OSError):  # CliRunner's, or a closed stream
            continue
        saved[name] = stream
        guarded = io.TextIOWrapper(
            io.BufferedWriter(_PipeGuard(fd)),
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
            write_through=getattr(stream, "write_through", False),
        )
        setattr(sys, name, guarded)
    return saved


def _exit_line(e: BaseException) -> tuple[str, int]:
    """The one line and exit status of an interrupted run: 128 + the signal's number."""
    # click turns a KeyboardInterrupt into click.Abort, raised from it.
    cause = e if isinstance(e, Interrupted) else e.__cause__ or e.__context__
    if isinstance(cause, Interrupted):
        name = signal.Signals(cause.signum).name
        return f"Aborted ({name}).", 128 + cause.signum
    return "Aborted.", 128 + signal.SIGINT


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return importlib.import_module(f"nnkit.commands.{COMMANDS[cmd_name]}").command

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the CLI; every error a user can cause ends as one line on stderr.

        SIGTERM and SIGHUP clean up as Ctrl-C does and exit 128 + the signal; a closed
        stdout or stderr (a pipe into ``head``) does not lose the exit status.
        """
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        handlers = {sig: signal.getsignal(sig) for sig in (*CLEANUP_SIGNALS, signal.SIGINT)}
        main_thread = threading.current_thread() is threading.main_thread()
        streams: dict[str, Any] = {}
        try:
            if main_thread:
                for sig in CLEANUP_SIGNALS:
                    signal.signal(sig, _on_signal)
            streams = _guard_streams()
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"Error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt) as e:
            line, status = _exit_line(e)
            click.echo(line, err=True)
            sys.exit(status)
        except Exception as e:  # raised outside a command (which :meth:`invoke` maps)
            sys.exit(report_error(e))
        finally:
            for name, stream in streams.items():
                with contextlib.suppress(OSError, ValueError):
                    getattr(sys, name).flush()
                setattr(sys, name, stream)
            if main_thread:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            return report_error(e, debug=bool(ctx.find_root().params.get("debug")))


def report_error(e: Exception, *, debug: bool = False) -> int:
    """Print ``e`` as one line on stderr (``Error: ...``); return the exit status it calls for.

    With ``debug``, what lies behind the line comes first: a bug's traceback (a worker's
    and then this process's), or an :class:`NnkitError`'s ``detail`` (the user's
    traceback when an export fails, a runtime's log).
    """
    f = failure(e, hint="its traceback is above" if debug else DEBUG_HINT)
    if debug:
        behind = f.traceback or (e.detail if isinstance(e, NnkitError) else "")
        if behind:
            click.echo(behind.rstrip(), err=True)
    traceback.clear_frames(e.__traceback__)
    click.echo(f"Error: {f.message}", err=True)
    return f.exit_code


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnkit")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the full traceback of an unexpected error, and what lies behind a one-line "
    "error (the model's traceback when an export fails, a runtime's log).",
)
def cli(debug: bool) -> None:
    """Export PyTorch models to ONNX, validate them, run them on every ONNX runtime,
    and check each runtime against PyTorch.

    \b
    Exit status: 0 success, 1 a verdict failed (invalid model, parity mismatch),
    2 the request cannot be carried out (bad usage or input, backend not
    available), 3 a bug in nnkit (--debug shows its traceback), 128+N stopped
    by signal N.
    """


def main() -> None:
    """Console entry point."""
    cli.main(prog_name="nnkit")
