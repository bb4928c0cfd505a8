"""``nnkit check``: the ONNX checker's verdict and a summary of the file."""

from __future__ import annotations

from pathlib import Path

import click

from nnkit.commands._options import emit_json
from nnkit.errors import EXIT_FAILED, EXIT_OK
from nnkit.render import human_bytes, table


@click.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the verdict and summary as JSON.")
def command(file: Path, as_json: bool) -> int:
    """Check FILE with the full ONNX checker (strict shape inference) and summarise it.

    Exit status: 0 valid, 1 invalid, 2 missing or unreadable.
    """
    from nnkit.check import check_file

    result = check_file(file)
    if as_json:
        emit_json(result.to_dict())
    else:
        _render(file, result)
    return EXIT_OK if result else EXIT_FAILED


def _render(file: Path, result) -> None:
    s = result.summary
    verdict = "valid" if result else f"INVALID: {result.errors[0]}"
    click.echo(f"{file}: {verdict}")
    if s is None:
        return
    opsets = ", ".join(f"{d} {v}" for d, v in s.opsets.items())
    click.echo(f"  IR version {s.ir_version}, opsets: {opsets}; producer: {s.producer or '-'}")
    click.echo(
        f"  {s.node_count} nodes, {s.parameter_count:,} parameters, {human_bytes(s.size_bytes)}"
    )
    io_rows = [
        [
            kind,
            t["name"],
            "[any shape]"
            if t["shape"] is None
            else "[" + ", ".join("?" if d is None else str(d) for d in t["shape"]) + "]",
            t["type"],
        ]
        for kind, items in (("input", s.inputs), ("output", s.outputs))
        for t in items
    ]
    click.echo(_indent(table(["", "name", "shape", "dtype"], io_rows)))
    click.echo("  operators: " + ", ".join(f"{op} x{n}" for op, n in s.operators.items()))
    if s.metadata:
        click.echo("  metadata:")
        for k, v in s.metadata.items():
            click.echo(f"    {k}: {v}")


def _indent(text: str) -> str:
    return "\n".join("  " + ln for ln in text.splitlines())
