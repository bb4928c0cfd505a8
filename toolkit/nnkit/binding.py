"""Calling a model as it is written: inputs bound to ``forward`` by name, outputs named.

nnkit's inputs are named (``--input input_ids:...``). They are passed to ``forward`` as
keywords, checked against its signature, so a model whose parameters are
``(input_ids, past_key_values=None, attention_mask=None, ...)`` gets its mask where it
belongs, not in the cache argument. The rules:

- A name that is a parameter of ``forward`` goes by keyword.
- A positional-only parameter goes by position; a positional-only parameter before it
  that no input names takes its default (none: an error).
- A name that is no parameter goes into ``**kwargs`` when ``forward`` takes them, else
  by position into ``*args`` (then every parameter before ``*args`` goes by position
  too); when ``forward`` takes neither, it is an error that lists the parameters.
- When the names are ``forward``'s first parameters in order, they go by position, as
  they always did.
- When no name is a parameter and the inputs are exactly ``forward``'s required
  positional parameters in number, they go by position: ``nn.Sequential``'s ``input``
  can be called ``x``. A parameter with a default (``attention_mask=None``) is never
  filled by position under another name: that is how a mask lands in a cache argument.
- A parameter without a default that no input names is an error.

What ``forward`` returns is named after its structure: a tensor is ``output``; the
entries of a dict (a transformers ``ModelOutput`` too) are named by key
(``last_hidden_state``); the items of a tuple or list by index, ``output_0``,
``output_1`` at the top level and ``.0``, ``.1`` below it, so a nested tuple reads
``past_key_values.0.1``. ``None`` entries are skipped. An output that is not a tensor
(a transformers ``DynamicCache``) is refused, naming it and the fix: leave it out with
``ignore_outputs`` (``--ignore-output``), or build the model without it.

When a model needs any of this (keywords, a structured result, an output left out),
:class:`BoundModule` wraps it: its ``forward`` takes the inputs by position, in spec
order, and returns a flat tuple of the kept outputs, which is what both exporters and
the PyTorch reference run.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nnkit.errors import SpecError


@dataclass(frozen=True)
class Default:
    """A positional parameter no input names, passed its default value."""

    value: Any


@dataclass(frozen=True)
class Binding:
    """How named inputs reach ``forward``: these by position, in order, those by keyword."""

    positional: tuple[str | Default, ...]
    keywords: tuple[str, ...] = ()

    def is_plain(self, names: Sequence[str]) -> bool:
        """True when the inputs go by position, in the order of ``names``."""
        return not self.keywords and self.positional == tuple(names)

    def arguments(self, tensors: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments for ``tensors`` (input name -> value)."""
        args = tuple(p.value if isinstance(p, Default) else tensors[p] for p in self.positional)
        return args, {name: tensors[name] for name in self.keywords}


def bind_inputs(module: torch.nn.Module, names: Sequence[str], *, model: str) -> Binding:
    """Bind input ``names`` to the parameters of ``module.forward`` (see the module docs).

    Raises:
        SpecError: a name that is no parameter (and ``forward`` takes no ``**kwargs`` or
            ``*args``), or a required parameter no input names; the message lists the
            parameters.
    """
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):  # a compiled or native forward: no signature to read
        return Binding(tuple(names))
    params = list(sig.parameters.values())
    kinds = {p.kind for p in params}
    named = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    before_star = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    where = f"{type(module).__name__}.forward{_short(sig)}"
    unknown = [n for n in names if n not in named]
    required = [p for p in before_star if p.default is p.empty]
    if names and len(unknown) == len(names) == len(required):
        return Binding(tuple(names))
    if unknown and not kinds & {inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL}:
        known = [n for n in names if n in named]
        raise SpecError(
            f"model {model!r}: {'input' if len(unknown) == 1 else 'inputs'} {_names(unknown)} "
            f"{'matches' if len(unknown) == 1 else 'match'} no parameter of {where} "
            f"(inputs are passed by name{'; these match: ' + _names(known) if known else ''}); "
            f"its parameters are {_names(named)}"
        )
    missing = [n for n, p in named.items() if p.default is p.empty and n not in names]
    if missing:
        raise SpecError(
            f"model {model!r}: {where} needs {_names(missing)}, which no input gives; "
            f"inputs given: {_names(names)}"
        )
    if list(names) == [p.name for p in before_star[: len(names)]]:
        return Binding(tuple(names))
    extras = unknown if inspect.Parameter.VAR_KEYWORD not in kinds else []
    if extras:
        by_position = before_star
    else:
        last = max(
            (
                i
                for i, p in enumerate(before_star)
                if p.kind == p.POSITIONAL_ONLY and p.name in names
            ),
            default=-1,
        )
        by_position = before_star[: last + 1]
    positional: list[str | Default] = [
        p.name if p.name in names else Default(p.default) for p in by_position
    ]
    taken = {p.name for p in by_position} | set(extras)
    return Binding((*positional, *extras), tuple(n for n in names if n not in taken))


