"""The error family: plain exceptions that pickle, one line each, a bug told from a request.

The library raises :class:`NnkitError` and knows nothing of click; ``nnkit.cli`` maps
errors to exit statuses (tested in tests/test_cli.py).
"""

from __future__ import annotations

import ast
import errno
import importlib
import inspect
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import nnkit
from nnkit.errors import (
    EXIT_INTERNAL,
    EXIT_USAGE,
    BackendError,
    InternalError,
    NnkitError,
    failure,
)

PACKAGE = Path(nnkit.__file__).parent
#: Where click may be imported: the command line, and nothing else.
CLI_MODULES = ("nnkit.cli", "nnkit.__main__", "nnkit.commands")


def _library_modules() -> list[str]:
    """Every module of the package but the command line's (models included)."""
    names = [
        m.name
        for m in pkgutil.walk_packages(nnkit.__path__, "nnkit.")
        if not m.name.startswith(CLI_MODULES)
    ]
    return ["nnkit", *sorted(names)]


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _every_error_class() -> list[type[NnkitError]]:
    for name in _library_modules():
        importlib.import_module(name)
    return sorted({NnkitError, *_subclasses(NnkitError)}, key=lambda c: c.__qualname__)


def _made(cls: type[NnkitError]) -> NnkitError:
    """An instance with every keyword its constructor takes set to a value of its own."""
    extra = {
        name: f"{name} value"
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name != "detail"
    }
    return cls("what went wrong\n  on two lines", detail="Traceback ...\nthe detail", **extra)


def test_the_error_family_is_not_a_click_exception() -> None:
    import click

    assert issubclass(NnkitError, Exception)
    assert not issubclass(NnkitError, click.ClickException)
    e = NnkitError("unknown model 'x'")
    assert str(e) == e.message == "unknown model 'x'" and e.exit_code == EXIT_USAGE


def test_every_error_class_pickles_with_its_attributes() -> None:
    classes = _every_error_class()
    names = {c.__name__ for c in classes}
    # The walk found the errors defined outside errors.py too: it cannot pass on nothing.
    assert {"RemoteBug", "WorkerTimeout", "ToleranceError", "ReferenceFailed"} <= names, names
    for cls in classes:
        e = _made(cls)
        e.message = e.message + " (edited after raising)"  # as export.py does
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is cls
        assert vars(back) == vars(e), cls
        assert (back.message, back.detail, back.exit_code) == (e.message, e.detail, e.exit_code)
        assert back.format_message() == e.format_message()
        assert "\n" not in back.format_message() and "(edited after raising)" in str(back)


def test_keyword_attributes_cross_the_pickle() -> None:
    e = BackendError("tract: no", backend="tract", model_path="m.onnx", detail="log")
    back = pickle.loads(pickle.dumps(e))
    assert (back.backend, back.model_path, back.detail) == ("tract", "m.onnx", "log")


def test_the_library_never_imports_click() -> None:
    # Every import statement, module level or inside a function.
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if module.startswith(CLI_MODULES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "click" or name.startswith(CLI_MODULES):
                    offenders.append(f"{module}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_every_library_module_imports_without_click() -> None:
    modules = _library_modules()
    code = (
        "import importlib, sys\n"
        "sys.modules['click'] = None  # import click now raises ImportError\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(modules) > 30 and "nnkit.parity" in modules and "nnkit.backends.tract" in modules
    # and the CLI does need it: the check above can fail
    blocked = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['click'] = None; import nnkit.cli"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert blocked.returncode != 0 and "click" in blocked.stderr


# -- failure(): any exception as one line, an exit status and a traceback ------------------


def _raised(e: BaseException) -> BaseException:
    def planted() -> None:
        raise e

    try:
        planted()
    except BaseException as caught:  # any exception: the point of the helper
        return caught
    raise AssertionError("not raised")


def test_a_request_error_is_its_own_line_and_status_without_a_traceback() -> None:
    f = failure(_raised(NnkitError("bad --input 'x'\n  more", detail="the user's traceback")))
    assert (f.message, f.exit_code, f.traceback) == ("bad --input 'x' more", EXIT_USAGE, "")
    assert not f.internal


def test_an_unexpected_exception_is_a_bug_with_its_traceback() -> None:
    f = failure(_raised(ZeroDivisionError("planted bug\nsecond line")))
    assert f.internal and f.exit_code == EXIT_INTERNAL == 3
    assert f.message == (
        "internal error: ZeroDivisionError: planted bug "
        "(this is a bug in nnkit; run with --debug for the traceback)"
    )
    assert f.traceback.startswith("Traceback (most recent call last):")
    assert "in planted" in f.traceback and "ZeroDivisionError: planted bug" in f.traceback
    where = failure(_raised(KeyError("k")), hint="its traceback is in the JSON report")
    assert where.message.endswith("(this is a bug in nnkit; its traceback is in the JSON report)")


def test_an_internal_error_keeps_the_traceback_it_carries_first() -> None:
    e = _raised(InternalError("KeyError: 'k'", detail="Traceback (in the worker)\nKeyError: 'k'"))
    f = failure(e, hint="see above")
    assert f.exit_code == EXIT_INTERNAL
    assert f.message == "internal error: KeyError: 'k' (this is a bug in nnkit; see above)"
    head, _, tail = f.traceback.partition("reached nnkit here")
    assert head.startswith("Traceback (in the worker)") and "in planted" in tail


def test_the_machines_limits_are_not_bugs() -> None:
    memory = failure(_raised(MemoryError()))
    assert memory.exit_code == EXIT_USAGE and memory.message.startswith("out of memory (")
    assert "MemoryError" in memory.traceback
    full = failure(_raised(OSError(errno.ENOSPC, "No space left on device", "/out/r.json")))
    assert (full.message, full.exit_code) == (
        "cannot write '/out/r.json': No space left on device",
        EXIT_USAGE,
    )
    other = failure(_raised(OSError(errno.EBADF, "Bad file descriptor")))
    assert other.internal and "OSError: [Errno 9] Bad file descriptor" in other.message


@pytest.mark.parametrize("cls", [NnkitError, BackendError, InternalError])
def test_format_message_is_one_line(cls: type[NnkitError]) -> None:
    assert "\n" not in cls("a\n\n  b\tc").format_message()
