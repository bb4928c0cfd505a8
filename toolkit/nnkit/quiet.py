"""Keep native libraries' console noise from the user.

torch prints progress during a dynamo export and onnxruntime prints C++ log blocks when
a provider fails to load. Both write to the process's file descriptors from native
code, so :func:`captured` redirects fd 1 and 2 (and Python's ``sys.stdout``/``stderr``,
and warnings) into a temporary file, and hands back what was written.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class Captured:
    """What was written while captured; ``text`` and ``warnings`` are set when the block
    ends (``warnings``: the records of the Python warnings raised, also in ``text``)."""

    text: str = ""
    warnings: list[warnings.WarningMessage]

    def __init__(self) -> None:
        self.warnings = []


@contextlib.contextmanager
def captured(enabled: bool = True) -> Iterator[Captured]:
    """Capture everything written to stdout and stderr, native code included."""
    result = Captured()
    if not enabled:
        yield result
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = _redirect_fds(sink.fileno())
        text_sink = _Sink()
        try:
            with (
                contextlib.redirect_stdout(text_sink),
                contextlib.redirect_stderr(text_sink),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                yield result
        finally:
            _restore_fds(saved)
            sink.seek(0)
            result.warnings = list(caught)
            result.text = (
                sink.read().decode("utf-8", "replace")
                + text_sink.getvalue()
                + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            )


class _Sink(io.StringIO):
    """Python-level stdout and stderr while captured: code that closes ``sys.stdout``
    (a user's model does, sometimes) closes nothing of ours."""

    def close(self) -> None:
        """Ignored: the text is read when the capture ends."""


def _redirect_fds(target: int) -> list[tuple[int, int]]:
    saved = []
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        with contextlib.suppress(Exception):
            stream.flush()
        try:
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
        except OSError:  # no such fd (a daemon, some test runners): nothing to capture
            continue
    return saved


def _restore_fds(saved: list[tuple[int, int]]) -> None:
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)
