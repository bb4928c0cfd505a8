"""``nnkit infer``: run an ONNX file on one backend and show (or save) its outputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nnkit.backends import ONNX_NAMES, TORCH
from nnkit.commands._options import (
    MAX_ITERATIONS,
    MAX_WARMUP,
    emit_json,
    seed_option,
    threads_option,
    timeout_option,
)
from nnkit.errors import EXIT_OK, SpecError
from nnkit.render import table
from nnkit.spec import split_name

if TYPE_CHECKING:
    from nnkit.infer import InferResult, OutputStats

#: ``--provider`` choices: every backend (torch is the reference, which runs PyTorch models).
PROVIDERS = ONNX_NAMES


def _provider(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value not in PROVIDERS:
        why = " (torch runs PyTorch models: use nnkit parity)" if value == TORCH else ""
        raise click.BadParameter(
            f"unknown provider {value!r}{why}: valid providers are {', '.join(PROVIDERS)}"
        )
    return value


def _input_items(values: tuple[str, ...]) -> list[tuple[str | None, Path]]:
    """``NAME=FILE`` or ``FILE``; a NAME holding ``=`` or ``:`` in double quotes."""
    items: list[tuple[str | None, Path]] = []
    for text in values:
        name, sep, file = split_name(text, "=", what="--input")
        if sep and (not name or not file):
            raise SpecError(f"bad --input {text!r}: expected NAME=FILE.npy or FILE.npz")
        if sep and "=" in file and not text.startswith('"') and not Path(file).exists():
            head, _, tail = text.rpartition("=")
            raise SpecError(
                f"bad --input {text!r}: read as input {name!r} from file {file!r}, which does "
                f"not exist; a name holding '=' goes in double quotes: '\"{head}\"={tail}'"
            )
        items.append((name, Path(file)) if sep else (None, Path(text)))
    return items


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@click.command("infer")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--provider",
    "-p",
    required=True,
    callback=_provider,
    metavar="NAME",
    help=f"Backend that runs the model: {', '.join(PROVIDERS)}.",
)
@click.option(
    "--input",
    "input_files",
    multiple=True,
    metavar="NAME=FILE.npy|FILE.npz",
    help="Input arrays from files (all inputs, or none: then they are generated).",
)
@click.option(
    "--shape",
    "shape_texts",
    multiple=True,
    metavar="NAME:DIMS",
    help="Shape of a generated input, e.g. x:4x3x32x32 (symbolic dims default to 1).",
)
@seed_option("Seed of generated inputs (0 to 2**32-1).")
@click.option(
    "--save",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every output to this .npz file (nnkit's layout: --input reads it back).",
)
@click.option("--warmup", type=click.IntRange(0, MAX_WARMUP), default=1, show_default=True)
@click.option(
    "--iterations",
    type=click.IntRange(0, MAX_ITERATIONS),
    default=0,
    show_default=True,
    help="Time this many runs and print latency percentiles.",
)
@threads_option("Threads the runtime may use (1 to 1024; a warning above the usable cores).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@timeout_option("loading and running the file")
def command(
    model: Path,
    provider: str,
    input_files: tuple[str, ...],
    shape_texts: tuple[str, ...],
    seed: int,
    save: Path | None,
    warmup: int,
    iterations: int,
    threads: int | None,
    as_json: bool,
    timeout: float,
) -> int:
    """Run MODEL (an ONNX file) on one backend and summarise every output.

    The backend asked for runs it or the command fails (exit 2): nnkit never falls
    back to another provider. The runtime runs in a worker process: one that aborts or
    hangs past --timeout is an error (exit 2), not a crash.
    """
    from nnkit.fsutil import atomic_output, check_distinct, check_writable
    from nnkit.infer import run_file_isolated
    from nnkit.inputs import load_feeds
    from nnkit.spec import parse_shape_override

    items = _input_items(input_files)
    if save is not None:
        check_writable(save)
        check_distinct(
            [("--save", save)],
            [("MODEL", model), *(("--input", file) for _, file in items)],
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for text in shape_texts:
        name, dims = parse_shape_override(text)
        if name in shapes:
            raise SpecError(f"--shape {name!r} is given twice")
        shapes[name] = dims
    feeds = load_feeds(items) if items else None
    result = run_file_isolated(
        model,
        provider,
        feeds=feeds,
        shapes=shapes,
        seed=seed,
        threads=threads,
        warmup=warmup,
        iterations=iterations,
        timeout=timeout,
    )
    if save is not None:
        from nnkit.npzfile import save_values

        with atomic_output(save) as tmp:
            save_values(tmp, result.outputs)
    if as_json:
        emit_json({**result.to_dict(), "saved": str(save) if save else None})
    else:
        _render(result, save)
    return EXIT_OK


def _describe(value: object) -> str:
    """An input value in a few words: ``[2, 3] float32``, ``seq of 2 int64``, ``none``."""
    import numpy as np

    from nnkit.values import dtype_name, value_dtype

    if value is None:
        return "none (empty optional)"
    if isinstance(value, list):
        return f"seq of {len(value)} {value_dtype(value)}"
    if isinstance(value, np.ndarray):
        return f"{list(value.shape)} {dtype_name(value)}"
    return type(value).__name__


def _rows(stats: list[OutputStats]) -> list[list[object]]:
    """Table rows: one per tensor, a sequence's elements each on their own row."""
    from nnkit.infer import OutputStats

    rows: list[list[object]] = []
    for s in stats:
        if s.kind == "none":
            rows.append([s.name, "none (empty optional)", "-", "-", "-", "-", "-", "-"])
        elif s.kind == "sequence" and not s.elements:
            rows.append([s.name, "empty sequence", "-", "-", "-", "-", 0, 0])
        elif s.kind == "sequence":
            rows.extend(_rows([OutputStats(**e) for e in s.elements or []]))
        else:
            rows.append(
                [s.name, str(s.shape), s.dtype, _fmt(s.min), _fmt(s.max), _fmt(s.mean)]
                + (["-", "-"] if s.values is not None else [s.nan_count, s.inf_count])
            )
    return rows


