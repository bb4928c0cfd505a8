"""``nnkit doctor``: Python, packages, every backend probed for real, the CPU and GPUs."""

from __future__ import annotations

import click

from nnkit.commands._options import emit_json
from nnkit.errors import EXIT_OK


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def command(as_json: bool) -> int:
    """Report what this machine can run: each backend is probed by running a tiny model.

    Exit status 0 even where some backends are unavailable: this is a report.
    """
    from nnkit.doctor import collect, render

    report = collect()
    if as_json:
        emit_json(report)
    else:
        click.echo(render(report))
    return EXIT_OK
