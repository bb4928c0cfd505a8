"""Option types and helpers shared by the commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
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
        type=click.FloatRange(min=0),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help=f"Seconds {what} may take before it is stopped and reported as an error, with "
        "where it was stuck (0: no limit).",
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


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def is_tty() -> bool:
    return sys.stdout.isatty()
