"""Resolve a model reference to a PyTorch module and what it takes.

A reference is a zoo name (``lstm``), a file and a name (``path/to/net.py:Net``) or a
module and a name (``package.module:make_net``). The name is an ``nn.Module`` subclass
(built with no arguments) or a function returning a module. A zoo model knows its
inputs, outputs and tolerance; a model from elsewhere gets its inputs from
``--input`` specs, and its outputs are named ``output`` (one) or ``output_0``, ... .
Every model is built under a fixed torch seed, as the zoo is: one whose weights are
randomly initialised builds the same weights each time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import ModelSourceError, SpecError, describe
from nnkit.spec import Dim, TensorSpec, check_unique_names

if TYPE_CHECKING:
    import torch


@dataclass
class ResolvedModel:
    """A model ready to export or run: the module in eval mode and its I/O."""

    name: str
    module: torch.nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    atol: float | None = None
    rtol: float | None = None
    zoo: bool = False


def is_zoo_name(ref: str) -> bool:
    from nnkit.models import ZOO

    return ref in ZOO


def resolve_model(ref: str, *, inputs: Sequence[TensorSpec] = ()) -> ResolvedModel:
    """Build the model ``ref`` names, in eval mode, and check that ``inputs`` fit it.

    Args:
        ref: a zoo name, ``file.py:Name`` or ``module:name``.
        inputs: input specs; required outside the zoo, and they replace a zoo model's own.

    Raises:
        ModelSourceError: the reference cannot be resolved; the message says why.
        SpecError: the specs do not fit the model (it fails on example inputs).
    """
    from nnkit import models

    specs = tuple(inputs)
    check_unique_names(list(specs))
    if ref in models.ZOO:
        entry = models.ZOO[ref]
        model = ResolvedModel(
            name=ref,
            module=entry.build(),
            inputs=specs or entry.inputs,
            outputs=entry.outputs,
            atol=entry.atol,
            rtol=entry.rtol,
            zoo=True,
        )
        if specs and len(specs) != len(entry.inputs):
            raise SpecError(
                f"model {ref!r} takes {len(entry.inputs)} input(s) "
                f"({', '.join(map(str, entry.inputs))}); {len(specs)} given"
            )
        count_outputs(model)
        return model
    if ":" not in ref:
        models.get(ref)  # raises the unknown-model error, listing the zoo
    if not specs:
        raise SpecError(
            f"model {ref!r} is not in the zoo: give its inputs with --input name:dims[:dtype], "
            "e.g. --input x:batch=2x3x32x32"
        )
    module = _build(ref)
    model = ResolvedModel(name=ref, module=module, inputs=specs, outputs=())
    n = count_outputs(model)
    model.outputs = ("output",) if n == 1 else tuple(f"output_{i}" for i in range(n))
    return model


def _build(ref: str) -> torch.nn.Module:
    import torch

    from nnkit.models import WEIGHT_SEED

    where, _, name = ref.rpartition(":")
    if not where or not name:
        raise ModelSourceError(f"bad model reference {ref!r}: expected file.py:Name or module:name")
    namespace = (
        _import_file(where) if where.endswith(".py") or "/" in where else _import_module(where)
    )
    if not hasattr(namespace, name):
        found = sorted(
            n
            for n, v in vars(namespace).items()
            if not n.startswith("_") and (_is_module_class(v) or inspect.isfunction(v))
        )
        raise ModelSourceError(
            f"{where} has no {name!r}; models and factories there: {', '.join(found) or 'none'}"
        )
    obj = getattr(namespace, name)
    if not (_is_module_class(obj) or callable(obj)) or isinstance(obj, torch.nn.Module):
        raise ModelSourceError(
            f"{ref!r} is not an nn.Module class or a function returning one (it is a {type(obj).__name__!r})"
        )
    try:
        # Under the zoo's fixed seed: a randomly initialised model builds the same weights
        # every time, so a file exported yesterday can be checked against it today.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(WEIGHT_SEED)
            built = obj()
    except TypeError as e:
        if _needs_arguments(obj):
            raise ModelSourceError(
                f"cannot build {ref!r} without arguments ({e}); wrap it in a function that "
                "takes none, e.g. def make(): return Net(...)"
            ) from None
        raise ModelSourceError(f"building {ref!r} failed: TypeError: {e}") from None
    except Exception as e:
        raise ModelSourceError(f"building {ref!r} failed: {describe(e)}") from None
    if not isinstance(built, torch.nn.Module):
        raise ModelSourceError(f"{ref!r} returned a {type(built).__name__}, not an nn.Module")
    return built.eval()


def _is_module_class(obj: Any) -> bool:
    import torch

    return inspect.isclass(obj) and issubclass(obj, torch.nn.Module)


def _needs_arguments(obj: Any) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(
        p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in sig.parameters.values()
    )


def _import_file(where: str) -> Any:
    path = Path(where)
    if not path.is_file():
        raise ModelSourceError(f"model file {where!r} does not exist")
    # A stable, unique module name per file, so two files named model.py do not clash.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    mod_name = f"_nnkit_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"cannot import {where!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(path.parent.resolve()))  # its own sibling imports
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(mod_name, None)
        raise ModelSourceError(
            f"cannot import {where!r}: syntax error at line {e.lineno}: {e.msg}"
        ) from None
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ModelSourceError(f"cannot import {where!r}: {describe(e)}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return module


def _import_module(where: str) -> Any:
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise ModelSourceError(
                f"cannot import module {where!r}: no module named {e.name!r} "
                "(is it installed, or on PYTHONPATH?)"
            ) from None
        raise ModelSourceError(f"cannot import module {where!r}: {e}") from None
    except Exception as e:
        raise ModelSourceError(f"cannot import module {where!r}: {describe(e)}") from None


def example_args(model: ResolvedModel, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded example tensors at the specs' example sizes, in input order."""
    from nnkit.backends.torch import to_torch
    from nnkit.inputs import generate

    arrays = generate(model.inputs, seed=seed)
    return tuple(to_torch(arrays[s.name]) for s in model.inputs)


def flatten_outputs(result: Any) -> list[torch.Tensor]:
    """A forward's result as a flat list of tensors (tuples, lists and dict values)."""
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [t for r in result for t in flatten_outputs(r)]
    if isinstance(result, dict):
        return [t for r in result.values() for t in flatten_outputs(r)]
    raise SpecError(f"the model returned a {type(result).__name__}; nnkit exports tensor outputs")


def count_outputs(model: ResolvedModel) -> int:
    """Run the model once on example inputs; the number of output tensors.

    Raises:
        SpecError: the model fails on inputs of its specs' shapes and dtypes.
    """
    import torch

    args = example_args(model)
    try:
        with torch.inference_mode():
            result = model.module(*args)
    except Exception as e:
        specs = " ".join(str(s) for s in model.inputs)
        raise SpecError(f"model {model.name!r} cannot take inputs {specs}: {describe(e)}") from None
    n = len(flatten_outputs(result))
    if model.outputs and n != len(model.outputs):
        raise SpecError(f"model {model.name!r} returned {n} outputs, expected {len(model.outputs)}")
    return n


__all__ = ["Dim", "ResolvedModel", "example_args", "flatten_outputs", "resolve_model"]
