"""``nnkit bench``: one latency protocol, every runtime, a table (and JSON, and a plot)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nnkit.backends import BENCH_NAMES
from nnkit.commands._options import (
    MAX_ITERATIONS,
    MAX_SECONDS,
    MAX_WARMUP,
    CommaList,
    FiniteFloat,
    exporter_option,
    input_spec_option,
    model_files,
    seed_option,
    threads_option,
    timeout_option,
    variants_option,
)
from nnkit.errors import EXIT_FAILED, EXIT_OK, NnkitError

#: The ``--backends`` choices: the PyTorch reference, then every backend (the registry
#: imports no runtime, so ``--help`` stays light).
BACKEND_NAMES = list(BENCH_NAMES)


#: The largest batch size: inputs beyond it would not fit in memory anyway.
MAX_BATCH = 1_000_000


class BatchList(click.ParamType):
    """``1,8,64`` -> [1, 8, 64]: positive, distinct, in the order given."""

    name = "N,N,..."

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[int]:
        if isinstance(value, list):
            return value
        sizes: list[int] = []
        for item in CommaList().convert(value, param, ctx):
            if not item.isdigit() or not 1 <= int(item) <= MAX_BATCH:
                self.fail(
                    f"batch size {item!r} is not an integer from 1 to {MAX_BATCH:,}", param, ctx
                )
            if int(item) in sizes:
                self.fail(f"batch size {item} is given twice", param, ctx)
            sizes.append(int(item))
        return sizes


def is_onnx_file(model: str) -> bool:
    """MODEL names an ONNX file (benched as is) rather than a PyTorch model."""
    return model.lower().endswith(".onnx")


@click.command("bench")
@click.argument("model")
@click.option(
    "--backends",
    type=CommaList(BACKEND_NAMES),
    help="Backends to time, comma-separated [default: every one that runs here; torch "
    "only for a PyTorch model].",
)
@click.option(
    "--batch",
    "batches",
    type=BatchList(),
    default="1,8,64",
    show_default=True,
    help="Batch sizes: the dim labelled 'batch' (else a dynamic axis 0) takes each.",
)
@threads_option("Threads every runtime may use (1 to 1024; a warning above the usable cores).")
@click.option(
    "--warmup",
    type=click.IntRange(0, MAX_WARMUP),
    default=10,
    show_default=True,
    help="Untimed runs after the first (at most a quarter of --seconds).",
)
@click.option(
    "--iterations",
    type=click.IntRange(1, MAX_ITERATIONS),
    help="Timed runs per backend and batch (with --seconds: whichever ends first).",
)
@click.option(
    "--seconds",
    type=FiniteFloat(min=0, min_open=True, max=MAX_SECONDS),
    help="Time budget of warm-up and timed runs per backend and batch [default: 1.0, "
    "or none with --iterations].",
)
@exporter_option("Exporter of a PyTorch model (ignored for an ONNX file).")
@input_spec_option("Input spec of a model outside the zoo, name:dims[:dtype] (x:batch=2x10).")
@seed_option("Seed of the inputs (0 to 2**32-1).")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the results as JSON to this file ('-': stdout, instead of the table).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw p50 latency per backend and batch to this image (needs matplotlib).",
)
@variants_option(
    "Also time these rewrites of the file by the same protocol, each against the base file "
    "on the same backend in the same run (speed-up, file size)."
)
@timeout_option("building or exporting the model, or one backend's whole measurement")
def command(
    model: str,
    backends: list[str] | None,
    batches: list[int],
    threads: int | None,
    warmup: int,
    iterations: int | None,
    seconds: float | None,
    exporter: str,
    inputs: tuple,
    seed: int,
    json_out: Path | None,
    plot: Path | None,
    variants: list[str] | None,
    timeout: float,
) -> int:
    """Time MODEL on every backend with one protocol and print the latencies.

    MODEL is an ONNX file, or a PyTorch model (a zoo name, path/to/file.py:Name or
    package.module:name) exported once into a temporary folder; then torch eager is a
    backend too, and the table shows each runtime's speed-up over it.

    \b
    Per backend: session creation timed (load ms); then per batch size: inputs
    prepared, the first run timed apart (1st run ms: the cold start), warm-up runs
    untimed, then timed runs until --iterations or --seconds. Exit status 1 when a
    backend failed on the model (its rows say why), 2 when the request cannot run.
    """
    from nnkit import bench, bench_report
    from nnkit.fsutil import check_distinct, check_writable, write_text

    if json_out is not None and str(json_out) != "-":
        check_writable(json_out)
    if plot is not None:
        bench_report.check_plot_path(plot)
    outputs = [("--json", json_out), ("--plot", plot)]
    check_distinct(
        [(what, p) for what, p in outputs if p is not None and str(p) != "-"], model_files(model)
    )
    settings: dict[str, Any] = {
        "batches": batches,
        "threads": threads,
        "warmup": warmup,
        "iterations": iterations,
        "seconds": seconds,
        "seed": seed,
        "progress": _progress if sys.stderr.isatty() else None,
        "timeout": timeout,
        "variants": variants or (),
    }
    if is_onnx_file(model):
        if inputs:
            raise NnkitError(
                "--input describes a PyTorch model's inputs; an ONNX file declares its own"
            )
        names = backends or bench.default_backends(with_torch=False)
        report = bench.bench_file(Path(model), backends=names, **settings)
    else:
        names = backends or bench.default_backends(with_torch=True)
        report = bench.bench_model(
            model, backends=names, inputs=inputs, exporter=exporter, **settings
        )

    if json_out is not None:
        import json

        text = json.dumps(report.to_dict(), indent=2) + "\n"
        if str(json_out) == "-":
            click.echo(text, nl=False)
        else:
            write_text(json_out, text)
    if json_out is None or str(json_out) != "-":
        click.echo(bench_report.render(report))
    if plot is not None:
        bench_report.plot(report, plot)
    return EXIT_OK if report.ok else EXIT_FAILED


def _progress(line: str) -> None:
    click.echo(f"  {line} ...", err=True)