def _strings(stats: list[OutputStats]) -> list[str]:
    """One line per string tensor: its first strings (statistics are for numbers)."""
    from nnkit.infer import OutputStats

    lines = []
    for s in stats:
        if s.elements:
            lines.extend(_strings([OutputStats(**e) for e in s.elements]))
        elif s.values is not None:
            count = math.prod(s.shape) if s.shape is not None else len(s.values)
            more = f" ... ({count} strings)" if count > len(s.values) else ""
            lines.append(f"{s.name}: {', '.join(map(repr, s.values))}{more}")
    return lines


def _render(result: InferResult, save: Path | None) -> None:
    source = f"seed {result.seed}" if result.seed is not None else "from files"
    ins = ", ".join(f"{n} {_describe(a)}" for n, a in result.inputs.items())
    click.echo(f"{result.model} on {result.provider}; inputs ({source}): {ins}")
    for s in result.input_stats():
        if s.nan_count or s.inf_count:
            click.echo(f"note: input {s.name} holds {s.nan_count} NaN and {s.inf_count} Inf values")
    stats = result.stats()
    click.echo(
        table(["output", "shape", "dtype", "min", "max", "mean", "nan", "inf"], _rows(stats))
    )
    for line in _strings(stats):
        click.echo(line)
    if result.timing:
        t, latency = result.timing, result.timing.stats
        click.echo(
            f"latency over {latency.iterations} runs (first run {t.first_run_ms:.3f} ms, "
            f"then {t.warmup} warmup): p50 {latency.p50_ms:.3f} ms  p90 {latency.p90_ms:.3f} "
            f"ms  p99 {latency.p99_ms:.3f} ms  mean {latency.mean_ms:.3f} ms"
        )
    if save is not None:
        click.echo(f"saved {len(result.outputs)} outputs to {save}")
