"""``nnkit parity``: every model x exporter x backend x shape case, judged against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from nnkit.commands._options import TOLERANCE, CommaList, input_spec_option, model_files

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("parity")
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--exporters",
    type=CommaList(),
    default=None,
    help="Exporters to check, comma-separated: dynamo,torchscript [default: both].",
)
@click.option(
    "--backends",
    type=CommaList(),
    default=None,
    help="Backends to check, comma-separated (cpu,openvino,...) [default: every backend that "
    "runs here, probed for real]. One named that cannot run here is an error (exit 2).",
)
@input_spec_option(
    "Input spec name:dims[:dtype] (x:batch=2x3x32x32), for a model outside the zoo; "
    "repeat per input. Dynamic dims (label=N) are run at N, 1 and a larger odd size."
)
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Check this ONNX file, exported earlier, against MODEL instead of exporting "
    "(MODEL defaults to the one named in the file's metadata).",
)
@click.option(
    "--atol",
    type=TOLERANCE,
    default=None,
    help="Absolute tolerance for every output [default: the model's, else per dtype].",
)
@click.option(
    "--rtol",
    type=TOLERANCE,
    default=None,
    help="Relative tolerance for every output [default: the model's, else per dtype].",
)
@click.option("--json", "json_file", type=_FILE, default=None, help="Write the JSON report here.")
@click.option(
    "--markdown",
    "markdown_file",
    type=_FILE,
    default=None,
    help="Write a Markdown report here (fits $GITHUB_STEP_SUMMARY).",
)
@click.option(
    "--junit", "junit_file", type=_FILE, default=None, help="Write a JUnit XML report here."
)
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the exported ONNX files in this folder [default: a temporary folder, removed].",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on unsupported cells too.")
def command(
    models: tuple[str, ...],
    exporters: list[str] | None,
    backends: list[str] | None,
    inputs: tuple,
    onnx_file: Path | None,
    atol: float | None,
    rtol: float | None,
    json_file: Path | None,
    markdown_file: Path | None,
    junit_file: Path | None,
    artifacts: Path | None,
    strict: bool,
) -> None:
    """Check every runtime against PyTorch: MODEL(s) x exporters x backends x shape cases.

    MODEL is a zoo name (default: the whole zoo), path/to/file.py:Name or
    package.module:name. Each model is exported once per exporter; each backend loads the
    file once and runs every shape case (the example sizes, every dynamic dim at 1, and
    at a larger odd size), on seeded inputs PyTorch runs too. Every output is compared:
    shapes exactly, values within atol + rtol*|ref|, NaN/Inf in the same places.

    \b
    Status per cell: pass, mismatch, unsupported (the runtime cannot load or run it),
    error (the export or nnkit failed).
    Exit status: 0 all pass; 1 a mismatch or error (or, with --strict, unsupported);
    2 the request cannot be carried out (unknown model/backend, backend not available).
    """
    from nnkit.fsutil import check_distinct, check_writable
    from nnkit.parity import run_parity
    from nnkit.report import Progress, render_console, write_json, write_junit, write_markdown

    writers = [
        (option, path, write)
        for option, path, write in (
            ("--json", json_file, write_json),
            ("--markdown", markdown_file, write_markdown),
            ("--junit", junit_file, write_junit),
        )
        if path is not None
    ]
    for _, path, _ in writers:
        check_writable(path)  # before the slow part
    sources = model_files(*models) + ([("--onnx", onnx_file)] if onnx_file else [])
    check_distinct([(option, path) for option, path, _ in writers], sources)
    progress = Progress()
    try:
        report = run_parity(
            models,
            exporters=exporters,
            backends=backends,
            inputs=inputs,
            onnx=onnx_file,
            atol=atol,
            rtol=rtol,
            artifacts=artifacts,
            strict=strict,
            progress=progress,
        )
    finally:
        progress.finish()
    # The reports first: a console that went away (| head) must not cost them.
    for _, path, write in writers:
        write(path, report)
    click.echo(render_console(report))
    if not report:
        raise SystemExit(report.exit_code)
