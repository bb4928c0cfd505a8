"""Output files: a target is either the old file or the whole new one, and never a device lost.

Every file nnkit writes (ONNX models, ``.npz`` outputs, reports, plots) goes through
:func:`atomic_output`. What happens depends on what the path is:

- a regular file, or nothing yet: the content is written to a temporary file beside the
  target, then moved into place with ``os.replace``. On any failure, Ctrl-C and SIGTERM
  included, the target is untouched and the temporary file is removed.
- a symbolic link: the link is followed and its final target replaced as above; the link
  stays a link.
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): the
  finished content is written straight into it. Renaming a file over it would replace
  the device node.
- anything else (a directory, a socket, a block device): refused with one line.

OS errors on an output path (a full disk, a read-only file system, a name too long) are
:class:`~nnkit.errors.OutputPathError` naming the path and the errno's meaning, even when
they surface inside a writer (an exporter) that wraps them in an error of its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from nnkit.errors import OutputPathError

#: Errnos that say the output could not be stored, whatever layer raised them.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.ENAMETOOLONG}
)
#: Characters mkstemp adds to a temporary name's prefix and suffix: 8 random + ".tmp".
_TMP_EXTRA = 12


def check_writable(target: str | Path) -> Path:
    """Refuse, before any work is done, an output path that cannot be written.

    Returns:
        ``target`` as a :class:`~pathlib.Path` (a symlink is not replaced by its target:
        messages keep the name the user gave).

    Raises:
        OutputPathError: the folder is missing or read-only, the name is too long for the
            file system, the target is a folder, a socket or a block device, or read-only.
    """
    p = Path(target)
    _destination(p)
    return p


def _destination(p: Path) -> tuple[Path, bool]:
    """Where the bytes for ``p`` go, and whether they replace a regular file there.

    Returns:
        ``(path, replace)``: the path to write (a symlink's final target), and True for
        an atomic replace, False for writing straight into a character device or FIFO.

    Raises:
        OutputPathError: as :func:`check_writable`.
    """
    try:
        st: os.stat_result | None = os.stat(p)  # through symlinks
    except FileNotFoundError:  # nothing there, or a dangling link: created at its target
        st = None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            _check_name_length(p, p, p.parent)
        raise OutputPathError(_os_message(p, e)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"output path {str(p)!r} is a directory; give a file name")
    if st is not None and (
        stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or _is_descriptor(p)
    ):
        # Opened by its own name: /dev/stdout links to /proc/self/fd/1, which names a
        # pipe that realpath cannot spell, or a file the shell holds open.
        if not os.access(p, os.W_OK):
            raise OutputPathError(f"cannot write {str(p)!r}: the device is not writable")
        return p, False
    real = Path(os.path.realpath(p)) if os.path.islink(p) else p
    parent = real.parent if str(real.parent) else Path(".")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputPathError(
            f"cannot write {str(p)!r}: it is a {_kind(st.st_mode)}; nnkit writes regular "
            "files, character devices (/dev/null, /dev/stdout) and FIFOs"
        )
    if not os.path.isdir(parent):
        raise OutputPathError(f"cannot write {str(p)!r}: folder {str(parent)!r} does not exist")
    _check_name_length(p, real, parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {str(p)!r}: folder {str(parent)!r} is not writable")
    if st is not None and not os.access(real, os.W_OK):
        raise OutputPathError(f"cannot write {str(p)!r}: the file is read-only")
    return real, True


@contextlib.contextmanager
def atomic_output(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file for ``target``'s content; put it in place if the block succeeds.

    The temporary file is a regular file the block may write, reopen and read back (an
    exporter checks what it wrote). See the module docstring for what "in place" means
    for links, devices and FIFOs.

    Raises:
        OutputPathError: ``target`` cannot be written, or the block failed because the
            output could not be stored (full disk, quota, read-only file system).
    """
    p = check_writable(target)
    real, replace = _destination(p)
    folder = real.parent if replace else Path(tempfile.gettempdir())
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(real, folder), suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if replace:
            if real.exists():
                # Keep the old file's mode; mkstemp makes 0600 files.
                os.chmod(tmp, real.stat().st_mode & 0o777)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, real)
        else:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
            with tmp.open("rb") as src, _open_stream(real) as dst:
                shutil.copyfileobj(src, dst)
    except OSError as e:
        raise OutputPathError(_os_message(p, e)) from None
    except OutputPathError:
        raise
    except Exception as e:
        # A writer that wrapped the OS error in its own ("the exporter failed: OSError:
        # No space left on device; try the other exporter") blames the wrong thing.
        cause = write_error(e, folder)
        if cause is None:
            raise
        raise OutputPathError(_os_message(p, cause)) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def make_folder(folder: str | Path, *, what: str) -> Path:
    """Create ``folder`` (and its parents) if missing; ``what`` names it in the error.

    Raises:
        OutputPathError: it cannot be created (``cannot create the WHAT 'path': reason``).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(
            f"cannot create the {what} {str(folder)!r}: {e.strerror or e}"
        ) from None
    return folder


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_error(e: BaseException, folder: str | Path | None = None) -> OSError | None:
    """The OS error that says an output could not be stored, if ``e`` came from one.

    Looks through ``e``'s causes and contexts (``raise ... from None`` hides a context
    from tracebacks but keeps it) for an :class:`OSError` in :data:`WRITE_ERRNOS`. Where
    none is found and ``folder``'s file system has no space left, that is the reason.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in WRITE_ERRNOS:
            return cur
        todo.extend((cur.__cause__, cur.__context__))
    if folder is not None:
        with contextlib.suppress(OSError):
            if os.statvfs(folder).f_bavail == 0:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def check_distinct(outputs: Sequence[tuple[str, Path]], inputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output.

    Paths are compared as files: through symlinks, relative paths and hard links.
    Character devices and FIFOs (``/dev/stdout``) may take several outputs.

    Args:
        outputs: ``(what, path)`` of each file nnkit will write, e.g. ``("--json", p)``.
        inputs: ``(what, path)`` of each file it reads.

    Raises:
        OutputPathError: naming both options and the path.
    """
    files = [(what, p) for what, p in outputs if not _is_stream(p)]
    for what, out in files:
        for src_what, src in inputs:
            if same_file(out, src):
                raise OutputPathError(
                    f"{what} {str(out)!r} is the same file as {src_what} {str(src)!r}: writing it "
                    "would destroy an input; give another path"
                )
    for i, (what, out) in enumerate(files):
        for other_what, other in files[i + 1 :]:
            if same_file(out, other):
                raise OutputPathError(
                    f"{what} {str(out)!r} and {other_what} {str(other)!r} are one file; "
                    "give each output its own path"
                )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file (symlinks, relative paths, hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _is_stream(p: Path) -> bool:
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or _is_descriptor(p)


def _open_stream(p: Path) -> BinaryIO:
    """Open a device, FIFO or descriptor name for writing, without truncating anything.

    One of this process's own descriptors (``/dev/stdout`` redirected to a file) is
    written through a copy of it, sharing its offset, so the bytes land after what was
    printed there before instead of over it.
    """
    found = _descriptor(p)
    if found is not None and found[0] in ("self", "thread-self", str(os.getpid())):
        return os.fdopen(os.dup(found[1]), "wb")
    return open(p, "ab")


def _is_descriptor(p: Path) -> bool:
    return _descriptor(p) is not None


def _descriptor(p: Path) -> tuple[str, int] | None:
    """``(process, fd)`` where ``p`` or a link on its way names an open descriptor.

    ``/dev/stdout`` links to ``/proc/self/fd/1``; so may any link a user makes. Such a
    path is written into, never replaced: replacing what it resolves to would swap the
    file a shell holds open (or, through ``/dev/stdout`` itself, the link in /dev).
    """
    hop = os.path.abspath(p)
    for _ in range(40):  # the kernel's own limit on links followed
        match = _FD_PATH.match(hop)
        if match:
            return match.group(1) or "self", int(match.group(2))
        try:
            target = os.readlink(hop)
        except OSError:  # not a link (or gone): the chain ends here
            return None
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), target))
    return None


_FD_PATH = re.compile(r"^(?:/dev/fd|/proc/(self|thread-self|\d+)/fd)/(\d+)$")


def _check_name_length(p: Path, real: Path, parent: Path) -> None:
    limit = _name_max(parent) if os.path.isdir(parent) else 255
    size = len(os.fsencode(real.name))
    if size > limit:
        raise OutputPathError(
            f"cannot write {str(p)!r}: the file name is {size} bytes, over the file "
            f"system's limit of {limit}"
        )


def _tmp_prefix(real: Path, folder: Path) -> str:
    """``.NAME.`` shortened so that mkstemp's name fits the file system's NAME_MAX."""
    room = _name_max(folder) - _TMP_EXTRA - 2
    name = os.fsencode(real.name)[: max(room, 1)]
    return f".{os.fsdecode(name.decode('utf-8', 'ignore').encode('utf-8'))}."


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def _os_message(p: Path, e: OSError) -> str:
    why = (e.strerror or os.strerror(e.errno)) if e.errno else str(e)
    return f"cannot write {str(p)!r}: {why}"


#: The signals nnkit turns into a clean exit (Ctrl-C, SIGTERM, SIGHUP).
_DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def temporary_folder(prefix: str, *, dir: str | Path | None = None) -> Iterator[Path]:
    """A temporary folder, removed on exit, that a signal can never leave behind.

    ``tempfile.TemporaryDirectory`` leaves its folder when Ctrl-C or SIGTERM arrives
    after the folder is made and before the object that removes it exists. Here those
    signals are held back until the folder is in the block's care.
    """
    held = _hold_signals()
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    except BaseException:
        _release_signals(held)
        raise
    try:
        _release_signals(held)  # a signal that came meanwhile is raised here
        yield path
    finally:
        _remove_tree(path)


def _remove_tree(path: Path, *, tries: int = 20) -> None:
    """Remove ``path``; a process that is still dying can add a file while the tree is
    removed (the rmtree then leaves a folder it found empty): try again, briefly."""
    for _ in range(tries):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


def _hold_signals() -> set[int | signal.Signals] | None:
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)


def _release_signals(held: set[int | signal.Signals] | None) -> None:
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
