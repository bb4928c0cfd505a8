"""The backend registry: a name per ONNX runtime, its module imported only when chosen.

Every list of backend names nnkit shows (``--backends``, ``--provider``, the doctor's
rows, the errors) is read here, and a name becomes a class here, once
(:func:`backend_class`). Importing this module imports no runtime (a test holds it to
that). ``torch`` is no backend: it is the PyTorch reference every backend is judged
against (:mod:`nnkit.reference`), named here only because bench times it beside the
backends and doctor probes it (:data:`TORCH`, :data:`BENCH_NAMES`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnkit.errors import BackendUnavailableError, NnkitError, describe

if TYPE_CHECKING:
    from nnkit.backends.base import Backend

#: name -> "module:Class" of each ONNX runtime. The order is the order of reports.
BACKENDS: dict[str, str] = {
    "cpu": "nnkit.backends.onnxruntime:CPUBackend",
    "cuda": "nnkit.backends.onnxruntime:CUDABackend",
    "tensorrt": "nnkit.backends.onnxruntime:TensorRTBackend",
    "openvino": "nnkit.backends.openvino:OpenVINOBackend",
    "tract": "nnkit.backends.tract:TractBackend",
    "reference": "nnkit.backends.reference:ReferenceBackend",
}

#: The name of the PyTorch reference, where it stands beside the backends (a bench
#: column, a doctor row).
TORCH = "torch"
#: "module:Class" of the PyTorch reference (probed like a backend, built differently).
TORCH_CLASS = "nnkit.reference:Reference"
#: ``nnkit bench --backends`` choices: the reference, then every backend.
BENCH_NAMES: tuple[str, ...] = (TORCH, *BACKENDS)
#: ``nnkit infer --provider`` (and ``nnkit parity --backends``) choices: the backends.
ONNX_NAMES: tuple[str, ...] = tuple(BACKENDS)

#: name -> the pip requirement of its runtime (each class's ``requirement`` reads it here).
REQUIREMENTS: dict[str, str] = {
    TORCH: "torch",
    "cpu": "onnxruntime-gpu (or onnxruntime)",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu",
    "openvino": "openvino",
    "tract": "tract",
    "reference": "onnx",
}


def check_name(name: str) -> str:
    """``name`` if it names a backend, else a one-line error listing the valid names.

    Raises:
        NnkitError: an unknown name; ``torch`` with its own reason (it is the reference).
    """
    if name not in BACKENDS:
        valid = ", ".join(BACKENDS)
        if name == TORCH:
            raise NnkitError(
                f"{TORCH!r} is the PyTorch model itself, the reference every backend is "
                f"compared with, not an ONNX backend: valid backends are {valid}"
            )
        raise NnkitError(f"unknown backend {name!r}: valid backends are {valid}")
    return name


def backend_class(name: str) -> type[Backend[Any, Any]]:
    """The class registered as ``name``, its runtime module imported now."""
    cls: type[Backend[Any, Any]] = _load(BACKENDS[check_name(name)])
    return cls


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ProbeResult:
    """Whether a backend runs here: its runtime's version when it does, the reason when not."""

    name: str
    version: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __bool__(self) -> bool:
        return self.ok


@functools.cache
def probe(name: str) -> ProbeResult:
    """Probe backend ``name`` (or :data:`TORCH`) for real (a tiny model loaded and run),
    once per process.

    Never raises for a backend that cannot run: the reason is in the result.

    Raises:
        NnkitError: an unknown name.
    """
    target = TORCH_CLASS if name == TORCH else BACKENDS[check_name(name)]
    try:
        version = _load(target).probe()
    except NnkitError as e:
        return ProbeResult(name, reason=e.format_message())
    except Exception as e:  # a runtime that breaks in a way nobody wrapped: still a reason
        return ProbeResult(name, reason=f"{name}: {describe(e)}")
    return ProbeResult(name, version=version)


def available(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """Which backends run here: name -> None where usable, else the one-line reason.

    Args:
        names: the backends to probe (default: every ONNX backend; :data:`TORCH` may
            be named, which imports torch).
    """
    return {n: probe(n).reason for n in (BACKENDS if names is None else names)}


def require(name: str) -> None:
    """Refuse, before any work, a backend (or :data:`TORCH`) that cannot run here.

    Raises:
        BackendUnavailableError: with the probe's reason.
    """
    result = probe(name)
    if not result:
        raise BackendUnavailableError(result.reason or f"{name}: not available")


def backend_requirement(name: str) -> str:
    """What a user installs to get backend ``name`` or :data:`TORCH` (read without
    importing its runtime)."""
    return REQUIREMENTS[TORCH if name == TORCH else check_name(name)]
