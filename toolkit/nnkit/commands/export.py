"""``nnkit export``: a PyTorch model to a checked ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from nnkit.commands._options import exporter_option, input_spec_option, model_files
from nnkit.render import human_bytes


@click.command("export")
@click.argument("model")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ONNX file to write (written only if the export succeeds and checks).",
)
@exporter_option("torch.export-based (dynamo) or the TorchScript tracer.")
@click.option(
    "--opset",
    type=click.IntRange(7, 30),
    default=None,
    help="ONNX opset [default: the exporter's].",
)
@input_spec_option(
    "Input spec name:dims[:dtype], dims joined by x; label=N is dynamic with example size N "
    "(x:batch=2x3x32x32:float32). Required outside the zoo; repeat per input."
)
@click.option("--verbose", is_flag=True, help="Show the exporter's own console output.")
def command(
    model: str, out: Path, exporter: str, opset: int | None, inputs: tuple, verbose: bool
) -> None:
    """Export MODEL to ONNX, check the file, and write it to OUTPUT.

    MODEL is a zoo name (see `nnkit models`), path/to/file.py:Name or package.module:name,
    where Name is an nn.Module class or a function returning a module. Dynamic dims
    become symbolic in the file; provenance (nnkit and torch versions, exporter, model)
    goes into its metadata.
    """
    from nnkit.export import export_model
    from nnkit.fsutil import check_distinct, check_writable
    from nnkit.resolve import resolve_model

    check_writable(out)  # before the slow part
    check_distinct([("--output", out)], model_files(model))
    resolved = resolve_model(model, inputs=inputs)
    result = export_model(resolved, out, exporter=exporter, opset=opset, verbose=verbose)
    click.echo(
        f"exported {result.model} with {result.exporter} (opset {result.opset}) to {result.path} "
        f"[{human_bytes(result.size_bytes)}, {result.seconds:.2f} s]"
    )
    for fix in result.fixed_outputs:
        click.echo(
            f"note: the {exporter} exporter declared a dynamic output dim as fixed; "
            f"declared it symbolic ({fix})",
            err=True,
        )
