"""Option types and helpers shared by the commands."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nnkit.errors import NnkitError
from nnkit.spec import TensorSpec, parse_spec

F = TypeVar("F", bound=Callable[..., Any])


class ParsedType(click.ParamType):
    """Text parsed by a library function (:meth:`parse`); its error is a usage error."""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # parsed already (a default, or a value given twice)
        try:
            return self.parse(value)
        except NnkitError as e:
            self.fail(e.message, param, ctx)


class SpecType(ParsedType):
    """``name:dims[:dtype][values]``, e.g. ``x:batch=2x3x32x32:float32``."""

    name = "SPEC"

    def parse(self, text: str) -> TensorSpec:
        return parse_spec(text)


class FiniteFloat(click.FloatRange):
    """A float within bounds that is a number: NaN and infinities are refused.

    ``float("nan")`` passes every comparison click's :class:`~click.FloatRange` makes,
    so a bounded float option would take ``nan`` (a NaN tolerance passes every
    comparison) and ``inf`` (a time budget that never ends) without this.
    """

    name = "float"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


#: The most threads an option may ask for; above the usable cores nnkit warns.
MAX_THREADS = 1024
#: Seeds from 0 to 2**32-1: what every generator accepts (numpy's legacy RandomState too).
MAX_SEED = 2**32 - 1
#: Run counts: a million untimed runs, a hundred million timed ones, are past any use.
MAX_WARMUP = 1_000_000
MAX_ITERATIONS = 100_000_000
#: A time budget per backend and batch: an hour.
MAX_SECONDS = 3600.0

#: ``--atol``/``--rtol``: finite and non-negative.
TOLERANCE = FiniteFloat(min=0)
SEED = click.IntRange(0, MAX_SEED)
THREADS = click.IntRange(1, MAX_THREADS)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _warn_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    cores = usable_cores()
    if value is not None and value > cores:
        click.echo(
            f"warning: --threads {value} is more than the {cores} core(s) this process may "
            "use: the runs will be slower, not faster",
            err=True,
        )
    return value


def threads_option(help: str) -> Callable[[F], F]:
    """``--threads N``: 1 to :data:`MAX_THREADS`, a warning above the usable cores."""
    return click.option("--threads", type=THREADS, callback=_warn_threads, help=help)


def seed_option(help: str) -> Callable[[F], F]:
    """``--seed N``: 0 to 2**32-1, 0 by default."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help)


class CommaList(click.ParamType):
    """``a,b,c`` -> ["a", "b", "c"], each checked against ``choices`` when given."""

    name = "LIST"

    def __init__(self, choices: list[str] | None = None) -> None:
        self.choices = choices

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[str]:
        if isinstance(value, list):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail(f"{value!r} names nothing", param, ctx)
        if self.choices is not None:
            bad = [v for v in items if v not in self.choices]
            if bad:
                self.fail(f"unknown {bad[0]!r}: valid are {', '.join(self.choices)}", param, ctx)
        return items


#: The exporters, as ``nnkit.export.EXPORTERS`` (not imported: --help stays light).
EXPORTER_CHOICE = click.Choice(["dynamo", "torchscript"])


def exporter_option(help: str) -> Callable[[F], F]:
    """``--exporter dynamo|torchscript``, dynamo by default."""
    return click.option(
        "--exporter", type=EXPORTER_CHOICE, default="dynamo", show_default=True, help=help
    )


def input_spec_option(help: str) -> Callable[[F], F]:
    """``--input SPEC``, repeatable, parsed into :class:`~nnkit.spec.TensorSpec` values."""
    return click.option("--input", "inputs", multiple=True, type=SpecType(), help=help)


#: ``--timeout``'s default, as ``nnkit.parity.DEFAULT_TIMEOUT`` (not imported: --help
#: stays light).
DEFAULT_TIMEOUT = 600.0


def timeout_option(what: str) -> Callable[[F], F]:
    """``--timeout SECONDS``: how long one step of user code or a runtime may take."""
    return click.option(
        "--timeout",
        type=FiniteFloat(min=0),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help=f"Seconds {what} may take before it is stopped and reported as an error, with "
        "where it was stuck (0: no limit).",
    )


def json_report_option(what: str) -> Callable[[F], F]:
    """``--json FILE`` for a report; ``--json`` alone or ``--json -``: on stdout."""
    return click.option(
        "--json",
        "json_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        is_flag=False,
        flag_value="-",
        help=f"{what} (- or no value: on stdout, the console report then goes to stderr).",
    )


def ignore_output_option() -> Callable[[F], F]:
    """``--ignore-output NAME``, repeatable: outputs neither exported nor compared."""
    return click.option(
        "--ignore-output",
        "ignore_outputs",
        multiple=True,
        metavar="NAME",
        help="Leave this output out of the export and the comparison: an output's name, or "
        "a group of them (past_key_values drops past_key_values.0.0, ...); repeatable.",
    )


def model_files(*refs: str) -> list[tuple[str, Path]]:
    """``("MODEL", path)`` for each reference that names a file: ``net.py:Net`` or ``m.onnx``.

    For :func:`nnkit.fsutil.check_distinct`: an output must not overwrite the model.
    Read as :mod:`nnkit.resolve` reads references, without importing it (or torch).
    """
    found = []
    for ref in refs:
        where, sep, _ = ref.rpartition(":")
        if sep and (where.endswith(".py") or "/" in where):
            found.append(("MODEL", Path(where)))
        elif ref.lower().endswith(".onnx"):
            found.append(("MODEL", Path(ref)))
    return found


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def is_tty() -> bool:
    return sys.stdout.isatty()


#: The variants, as ``nnkit.rewrites.VARIANTS`` (not imported: --help stays light).
VARIANT_NAMES = ["base", "slim", "optimized", "fp16", "int8-dynamic", "int8-static"]


def variants_option(help: str) -> Callable[[F], F]:
    """``--variants base,slim,optimized,fp16,int8-dynamic,int8-static`` (default: base)."""
    return click.option(
        "--variants",
        type=CommaList(VARIANT_NAMES),
        default=None,
        help=help + " Choices: " + ",".join(VARIANT_NAMES) + " [default: base].",
    )
