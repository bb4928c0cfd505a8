"""The ``nnkit`` command line: a click group whose commands load when called.

Each command lives in ``nnkit.commands.<name>``: it parses, calls the library, renders.
Only the command that runs is imported, so ``nnkit --help`` and ``nnkit check`` never
import torch or a runtime. Errors a user can cause are :class:`nnkit.errors.NnkitError`
(one line, exit 2); anything else is a bug, shown as one line unless ``--debug``.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from nnkit import __version__
from nnkit.errors import EXIT_USAGE, NnkitError

#: command name -> module under nnkit.commands; the order of ``nnkit --help``.
COMMANDS = {
    "models": "models",
    "export": "export",
    "check": "check",
    "infer": "infer",
    "parity": "parity",
    "bench": "bench",
    "doctor": "doctor",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return importlib.import_module(f"nnkit.commands.{COMMANDS[cmd_name]}").command

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the CLI; every error a user can cause ends as one line on stderr."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"Error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NnkitError as e:
            if ctx.find_root().params.get("debug") and e.detail:
                click.echo(e.detail.rstrip(), err=True)  # the user's traceback, a runtime's log
            raise
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if ctx.find_root().params.get("debug"):
                raise
            traceback.clear_frames(e.__traceback__)
            first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
            click.echo(
                f"Error: internal error: {type(e).__name__}: {first} "
                "(this is a bug in nnkit; run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_USAGE)


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
    2 the request cannot be carried out (bad usage or input, backend not available).
    """


def main() -> None:
    """Console entry point."""
    cli.main(prog_name="nnkit")
