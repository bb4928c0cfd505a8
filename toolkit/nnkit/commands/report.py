"""``nnkit report``: work on reports written earlier (``merge``: shards into one)."""

from __future__ import annotations

from pathlib import Path

import click

from nnkit.commands._options import json_report_option

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group("report")
def group() -> None:
    """Work on parity reports written earlier (nnkit parity --json)."""


#: The command the CLI registers (a group: ``nnkit report merge``).
command = group


@group.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_report_option("Write the merged JSON report here")
@click.option(
    "--markdown",
    "markdown_file",
    type=_FILE,
    default=None,
    help="Write the merged Markdown report here (fits $GITHUB_STEP_SUMMARY).",
)
@click.option(
    "--junit",
    "junit_file",
    type=_FILE,
    default=None,
    help="Write the merged JUnit XML report here.",
)
@click.option("--verbose", is_flag=True, help="Show every cell's magnitudes and metrics.")
def merge(
    reports: tuple[Path, ...],
    json_file: Path | None,
    markdown_file: Path | None,
    junit_file: Path | None,
    verbose: bool,
) -> int:
    """Merge the JSON reports of every shard of one run (nnkit parity --shard I/N --json)
    into the report the unsharded run gives: same results, summary, verdict, exit status.

    \b
    Refused (exit 2): a shard missing or given twice, reports of different plans or
    settings (other models, backends, cases, tolerances, --strict), a report whose cells
    are not its shard's. Exit status otherwise: the merged verdict's (0 pass, 1 fail).
    """
    from nnkit.commands.parity import emit, report_writers
    from nnkit.fsutil import check_distinct, check_writable
    from nnkit.matrix.merge import merge_files

    writers, to_stdout = report_writers(json_file, markdown_file, junit_file)
    for _, path, _ in writers:
        check_writable(path)
    check_distinct(
        [(option, path) for option, path, _ in writers], [("REPORT", p) for p in reports]
    )
    report = merge_files(reports)
    return emit(report, writers, verbose=verbose, json_to_stdout=to_stdout)
