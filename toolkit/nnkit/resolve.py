"""Resolve a model reference to a PyTorch module and what it takes.

A reference is a zoo name (``lstm``), a file and a name (``path/to/net.py:Net``) or a
module and a name (``package.module:make_net``). The name is an ``nn.Module`` subclass
(built with no arguments) or a function returning a module. A zoo model knows its
inputs, outputs and tolerance; a model from elsewhere gets its inputs from
``--input`` specs, bound to ``forward``'s parameters by name, and its outputs are named
after what it returns (``output``, ``output_0``, ..., a dict's keys): see
:mod:`nnkit.binding`. :func:`resolve_object` takes a module object instead, with
example inputs.
Every model is built under a fixed torch seed, as the zoo is: one whose weights are
randomly initialised builds the same weights each time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import ModelSourceError, SpecError, describe
from nnkit.spec import DTYPES, Dim, TensorSpec, ValueRange, check_unique_names, parse_dim

if TYPE_CHECKING:
    import numpy as np
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
    #: Example inputs given with a module object (input name -> array): the export
    #: traces with these, and parity runs them as a case of their own.
    examples: dict[str, np.ndarray] | None = None
    #: Outputs left out (``--ignore-output``): neither exported nor compared.
    ignored: tuple[str, ...] = ()


def is_zoo_name(ref: str) -> bool:
    from nnkit.models import ZOO

    return ref in ZOO


def resolve_model(
    ref: str, *, inputs: Sequence[TensorSpec] = (), ignore_outputs: Sequence[str] = ()
) -> ResolvedModel:
    """Build the model ``ref`` names, in eval mode, and check that ``inputs`` fit it.

    Args:
        ref: a zoo name, ``file.py:Name`` or ``module:name``.
        inputs: input specs; required outside the zoo, and they replace a zoo model's own.
        ignore_outputs: outputs (or groups of them) to leave out of the export and the
            comparison, by name (``past_key_values``).

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
        return _bind(model, ignore_outputs=ignore_outputs)
    if ":" not in ref:
        models.get(ref)  # raises the unknown-model error, listing the zoo
    if not specs:
        raise SpecError(
            f"model {ref!r} is not in the zoo: give its inputs with --input name:dims[:dtype], "
            "e.g. --input x:batch=2x3x32x32"
        )
    module = _build(ref)
    model = ResolvedModel(name=ref, module=module, inputs=specs, outputs=())
    return _bind(model, ignore_outputs=ignore_outputs)


