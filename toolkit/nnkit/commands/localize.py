"""``nnkit localize``: where one backend's run of a model first departs from PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnkit.commands._options import (
    exporter_option,
    ignore_output_option,
    input_spec_option,
    model_files,
    timeout_option,
)
from nnkit.errors import EXIT_FAILED, EXIT_OK, NnkitError

if TYPE_CHECKING:
    from nnkit.matrix.results import Cell, ParityReport


class LocalizeError(NnkitError):
    """A localization that cannot be carried out (the cell errored, the backend cannot
    run the file, the case does not exist)."""


@click.command("localize")
@click.argument("model")
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Localize in this ONNX file, exported earlier, instead of exporting MODEL.",
)
@click.option(
    "--backend",
    required=True,
    metavar="NAME",
    help="The backend whose run to localize: cpu, openvino, tract, reference, cuda, tensorrt.",
)
@exporter_option("The exporter that makes the file (without --onnx).")
@input_spec_option(
    "Input spec name:dims[:dtype][values] (x:batch=2x3x32x32), for a model outside the zoo; "
    "repeat per input."
)
@ignore_output_option()
@click.option(
    "--case",
    "case",
    default=None,
    metavar="NAME",
    help="Localize this shape case (as parity names them: example, batch=1, ...) "
    "[default: the first that mismatches].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the exported file and the repro (<model>.<exporter>.<backend>/repro.onnx, "
    "inputs.npz, expected.npz) into this folder [default: no repro written].",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the localization as JSON here.",
)
@timeout_option("each step (building the model, one PyTorch run, one export, one runtime run)")
def command(
    model: str,
    onnx_file: Path | None,
    backend: str,
    exporter: str,
    inputs: tuple,
    ignore_outputs: tuple[str, ...],
    case: str | None,
    out: Path | None,
    json_file: Path | None,
    timeout: float,
) -> int:
    """Find where MODEL's ONNX file first departs from PyTorch on one backend.

    Runs the parity cell (MODEL x exporter or --onnx file x --backend, every shape case);
    on a mismatch, runs PyTorch with hooks on every submodule and the file with those
    values exposed, and reports the first module whose output differs while its inputs
    agree: its name and type, the ONNX node(s) that compute it, the differences at its
    inputs and output, and the trace before it. The node(s) alone then run on every CPU
    backend: blame is `runtime` when another computes them as PyTorch does, `export` when
    every runtime agrees with the others but not with PyTorch, else `unknown`. With
    --out, a standalone repro (file, inputs, PyTorch's outputs, the command) is written
    and checked to reproduce.

    \b
    Exit status: 0 no divergence (the cell passes); 1 a divergence (found, or the outputs
    differ where no mapped value does: not_found); 2 it cannot be carried out.
    """
    from nnkit.fsutil import check_distinct, check_writable
    from nnkit.matrix.plan import ParityRequest
    from nnkit.parity import run
    from nnkit.report import localizations

    if json_file is not None:
        check_writable(json_file)
        check_distinct(
            [("--json", json_file)],
            model_files(model) + ([("--onnx", onnx_file)] if onnx_file else []),
        )
    request = ParityRequest.from_options(
        [model],
        inputs=inputs,
        ignore_outputs=ignore_outputs,
        exporters=None if onnx_file else [exporter],
        backends=[backend],
        onnx=onnx_file,
        artifacts=out,
        timeout=timeout,
        localize=True,
        localize_case=case,
    )
    report = run(request)
    cell = _the_cell(report, case)
    if json_file is not None:
        from nnkit.fsutil import write_text

        write_text(json_file, json.dumps(_to_json(cell), indent=2) + "\n")
    where = f"{cell.model} / {cell.artifact} / {cell.backend}"
    found = cell.localization
    if found is None:
        at = f" at case {case}" if case else ""
        click.echo(f"{where}: {cell.status}{at}: no divergence from PyTorch")
        return EXIT_OK
    if found.status == "error":
        raise LocalizeError(f"{where}: cannot localize case {found.case}: {found.message}")
    click.echo("\n".join(localizations(report)))
    return EXIT_FAILED


def _the_cell(report: ParityReport, case: str | None) -> Cell:
    """The one cell run; a cell that could not be run, or an unknown case, is an error."""
    cell = report.cells()[0]
    where = f"{cell.model} / {cell.artifact} / {cell.backend}"
    names = [r.case for r in cell.results]
    if case is not None and case not in names:
        raise LocalizeError(
            f"--case {case!r}: {cell.model} has no such case; its cases are "
            f"{', '.join(map(repr, names))}"
        )
    chosen = [r for r in cell.results if case is None or r.case == case]
    broken = [r for r in chosen if r.status in ("error", "unsupported")]
    if broken and not any(r.status == "mismatch" for r in chosen):
        first = broken[0]
        raise LocalizeError(f"{where}: case {first.case} is {first.status}: {first.message}")
    return cell


def _to_json(cell: Cell) -> dict[str, Any]:
    return {
        "model": cell.model,
        "artifact": cell.artifact,
        "backend": cell.backend,
        "status": cell.status,
        "localization": cell.localization.to_dict() if cell.localization else None,
    }
