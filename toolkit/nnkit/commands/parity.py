"""``nnkit parity``: every model x exporter x backend x shape case, judged against PyTorch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnkit.commands._options import (
    TOLERANCE,
    CommaList,
    FiniteFloat,
    ParsedType,
    ignore_output_option,
    input_spec_option,
    json_report_option,
    model_files,
    timeout_option,
    variants_option,
)

if TYPE_CHECKING:
    from nnkit.compare import Rule
    from nnkit.matrix.plan import ParityRequest
    from nnkit.matrix.shard import Shard

_FILE = click.Path(dir_okay=False, path_type=Path)


class BudgetType(ParsedType):
    """``VARIANT:metric=value[,...]`` -> (variant, metric -> value)."""

    name = "VARIANT:METRIC=X"

    def parse(self, text: str) -> tuple[str, dict[str, float]]:
        from nnkit.compare.budget import parse_budget

        return parse_budget(text)


class CompareType(ParsedType):
    """``NAME:MODE[:key=value,...]`` -> (output name, :class:`~nnkit.compare.Rule`)."""

    name = "NAME:MODE"

    def parse(self, text: str) -> tuple[str, Rule]:
        from nnkit.compare import parse_compare

        return parse_compare(text)


class ShardType(ParsedType):
    """``I/N`` -> :class:`~nnkit.matrix.shard.Shard`."""

    name = "I/N"

    def parse(self, text: str) -> Shard:
        from nnkit.matrix.shard import parse_shard

        return parse_shard(text)


@click.command("parity")
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A manifest (nnkit.toml) of models, each with its own inputs, cases, tolerances "
    "and rules; MODELs then pick models of it. See the README.",
)
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
    "Input spec name:dims[:dtype][values] (x:batch=2x3x32x32, ids:batch=2xseq=16:int64[0,30522), "
    "mask:batch=2xseq=16:int64{0,1}), for a model outside the zoo; repeat per input, named "
    "after forward's parameter it feeds. Dynamic dims (label=N) are run at N, 1 and a larger "
    "odd size."
)
@click.option(
    "--case",
    "cases",
    multiple=True,
    metavar="SIZES",
    help="Also run the dynamic dims at these sizes, e.g. --case batch=1,seq=128 (a dim not "
    "named keeps its example size); repeatable.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Also run real inputs: a .npz file (one case) or a folder of .npz files (one case "
    "each, named after the file), arrays keyed by input name.",
)
@click.option(
    "--no-generated-cases",
    is_flag=True,
    help="Run only the cases given with --case and --data, not the generated ones.",
)
@ignore_output_option()
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
    help="Explicit absolute tolerance for every output, element-wise only [default: "
    "scale-aware: the model's, else the dtype's, times the reference's RMS].",
)
@click.option(
    "--rtol",
    type=TOLERANCE,
    default=None,
    help="Explicit relative tolerance for every output [default: the model's, else per dtype].",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    type=CompareType(),
    help="How to compare one output, repeatable: NAME:allclose[:atol=X,rtol=Y], NAME:exact, "
    "NAME:cosine[:min=0.9999], NAME:set[:axis=-1,atol=X,rtol=Y] (order-insensitive, "
    "for top-k/NMS) [default: allclose, scale-aware].",
)
@json_report_option("Write the JSON report here")
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
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1) on unsupported cells and on warnings (a degenerate reference) too.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show every cell's magnitudes and metrics, not only those of failing or warned cells.",
)
@timeout_option(
    "each step (building a model, one PyTorch run, one export, loading a file on a "
    "runtime, one run of it)"
)
@variants_option(
    "Also check these rewrites of every artifact (each a column: dynamo+fp16, file+int8-static), "
    "judged by its budget; base always runs."
)
@click.option(
    "--budget",
    "budget",
    multiple=True,
    type=BudgetType(),
    help="Override a variant's budget, repeatable: VARIANT:metric=value[,...] with metrics "
    "atol, rtol (element-wise, scale-aware), cosine, corr (Pearson's r), snr (dB), top1, "
    "top5, e.g. int8-dynamic:cosine=0.995 [defaults: slim/optimized: the base rule; fp16: "
    "atol=0.01,rtol=0.01,cosine=0.999,corr=0.999; int8-*: cosine=0.99,corr=0.99,top1=0.9].",
)
@click.option(
    "--localize",
    is_flag=True,
    help="For each mismatching cell, find the first PyTorch module and ONNX node(s) that "
    "differ, blame the file (export) or the runtime, and write a minimal repro under "
    "--artifacts (see nnkit localize).",
)
@click.option(
    "--trust-metadata",
    is_flag=True,
    help="With --onnx and no MODEL: import the model the file's metadata names even where "
    "it is code outside the zoo (never done otherwise: a file must not run code).",
)
# -- scale: the plan, shards, the export cache, parallel cells, a cap per cell ----------
@click.option(
    "--list",
    "list_plan",
    is_flag=True,
    help="Print the plan (every cell: its stable id model|artifact|backend, the model, "
    "artifact and backend) and exit; nothing is exported or run and torch is not imported. "
    "With --json: the plan as JSON.",
)
@click.option(
    "--shard",
    type=ShardType(),
    default=None,
    help="Run only the I-th of N shares of the cells (e.g. 2/3), balanced by expected "
    "cost; a model's cells stay in one shard. Merge the shards' --json reports with "
    "nnkit report merge.",
)
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The export cache: a file exported before from the same model code, weights, "
    "inputs, exporter, opset and versions is reused (verified by its hash) [default: "
    "$XDG_CACHE_HOME/nnkit, else ~/.cache/nnkit].",
)
@click.option("--no-cache", is_flag=True, help="Export afresh: neither read nor fill the cache.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run cells in this many runtime worker processes at once (helps with several "
    "cores and slow backends; exports stay one at a time).",
)
@click.option(
    "--max-seconds-per-cell",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Stop a cell (loading the file and every case on one backend) after this many "
    "seconds: its cases not done are 'timeout', a failure only with --strict.",
)
def command(
    models: tuple[str, ...],
    config: Path | None,
    exporters: list[str] | None,
    backends: list[str] | None,
    inputs: tuple,
    cases: tuple[str, ...],
    data: Path | None,
    no_generated_cases: bool,
    ignore_outputs: tuple[str, ...],
    onnx_file: Path | None,
    atol: float | None,
    rtol: float | None,
    compare: tuple[tuple[str, Rule], ...],
    json_file: Path | None,
    markdown_file: Path | None,
    junit_file: Path | None,
    artifacts: Path | None,
    strict: bool,
    verbose: bool,
    timeout: float,
    localize: bool,
    variants: list[str] | None,
    budget: tuple[tuple[str, dict[str, float]], ...],
    trust_metadata: bool,
    list_plan: bool,
    shard: Shard | None,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    max_seconds_per_cell: float | None,
) -> int:
    """Check every runtime against PyTorch: MODEL(s) x exporters x backends x shape cases.

    MODEL is a zoo name (default: the whole zoo), path/to/file.py:Name or
    package.module:name. Each model is exported once per exporter; each backend loads the
    file once and runs every shape case (the example sizes, every dynamic dim at 1, and
    at a larger odd size), on seeded inputs PyTorch runs too, and the cases given with
    --case and --data. Every output is compared: shapes exactly, NaN/Inf in the same
    places, values by the scale-aware rule |got-ref| <= atol*rms(ref) + rtol*|ref| and
    ||got-ref|| <= atol*||ref|| (--atol/--rtol are explicit absolute overrides; --compare
    changes one output's rule). A reference that is a weak judge (all zeros, constant,
    below resolution, ties) is a warning.

    \b
    Status per cell: pass, mismatch (numbers differ, or the file does not run at a
    shape another case shows it should), unsupported (the runtime cannot load or run
    the model at all), error (the export, the model's code, a runtime's process or
    nnkit failed). The model's code and the runtimes run in worker processes: one that
    exits, aborts or hangs past --timeout is an error cell, and the rest runs.
    Exit status: 0 all pass; 1 a mismatch or error (with --strict: unsupported, warning);
    2 the request cannot be carried out (unknown model/backend, backend not available).
    """
    from nnkit.fsutil import check_distinct, check_writable

    if no_cache and cache_dir is not None:
        raise click.UsageError("--cache and --no-cache contradict each other: give one")
    writers, to_stdout = report_writers(json_file, markdown_file, junit_file)
    rules: dict[str, Rule] = {}
    for name, rule in compare:
        if name in rules:
            raise click.BadParameter(f"output {name!r} is named twice", param_hint="--compare")
        rules[name] = rule
    for _, path, _ in writers:
        check_writable(path)  # before the slow part
    sources = model_files(*models) + ([("--onnx", onnx_file)] if onnx_file else [])
    check_distinct([(option, path) for option, path, _ in writers], sources)
    request_options: dict[str, Any] = {
        "exporters": exporters,
        "backends": backends,
        "onnx": onnx_file,
        "artifacts": artifacts,
        "strict": strict,
        "timeout": timeout,
        "trust_metadata": trust_metadata,
        "localize": localize,
        "variants": variants,
        "budgets": list(budget) or None,
    }
    model_options: dict[str, Any] = {
        "inputs": inputs,
        "cases": cases,
        "data": data,
        "generated_cases": not no_generated_cases,
        "ignore_outputs": ignore_outputs,
        "atol": atol,
        "rtol": rtol,
        "compare": rules,
    }
    if config is not None:
        request = _from_config(config, models, model_options, request_options)
    else:
        from nnkit.matrix.plan import ParityRequest

        request = ParityRequest.from_options(models, **model_options, **request_options)
    running = ["base", *(v for v in request.variants or [] if v != "base")]
    unused = [v for v, _ in budget if v not in running]
    if unused:  # a budget for a variant that does not run: a typo, or a variant left out
        raise click.BadParameter(
            f"{unused[0]!r} is not among the variants run ({', '.join(running)}); "
            "add it to --variants",
            param_hint="--budget",
        )
    # How the run is carried out, with or without a manifest.
    request = dataclasses.replace(
        request, **_scale_options(shard, cache_dir, no_cache, jobs, max_seconds_per_cell)
    )
    if list_plan:
        ran = [option for option, _, kind in writers if kind != "json"]
        if ran:
            raise click.UsageError(f"{ran[0]} is a report of a run; --list runs nothing")
        return _list(request, json_file, to_stdout)
    from nnkit.parity import run
    from nnkit.report import Progress

    progress = Progress()
    try:
        report = run(request, progress=progress)
    finally:
        progress.finish()
    return emit(report, writers, verbose=verbose, json_to_stdout=to_stdout)


def report_writers(
    json_file: Path | None, markdown_file: Path | None, junit_file: Path | None
) -> tuple[list[tuple[str, Path, str]], bool]:
    """The report files asked for, as ``(option, path, kind)``, and whether the JSON
    report goes to stdout (``--json -``)."""
    to_stdout = json_file == Path("-")
    asked = (
        ("--json", None if to_stdout else json_file, "json"),
        ("--markdown", markdown_file, "markdown"),
        ("--junit", junit_file, "junit"),
    )
    return [(option, path, kind) for option, path, kind in asked if path is not None], to_stdout


def emit(
    report: Any,
    writers: list[tuple[str, Path, str]],
    *,
    verbose: bool = False,
    json_to_stdout: bool = False,
) -> int:
    """Write a report's files, print it (JSON on stdout: the console one on stderr); its
    exit status."""
    import json

    from nnkit.report import render_console, to_json, write_json, write_junit, write_markdown

    write = {"json": write_json, "markdown": write_markdown, "junit": write_junit}
    # The reports first: a console that went away (| head) must not cost them.
    for _, path, kind in writers:
        write[kind](path, report)
    console = render_console(report, verbose=verbose)
    if json_to_stdout:
        click.echo(console, err=True)
        click.echo(json.dumps(to_json(report), indent=2, allow_nan=False))
    else:
        click.echo(console)
    return int(report.exit_code)


def _scale_options(
    shard: Shard | None,
    cache_dir: Path | None,
    no_cache: bool,
    jobs: int,
    max_seconds_per_cell: float | None,
) -> dict[str, Any]:
    """The request fields of the scale options (the cache: its folder, or None)."""
    from nnkit.cache import default_cache_dir

    cache = None if no_cache else (cache_dir or default_cache_dir())
    return {
        "shard": shard,
        "cache": cache,
        "jobs": jobs,
        "max_seconds_per_cell": max_seconds_per_cell,
    }


def _list(request: ParityRequest, json_file: Path | None, to_stdout: bool) -> int:
    """``--list``: the plan (or the shard's part), as text or JSON; nothing runs."""
    import json

    from nnkit.fsutil import write_text
    from nnkit.matrix.plan import plan
    from nnkit.matrix.shard import listing, render_listing

    data = listing(plan(request), request.shard)
    text = json.dumps(data, indent=2, default=str)
    if to_stdout:
        click.echo(text)
        return 0
    if json_file is not None:
        write_text(json_file, text + "\n")
    click.echo(render_listing(data))
    return 0


def _from_config(
    config: Path, models: tuple[str, ...], model_options: dict, request_options: dict
) -> ParityRequest:
    """The manifest's request; options given on the command line override its run-level
    settings, and model-level options belong in the manifest."""
    from nnkit.matrix.config import load_config

    ctx = click.get_current_context()
    given = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    per_model = {
        "inputs",
        "cases",
        "data",
        "no_generated_cases",
        "ignore_outputs",
        "atol",
        "rtol",
        "compare",
    } & given
    if per_model:
        option = "--" + sorted(per_model)[0].replace("_", "-")
        raise click.UsageError(
            f"{option} is a model's setting: with --config, give it in the model's [[model]] table"
        )
    names = {"onnx": "onnx_file"}
    overrides = {k: v for k, v in request_options.items() if names.get(k, k) in given}
    return load_config(config, only=models, **overrides)
