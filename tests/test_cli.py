"""The command line as a whole: help for every command, startup without torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnkit.commands
from nnkit.cli import COMMANDS, cli
from nnkit.errors import EXIT_INTERNAL
from tests.conftest import run_cli, run_nnkit


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name):
    result = run_cli(name, "--help")
    assert result.exit_code == 0, result.stderr
    assert f"Usage: cli {name}" in result.stdout or f"Usage: nnkit {name}" in result.stdout


def test_group_help_lists_every_command():
    result = run_nnkit("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def _modules_after(*args: str) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['nnkit', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('nnkit', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [["--help"], ["models"], ["export", "--help"]])
def test_light_commands_do_not_import_torch_or_runtimes(args):
    loaded = _modules_after(*args)
    assert not {"torch", "onnxruntime", "openvino", "tract"} & loaded


def test_check_does_not_import_torch(zoo_file):
    loaded = _modules_after("check", str(zoo_file("linear", "dynamo")))
    assert "onnx" in loaded
    assert "torch" not in loaded


def test_python_dash_m_and_version():
    result = run_nnkit("--version")
    assert result.returncode == 0 and result.stdout.startswith("nnkit, version ")


def test_unknown_command_is_exit_2():
    result = run_nnkit("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_a_bug_is_exit_3_one_line_without_debug_and_a_traceback_with_it(monkeypatch, zoo_file):
    import nnkit.check

    path = str(zoo_file("relu", "torchscript"))

    def broken(path):
        raise ZeroDivisionError("planted bug\nsecond line")

    monkeypatch.setattr(nnkit.check, "check_file", broken)
    result = run_cli("check", path)
    assert result.exit_code == EXIT_INTERNAL == 3
    assert result.stderr.strip() == (
        "Error: internal error: ZeroDivisionError: planted bug "
        "(this is a bug in nnkit; run with --debug for the traceback)"
    )
    debug = run_cli("--debug", "check", path)
    assert debug.exit_code == 3
    err = debug.stderr.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert any("in broken" in line for line in err) and "ZeroDivisionError: planted bug" in err
    assert err[-1] == (
        "Error: internal error: ZeroDivisionError: planted bug "
        "(this is a bug in nnkit; its traceback is above)"
    )


#: A ``sitecustomize`` that plants a bug in the worker process only: ``nnkit.infer.run_file``
#: (the function the parent asks the worker to run) raises.
PLANTED = """\
import sys

if "nnkit.worker" in sys.orig_argv:
    import nnkit.infer

    def run_file(*args, **kwargs):
        raise ZeroDivisionError("planted bug in a worker")

    nnkit.infer.run_file = run_file
"""


def test_a_bug_in_a_worker_is_exit_3_with_the_workers_traceback_under_debug(zoo_file, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(PLANTED)
    model = str(zoo_file("relu", "torchscript"))
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }

    def nnkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "nnkit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    plain = nnkit("infer", model, "-p", "cpu")
    assert plain.returncode == 3, plain.stderr
    assert plain.stderr.strip() == (
        "Error: internal error in a worker: ZeroDivisionError: planted bug in a worker "
        "(this is a bug in nnkit; run with --debug for the traceback)"
    )
    assert plain.stdout == ""
    debug = nnkit("--debug", "infer", model, "-p", "cpu")
    assert debug.returncode == 3, debug.stderr
    worker, _, parent = debug.stderr.partition("reached nnkit here")
    # The worker's traceback (where the bug is), then the parent's (which call it was).
    assert "sitecustomize.py" in worker and "ZeroDivisionError: planted bug" in worker
    assert "run_file_isolated" in parent and "RemoteBug" in parent
    assert debug.stderr.strip().splitlines()[-1].endswith("its traceback is above)")


def test_a_bug_outside_any_command_is_exit_3_too(monkeypatch):
    import nnkit.cli

    def broken():
        raise RuntimeError("planted before the command")

    monkeypatch.setattr(nnkit.cli, "_guard_streams", broken)
    result = run_cli("models")
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.strip() == (
        "Error: internal error: RuntimeError: planted before the command "
        "(this is a bug in nnkit; run with --debug for the traceback)"
    )


def test_commands_return_their_exit_status_to_the_caller(monkeypatch, zoo_file, tmp_path):
    # Embedded (standalone_mode=False), the group hands back what the command returned.
    import nnkit.check

    good = str(zoo_file("relu", "torchscript"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(Path(good).read_bytes().replace(b"Relu", b"Rulu"))
    assert cli.main(["check", good], standalone_mode=False) == 0
    assert cli.main(["check", str(bad)], standalone_mode=False) == 1
    monkeypatch.setattr(nnkit.check, "check_file", lambda path: 1 / 0)
    assert cli.main(["check", good], standalone_mode=False) == 3


def test_one_exit_idiom_commands_return_their_status():
    """No command exits by itself (sys.exit, SystemExit, ctx.exit): it returns its status,
    and the group's main exits with it."""
    offenders = []
    for path in sorted(Path(nnkit.commands.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id == "SystemExit":
                offenders.append(f"{path.name}:{node.lineno} SystemExit")
            if isinstance(node, ast.Attribute) and node.attr in ("exit", "_exit"):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "command":
                assert ast.unparse(node.returns) == "int", path.name
    assert not offenders, offenders


def test_usage_errors_are_one_line_with_a_help_hint():
    result = run_nnkit("export", "linear")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: Missing option '-o' / '--output'. (see 'nnkit export --help')"
    )


def test_exporter_choice_matches_the_exporters():
    from nnkit.commands._options import EXPORTER_CHOICE
    from nnkit.export import EXPORTERS

    assert tuple(EXPORTER_CHOICE.choices) == EXPORTERS