def _short(sig: inspect.Signature) -> str:
    """``(input_ids, attention_mask=..., /, *, scale=...)``: no annotations, no defaults."""
    params = [
        p.replace(annotation=p.empty, default=p.empty if p.default is p.empty else _ELIDED)
        for p in sig.parameters.values()
    ]
    text = str(sig.replace(parameters=params, return_annotation=sig.empty))
    return text if len(text) <= 160 else text[:156] + "...)"


class _Elided:
    def __repr__(self) -> str:
        return "..."


_ELIDED = _Elided()


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in names) or "none"


# -- outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputLeaf:
    """One leaf of what ``forward`` returns: its name, where it is, and what it is."""

    name: str
    path: tuple[str | int, ...]
    value: Any

    @property
    def is_tensor(self) -> bool:
        return isinstance(self.value, torch.Tensor)


def output_leaves(result: Any) -> list[OutputLeaf]:
    """Every leaf of ``result``, named after its place (see the module docs)."""
    if isinstance(result, (tuple, list)) and not _is_dict(result):
        leaves = [leaf for i, v in enumerate(result) for leaf in _walk(v, f"output_{i}", (i,))]
        if len(leaves) == 1 and leaves[0].is_tensor and len(result) == 1:
            return [OutputLeaf("output", leaves[0].path, leaves[0].value)]
        return leaves
    return _walk(result, "output", ())


def _walk(value: Any, name: str, path: tuple[str | int, ...]) -> list[OutputLeaf]:
    if value is None:
        return []
    if _is_dict(value):
        prefix = "" if not path else f"{name}."
        return [leaf for k, v in value.items() for leaf in _walk(v, f"{prefix}{k}", (*path, k))]
    if isinstance(value, (tuple, list)):
        return [leaf for i, v in enumerate(value) for leaf in _walk(v, f"{name}.{i}", (*path, i))]
    return [OutputLeaf(name, path, value)]


def _is_dict(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_plain_result(result: Any) -> bool:
    """A tensor, or a flat tuple or list of tensors: what exporters take as it is."""
    if isinstance(result, torch.Tensor):
        return True
    return (
        isinstance(result, (tuple, list))
        and not _is_dict(result)
        and all(isinstance(t, torch.Tensor) for t in result)
    )


def select_outputs(
    leaves: Sequence[OutputLeaf], ignore: Sequence[str], *, model: str
) -> list[OutputLeaf]:
    """The leaves to export and compare: all but those ``ignore`` names (or their groups).

    ``ignore`` names an output (``past_key_values.0.1``) or a group of them
    (``past_key_values``).

    Raises:
        SpecError: an ``ignore`` name that is no output (listing the outputs), or an
            output kept that is not a tensor (naming it and the fix).
    """
    groups = {leaf.name: None for leaf in leaves}
    for leaf in leaves:
        parts = leaf.name.split(".")
        for i in range(1, len(parts)):
            groups.setdefault(".".join(parts[:i]), None)
    unknown = [n for n in ignore if n not in groups]
    if unknown:
        raise SpecError(
            f"model {model!r} has no output {_names(unknown)} to ignore; its outputs are "
            f"{_names(_top(leaves))}"
        )

    kept = [leaf for leaf in leaves if not is_ignored(leaf.name, ignore)]
    for leaf in kept:
        if not leaf.is_tensor:
            group = leaf.name.split(".")[0]
            raise SpecError(
                f"model {model!r} returns a {type(leaf.value).__name__} as output "
                f"{leaf.name!r}, and nnkit exports tensors only: leave it out with "
                f"--ignore-output {group} (ignore_outputs=[{group!r}] in Python), or build "
                "the model without it (for a transformers cache: use_cache=False in its config)"
            )
    if not kept:
        raise SpecError(
            f"model {model!r}: every output is ignored ({_names(ignore)}); nothing to compare"
        )
    return kept


def is_ignored(name: str, ignored: Sequence[str]) -> bool:
    """True when ``name`` is an ignored output or in an ignored group (``past_key_values.0``)."""
    return any(name == n or name.startswith(f"{n}.") for n in ignored)


def _top(leaves: Sequence[OutputLeaf]) -> list[str]:
    """Output names, a nested group given once by its top name (``past_key_values.*``)."""
    names: dict[str, None] = {}
    for leaf in leaves:
        top = leaf.name.split(".")[0]
        names[f"{top}.*" if top != leaf.name else top] = None
    return list(names)


def pick(result: Any, path: Sequence[str | int]) -> Any:
    """The leaf at ``path`` in ``result``."""
    for key in path:
        result = result[key]
    return result


class BoundModule(torch.nn.Module):
    """A model called by name, giving a flat tuple of the outputs kept.

    ``forward(*tensors)`` takes the inputs by position in ``input_names`` order, calls
    the wrapped module (``self.module``) through ``binding`` and returns the outputs at
    ``paths``. Exporters trace this, and the PyTorch reference runs it, so both call the
    model the same way.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        binding: Binding,
        input_names: Sequence[str],
        paths: Sequence[tuple[str | int, ...]],
    ) -> None:
        super().__init__()
        self.module = module
        self.binding = binding
        self.input_names = tuple(input_names)
        self.paths = tuple(paths)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = self.binding.arguments(dict(zip(self.input_names, tensors, strict=True)))
        result = self.module(*args, **kwargs)
        return tuple(pick(result, path) for path in self.paths)
