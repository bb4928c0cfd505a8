"""Atomic output files: a target is either the old file or the whole new one.

Every file nnkit writes (ONNX models, ``.npz`` outputs, reports) goes through
:func:`atomic_output`: written to a temporary file beside the target, then moved into
place with ``os.replace``. On any failure, Ctrl-C included, the target is untouched and
the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nnkit.errors import OutputPathError


def check_writable(target: str | Path) -> Path:
    """Refuse, before any work is done, an output path that cannot be written.

    Raises:
        OutputPathError: the folder is missing or read-only, or the target is a folder.
    """
    p = Path(target)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputPathError(f"output path {str(p)!r} is a directory; give a file name")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {str(p)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {str(p)!r}: folder {str(parent)!r} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"cannot write {str(p)!r}: the file is read-only")
    return p


@contextlib.contextmanager
def atomic_output(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place if the block succeeds."""
    p = check_writable(target)
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if p.exists():
            # Keep the old file's mode; mkstemp makes 0600 files.
            os.chmod(tmp, p.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except OSError as e:
        raise OutputPathError(f"cannot write {str(p)!r}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
