"""``nnkit models``: the reference zoo."""

from __future__ import annotations

import click

from nnkit.commands._options import emit_json
from nnkit.errors import EXIT_OK
from nnkit.render import table


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
def command(as_json: bool) -> int:
    """List the reference zoo: each model's inputs, outputs and tolerance.

    Any zoo name works as MODEL in export, parity and bench.
    """
    from nnkit.models import ZOO

    rows = [
        {
            "name": e.name,
            "layer": e.summary,
            "inputs": [str(s) for s in e.inputs],
            "outputs": list(e.outputs),
            "atol": e.atol,
            "rtol": e.rtol,
        }
        for e in ZOO.values()
    ]
    if as_json:
        emit_json(rows)
        return EXIT_OK
    click.echo(
        table(
            ["name", "inputs", "outputs", "atol", "rtol", "layer"],
            [
                [
                    r["name"],
                    " ".join(r["inputs"]),
                    ",".join(r["outputs"]),
                    f"{r['atol']:g}",
                    f"{r['rtol']:g}",
                    r["layer"],
                ]
                for r in rows
            ],
        )
    )
    return EXIT_OK
