"""The steps that run users' code or a native runtime, made to run inside a worker.

Each function here is called through a :class:`~nnkit.worker.Worker` (or
:class:`~nnkit.worker.InProcess`): its arguments and results cross a process boundary,
so they are plain values (specs, paths, arrays, small dataclasses), never a module or a
session. What a step builds (a resolved model, a loaded backend) is cached in the
process that built it and found again by the next step with the same key; a step given
a key it has not seen (the worker died and was replaced) builds it afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import NnkitError, describe
from nnkit.spec import TensorSpec

if TYPE_CHECKING:
    import numpy as np

    from nnkit.backends.base import Backend, TensorInfo
    from nnkit.export import ExportResult
    from nnkit.resolve import ResolvedModel


class ReferenceFailed(NnkitError):
    """PyTorch itself failed on an input (the model's forward raised)."""


@dataclass(frozen=True)
class ModelRequest:
    """Which model to build: a reference and, outside the zoo, its input specs."""

    ref: str
    inputs: tuple[TensorSpec, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """What the caller needs to know of a built model: its name, I/O and tolerances."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    atol: float | None = None
    rtol: float | None = None
    zoo: bool = False


_MODELS: dict[ModelRequest, ResolvedModel] = {}
_OBJECTS: dict[ModelRequest, ResolvedModel] = {}


def register(request: ModelRequest, model: ResolvedModel) -> None:
    """Make an already built model (an object from the Python API) the one ``request``
    names, in this process: for :class:`~nnkit.worker.InProcess` runs."""
    _OBJECTS[request] = model


def resolved(request: ModelRequest) -> ResolvedModel:
    """The model ``request`` names, built once in this process."""
    from nnkit.resolve import resolve_model

    model = _OBJECTS.get(request) or _MODELS.get(request)
    if model is None:
        model = _MODELS[request] = resolve_model(request.ref, inputs=request.inputs)
    return model


def forget_models() -> None:
    """Drop the models built in this process (their code may have changed)."""
    _MODELS.clear()


def describe_model(request: ModelRequest) -> ModelInfo:
    """Build the model (importing its code, running it once) and say what it is."""
    m = resolved(request)
    return ModelInfo(m.name, tuple(m.inputs), tuple(m.outputs), m.atol, m.rtol, m.zoo)


def reference_outputs(request: ModelRequest, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """PyTorch's outputs on ``feeds``: the reference every runtime is judged against.

    Raises:
        ReferenceFailed: the model's forward failed on these inputs.
    """
    from nnkit.backends.torch import TorchBackend
    from nnkit.parity import tensor_infos

    m = resolved(request)
    backend = TorchBackend.from_module(m.module, tensor_infos(m.inputs), m.outputs)
    with backend:
        try:
            return backend.run(feeds)
        except Exception as e:
            raise ReferenceFailed(f"PyTorch (the reference) failed: {describe(e)}") from None


def export(request: ModelRequest, out: Path, **options: Any) -> ExportResult:
    """Export the model to ``out``; ``options`` are :func:`nnkit.export.export_model`'s."""
    from nnkit.export import export_model

    return export_model(resolved(request), out, **options)


# -- runtimes ---------------------------------------------------------------------------

_BACKENDS: dict[tuple[str, str, int | None], Backend] = {}


def load_backend(
    name: str, path: str, threads: int | None = None
) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Load ``path`` on backend ``name`` (kept for the next steps); its declared I/O."""
    from nnkit.backends import backend_class

    key = (name, str(path), threads)
    backend = _BACKENDS.get(key)
    if backend is None:
        backend = backend_class(name)(path, threads=threads)
        backend.load()
        _BACKENDS[key] = backend
    return backend.inputs, backend.outputs


def run_backend(
    name: str, path: str, feeds: dict[str, np.ndarray], threads: int | None = None
) -> tuple[dict[str, Any], float]:
    """Run the loaded file once on ``feeds``: the outputs, and the seconds the run took."""
    load_backend(name, path, threads)
    backend = _BACKENDS[(name, str(path), threads)]
    start = time.perf_counter()
    outputs = backend.run(feeds)
    return outputs, time.perf_counter() - start


def close_backend(name: str, path: str, threads: int | None = None) -> None:
    """Release the session of ``path`` on backend ``name``, if one is loaded."""
    backend = _BACKENDS.pop((name, str(path), threads), None)
    if backend is not None:
        backend.close()
