"""One exception family for everything a user can get wrong.

Every error nnkit raises on purpose derives from :class:`NnkitError`, which is a
:class:`click.ClickException`: the CLI prints it as one line on stderr and exits with
its ``exit_code`` (2: the request cannot be carried out). Library users catch
``NnkitError`` and get the same message.
"""

from __future__ import annotations

import re

import click

#: Exit status of a successful command.
EXIT_OK = 0
#: Exit status of a verdict that failed: an invalid model, a parity mismatch.
EXIT_FAILED = 1
#: Exit status of a request that cannot be carried out.
EXIT_USAGE = 2


class NnkitError(click.ClickException):
    """A request that cannot be carried out. Printed as one line, exit status 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str = "", *, detail: str = "") -> None:
        super().__init__(message)
        #: More than the one line: a traceback of the user's code, a runtime's log.
        #: The CLI shows it with ``--debug``.
        self.detail = detail

    def format_message(self) -> str:
        # One line, always: a multi-line cause (a native runtime's log block) is folded.
        return " ".join(self.message.split())


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
