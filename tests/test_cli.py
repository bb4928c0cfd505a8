"""The command line as a whole: help for every command, startup without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nnkit.cli import COMMANDS
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


def test_a_bug_is_one_line_without_debug_and_a_traceback_with_it(monkeypatch, zoo_file):
    import nnkit.check

    path = str(zoo_file("relu", "torchscript"))

    def broken(path):
        raise ZeroDivisionError("planted bug\nsecond line")

    monkeypatch.setattr(nnkit.check, "check_file", broken)
    result = run_cli("check", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: internal error: ZeroDivisionError: planted bug "
        "(this is a bug in nnkit; run with --debug for the traceback)"
    )
    with pytest.raises(ZeroDivisionError):
        run_cli("--debug", "check", path)


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