def resolve_object(
    module: torch.nn.Module,
    *,
    example_inputs: Any = None,
    inputs: Sequence[TensorSpec] = (),
    dynamic: Mapping[str, Mapping[int, str]] | None = None,
    name: str | None = None,
    ignore_outputs: Sequence[str] = (),
) -> ResolvedModel:
    """A model given as an object, with example inputs or specs; put in eval mode.

    Args:
        module: the model (an ``nn.Module``); ``.eval()`` is called on it.
        example_inputs: a tensor, a tuple of tensors (bound to ``forward``'s parameters
            in order) or a dict name -> tensor (bound by name). Their shapes and dtypes
            make the specs; the export traces with them.
        inputs: specs instead of example inputs.
        dynamic: the dynamic dims of each example input, by name: ``{"input_ids":
            {0: "batch", 1: "seq"}}``; a label shared by inputs is one dim.
        name: the model's name in reports and file metadata; the class name when None.
        ignore_outputs: outputs to leave out, as in :func:`resolve_model`.

    Integer example inputs make specs that generate values within the example's own
    ``[min, max]``: generated ids stay ids the model takes, and a mask of 0s and 1s
    stays one. Give ``inputs`` to choose the values.

    Raises:
        SpecError: example inputs that are not tensors, dynamic dims that do not fit them,
            both or neither of ``example_inputs`` and ``inputs``, or a model that fails on them.
        ModelSourceError: ``module`` is not an ``nn.Module``.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelSourceError(
            f"expected a model reference (str) or an nn.Module, got a {type(module).__name__}"
        )
    label = name or type(module).__name__
    if (example_inputs is None) == (not inputs):
        raise SpecError(
            f"model {label!r}: give example_inputs (tensors) or inputs (specs), one of the two"
        )
    if dynamic and example_inputs is None:
        raise SpecError(f"model {label!r}: dynamic goes with example_inputs; specs name their own")
    examples = None
    specs = tuple(inputs)
    if example_inputs is not None:
        tensors = _named_examples(module, example_inputs, model=label)
        specs = _example_specs(tensors, dynamic or {}, model=label)
        examples = {k: _array(t) for k, t in tensors.items()}
    check_unique_names(list(specs))
    model = ResolvedModel(
        name=label, module=module.eval(), inputs=specs, outputs=(), examples=examples
    )
    return _bind(model, ignore_outputs=ignore_outputs)


def _named_examples(module: torch.nn.Module, example: Any, *, model: str) -> dict[str, Any]:
    """Example inputs by name: a dict as it is, a tuple named after ``forward``'s
    positional parameters (``input_<i>`` past them, into ``*args``)."""
    import torch

    if isinstance(example, Mapping):
        items = dict(example)
    else:
        values = (example,) if isinstance(example, torch.Tensor) else tuple(example)
        try:
            params = [
                p.name
                for p in inspect.signature(module.forward).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            params = []
        names = params[: len(values)] + [f"input_{i}" for i in range(len(params), len(values))]
        items = dict(zip(names, values, strict=True))
    for key, value in items.items():
        if not isinstance(value, torch.Tensor):
            raise SpecError(
                f"model {model!r}: example input {key!r} is a {type(value).__name__}; nnkit "
                "feeds tensors (set other arguments in the model or a factory function)"
            )
    return items


def _example_specs(
    tensors: Mapping[str, Any], dynamic: Mapping[str, Mapping[int, str]], *, model: str
) -> tuple[TensorSpec, ...]:
    """Specs of example tensors: their shape and dtype, dims labelled per ``dynamic``."""
    unknown = [k for k in dynamic if k not in tensors]
    if unknown:
        raise SpecError(
            f"model {model!r}: dynamic names {', '.join(map(repr, unknown))}, which is no "
            f"example input; they are {', '.join(map(repr, tensors))}"
        )
    specs = []
    sizes: dict[str, tuple[int, str]] = {}
    for key, t in tensors.items():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise SpecError(
                f"model {model!r}: example input {key!r} has dtype {dtype}; nnkit takes "
                f"{', '.join(DTYPES)}"
            )
        axes = dict(dynamic.get(key, {}))
        bad = [a for a in axes if not isinstance(a, int) or not 0 <= a < t.dim()]
        if bad:
            raise SpecError(
                f"model {model!r}: dynamic axis {bad[0]!r} of {key!r} is not one of its "
                f"{t.dim()} axes"
            )
        dims: list[int | Dim] = []
        for axis, size in enumerate(t.shape):
            label = axes.get(axis)
            if label is None:
                dims.append(int(size))
                continue
            dims.append(parse_dim(f"{label}={int(size)}", spec=f"{key} (dynamic {axes})"))
            seen = sizes.setdefault(label, (int(size), key))
            if seen[0] != int(size):
                raise SpecError(
                    f"model {model!r}: dynamic dim {label!r} is {int(size)} in {key!r} but "
                    f"{seen[0]} in {seen[1]!r}; one label is one size"
                )
        values = None
        if not t.is_floating_point() and dtype != "bool" and t.numel():
            values = ValueRange(int(t.min()), int(t.max()))
        specs.append(TensorSpec(key, tuple(dims), dtype, values))
    return tuple(specs)


def _array(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (bfloat16 through ml_dtypes)."""
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def _bind(model: ResolvedModel, *, ignore_outputs: Sequence[str]) -> ResolvedModel:
    """Bind the inputs to ``forward`` by name, run it once, name its outputs.

    The module is wrapped in a :class:`~nnkit.binding.BoundModule` when it needs more
    than positional inputs and a flat tuple of tensors back.

    Raises:
        SpecError: the inputs do not fit ``forward``, the model fails on them, an output is
            not a tensor, or an ``ignore_outputs`` name is no output.
    """
    import torch

    from nnkit.binding import (
        BoundModule,
        bind_inputs,
        is_plain_result,
        output_leaves,
        select_outputs,
    )

    names = [s.name for s in model.inputs]
    binding = bind_inputs(model.module, names, model=model.name)
    args, kwargs = binding.arguments(dict(zip(names, example_args(model), strict=True)))
    try:
        with torch.inference_mode():
            result = model.module(*args, **kwargs)
    except Exception as e:
        raise SpecError(_cannot_take(model, e)) from None
    leaves = output_leaves(result)
    if model.outputs:  # the zoo's own names, in order
        if len(leaves) != len(model.outputs):
            raise SpecError(
                f"model {model.name!r} returned {len(leaves)} outputs, "
                f"expected {len(model.outputs)}"
            )
        leaves = [replace(leaf, name=n) for leaf, n in zip(leaves, model.outputs, strict=True)]
    kept = select_outputs(leaves, ignore_outputs, model=model.name)
    if not (binding.is_plain(names) and is_plain_result(result) and len(kept) == len(leaves)):
        model.module = BoundModule(model.module, binding, names, [leaf.path for leaf in kept])
    model.outputs = tuple(leaf.name for leaf in kept)
    model.ignored = tuple(ignore_outputs)
    return model


def _cannot_take(model: ResolvedModel, e: BaseException) -> str:
    """Why the model fails on its example inputs, and where generated values came from."""
    from nnkit.inputs import generated_hint

    specs = " ".join(str(s) for s in model.inputs)
    hint = "" if model.examples is not None else generated_hint(model.inputs)
    return f"model {model.name!r} cannot take inputs {specs}: {describe(e)}{hint}"


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
    # As `python -m` does: a module in the current directory imports without PYTHONPATH.
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise ModelSourceError(
                f"cannot import module {where!r}: no module named {e.name!r} "
                "(is it installed, in the current directory, or on PYTHONPATH?)"
            ) from None
        raise ModelSourceError(f"cannot import module {where!r}: {e}") from None
    except Exception as e:
        raise ModelSourceError(f"cannot import module {where!r}: {describe(e)}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def example_args(model: ResolvedModel, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Example tensors in input order: the model's example inputs, else seeded ones at
    the specs' example sizes."""
    from nnkit.inputs import generate
    from nnkit.reference import to_torch

    arrays = model.examples if model.examples is not None else generate(model.inputs, seed=seed)
    return tuple(to_torch(arrays[s.name].copy()) for s in model.inputs)


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
        raise SpecError(_cannot_take(model, e)) from None
    n = len(flatten_outputs(result))
    if model.outputs and n != len(model.outputs):
        raise SpecError(f"model {model.name!r} returned {n} outputs, expected {len(model.outputs)}")
    return n


__all__ = [
    "Dim",
    "ResolvedModel",
    "example_args",
    "flatten_outputs",
    "resolve_model",
    "resolve_object",
]
