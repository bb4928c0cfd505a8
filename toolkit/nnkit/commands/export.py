"""``nnkit export``: a PyTorch model to a checked ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from nnkit.commands._options import (
    VARIANT_NAMES,
    exporter_option,
    ignore_output_option,
    input_spec_option,
    model_files,
    timeout_option,
)
from nnkit.errors import EXIT_OK
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
    "Input spec name:dims[:dtype][values], dims joined by x; label=N is dynamic with example "
    "size N; values a range [0,30522) or set {0,1} (x:batch=2x3x32x32:float32). Required "
    "outside the zoo; repeat per input, named after forward's parameter it feeds."
)
@ignore_output_option()
@click.option("--verbose", is_flag=True, help="Show the exporter's own console output.")
@click.option(
    "--keep-stack-traces",
    is_flag=True,
    help="Keep the dynamo exporter's per-node Python stack traces (absolute local paths) "
    "in the file's metadata [default: stripped].",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice(VARIANT_NAMES[1:]),
    help="Also write this rewrite of the file beside it, checked, with provenance metadata "
    "(OUT.onnx -> OUT.fp16.onnx); repeatable. int8-static calibrates on 16 seeded inputs "
    "drawn apart from parity's.",
)
@timeout_option("building and exporting the model")
def command(
    model: str,
    out: Path,
    exporter: str,
    opset: int | None,
    inputs: tuple,
    ignore_outputs: tuple[str, ...],
    verbose: bool,
    keep_stack_traces: bool,
    timeout: float,
    variants: tuple[str, ...] = (),
) -> int:
    """Export MODEL to ONNX, check the file, and write it to OUTPUT.

    MODEL is a zoo name (see `nnkit models`), path/to/file.py:Name or package.module:name,
    where Name is an nn.Module class or a function returning a module. Dynamic dims
    become symbolic in the file; provenance (nnkit and torch versions, exporter, model)
    goes into its metadata. The model's code runs in a worker process: one that exits,
    crashes or hangs is an error (exit 2), and nothing it prints reaches stdout.
    """
    from nnkit.export import export_reference
    from nnkit.fsutil import check_distinct, check_writable

    check_writable(out)  # before the slow part
    targets = [("--output", out)]
    if variants:
        from nnkit.rewrites import require_tools, variant_path

        require_tools(variants)
        targets += [("--variant", check_writable(variant_path(out, v))) for v in variants]
    check_distinct(targets, model_files(model))
    result = export_reference(
        model,
        out,
        inputs=tuple(inputs),
        ignore_outputs=tuple(ignore_outputs),
        timeout=timeout,
        verbose=verbose,
        exporter=exporter,
        opset=opset,
        keep_stack_traces=keep_stack_traces,
    )
    click.echo(
        f"exported {result.model} with {result.exporter} (opset {result.opset}) to {result.path} "
        f"[{human_bytes(result.size_bytes)}, {result.seconds:.2f} s]"
    )
    for note in result.notes():
        click.echo(f"note: {note}", err=True)
    if variants:
        _write_variants(out, variants, timeout)
    return EXIT_OK


def _write_variants(out: Path, variants: tuple[str, ...], timeout: float) -> None:
    """Rewrite the exported file as each variant, beside it, in a worker (a tool that
    crashes or hangs is an error, exit 2, and no half-written file)."""
    from nnkit.rewrites import RewriteError, rewrite_file, variant_path
    from nnkit.worker import Worker, WorkerFailure

    with Worker("rewrites") as worker:
        for variant in dict.fromkeys(variants):
            try:
                made = worker.call(
                    rewrite_file, variant, out, variant_path(out, variant), timeout=timeout
                )
            except WorkerFailure as e:
                raise RewriteError(f"rewriting {out} as {variant}: {e.format_message()}") from None
            click.echo(
                f"wrote {variant} to {made.path} [{human_bytes(made.size_bytes)}, "
                f"{made.size_bytes / made.base_size_bytes:.2f}x the base; {made.tool}]"
            )
            for note in made.notes:
                click.echo(f"note: {made.path.name} {note}", err=True)
