"""One exception family for everything a user can get wrong, and one for nnkit's bugs.

Every error nnkit raises on purpose derives from :class:`NnkitError`, a plain
:class:`Exception` that carries its exit status (``exit_code``) and one line
(:meth:`~NnkitError.format_message`). The library knows nothing of the command line:
``nnkit.cli`` maps these errors to one line on stderr and the exit status, as Flask and
Polygraphy keep click in their CLI. Library users catch ``NnkitError`` and get the same
message. The errors pickle with their attributes: they cross a worker's pipe.

A bug in nnkit (any other exception, or :class:`InternalError`) has its own exit status,
:data:`EXIT_INTERNAL`; :func:`failure` turns any exception into the one line, the exit
status and, for a bug, the traceback.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass

#: Exit status of a successful command.
EXIT_OK = 0
#: Exit status of a verdict that failed: an invalid model, a parity mismatch.
EXIT_FAILED = 1
#: Exit status of a request that cannot be carried out.
EXIT_USAGE = 2
#: Exit status of a bug in nnkit (an exception it did not raise on purpose).
EXIT_INTERNAL = 3

#: Where the CLI says a bug's traceback is (``nnkit --debug`` prints it).
DEBUG_HINT = "run with --debug for the traceback"


class NnkitError(Exception):
    """A request that cannot be carried out. Printed as one line, exit status 2.

    Args:
        message: what went wrong, naming what was given and what would be valid.
        detail: more than the one line: a traceback of the user's code, a runtime's log.
            The CLI shows it with ``--debug``.
    """

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str = "", *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: More than the one line: a traceback of the user's code, a runtime's log.
        #: The CLI shows it with ``--debug``.
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def format_message(self) -> str:
        """The message as one line: a multi-line cause (a native runtime's log) is folded."""
        return " ".join(self.message.split())


class InternalError(NnkitError):
    """A bug in nnkit, found where it can be named (a worker's unexpected exception).

    Exit status :data:`EXIT_INTERNAL`; ``detail`` holds the traceback where it struck.
    """

    exit_code = EXIT_INTERNAL
    #: Where the bug struck, as words after "internal error" (" in a worker").
    where: str = ""

    def format_message(self, hint: str = DEBUG_HINT) -> str:
        """One line that says this is a bug, and ``hint``: where its traceback is."""
        return (
            f"internal error{self.where}: {super().format_message()} "
            f"(this is a bug in nnkit; {hint})"
        )


class ModelSourceError(NnkitError):
    """A model reference that cannot be resolved: unknown name, bad file, missing class."""


class SpecError(NnkitError):
    """An input spec that cannot be parsed or does not fit the model."""


class InputError(NnkitError):
    """Input arrays that do not fit the model: names, ranks, dims, dtypes, bad files."""


class ModelFileError(NnkitError):
    """An ONNX file that is missing, unreadable or not a model."""


class ExportError(NnkitError):
    """An exporter that failed on a model."""


class BackendUnavailableError(NnkitError):
    """A backend that was asked for and cannot run on this machine."""


class BackendError(NnkitError):
    """A backend that failed to load or run a model it was given."""

    def __init__(
        self,
        message: str = "",
        *,
        backend: str = "",
        model_path: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message, detail=detail)
        self.backend = backend
        self.model_path = model_path


class OutputPathError(NnkitError):
    """An output path that cannot be written."""


@dataclass(frozen=True)
class Failure:
    """What went wrong, for a person and for a bug report: see :func:`failure`."""

    #: One line, without a traceback.
    message: str
    #: The exit status it calls for: :data:`EXIT_USAGE`, or :data:`EXIT_INTERNAL` for a bug.
    exit_code: int
    #: The traceback of a bug or of an exception nnkit did not raise on purpose (a
    #: worker's first, then where it reached this process); "" for an :class:`NnkitError`.
    traceback: str = ""

    @property
    def internal(self) -> bool:
        """A bug in nnkit."""
        return self.exit_code == EXIT_INTERNAL


def failure(e: BaseException, *, hint: str = DEBUG_HINT) -> Failure:
    """One line, an exit status and (for a bug) the traceback, for any exception.

    - an :class:`NnkitError`: its own line and exit status, no traceback (its ``detail``
      stays on it);
    - an :class:`InternalError` (a bug in a worker): its line, exit 3, the worker's
      traceback and then this process's;
    - running out of memory, or a write that failed for lack of space or permission:
      the machine's limit, not a bug: said as what it is, exit 2, with the traceback;
    - anything else is a bug in nnkit: ``internal error: Type: first line (this is a
      bug in nnkit; HINT)``, exit 3, with the traceback.

    Args:
        e: the exception.
        hint: where the traceback can be found, for the line of a bug (the CLI's
            ``--debug``; a report's ``traceback`` field).
    """
    if isinstance(e, InternalError):
        trace = _format(e)
        if e.detail:
            trace = (
                f"{e.detail.rstrip()}\n\nThe above exception, in a worker process, reached "
                f"nnkit here:\n\n{trace}"
            )
        return Failure(e.format_message(hint), EXIT_INTERNAL, trace)
    if isinstance(e, NnkitError):
        return Failure(e.format_message(), e.exit_code)
    if isinstance(e, MemoryError):
        said = f": {e}" if str(e) else ""
        message = (
            f"out of memory{said} (the model or its inputs need more memory than this "
            "machine gave; try smaller inputs)"
        )
        return Failure(message, EXIT_USAGE, _format(e))
    from nnkit.fsutil import WRITE_ERRNOS  # fsutil imports this module

    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        where = f" {e.filename!r}" if e.filename else ""
        return Failure(f"cannot write{where}: {e.strerror or e}", EXIT_USAGE, _format(e))
    first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
    message = f"internal error: {type(e).__name__}: {first} (this is a bug in nnkit; {hint})"
    return Failure(message, EXIT_INTERNAL, _format(e))


def _format(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def first_line(e: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name.

    Native runtimes raise messages of many lines (a C++ log block, a Rust backtrace);
    the first line is the one that says what went wrong.
    """
    lines = [ln.strip() for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def describe(e: BaseException) -> str:
    """One line for any exception: ours as they are, others as ``Type: first line``."""
    if isinstance(e, NnkitError):
        return e.format_message()
    return f"{type(e).__name__}: {first_line(e)}"


def root_cause(e: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``e``.

    Wrappers such as torch.onnx's "Failed to export the model ... step 1/3" say where it
    failed; the innermost cause says why.
    """
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
    # "Found the following conflicts ...:" says little without the line it introduces.
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else first_line(e)
    return f"{type(e).__name__}: {text}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
