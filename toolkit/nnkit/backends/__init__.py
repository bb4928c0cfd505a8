"""The backend registry: a name per runtime, its module imported only when chosen."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnkit.errors import BackendUnavailableError, NnkitError, describe

if TYPE_CHECKING:
    from nnkit.backends.base import Backend

#: name -> "module:Class". The order is the order of reports.
BACKENDS: dict[str, str] = {
    "torch": "nnkit.backends.torch:TorchBackend",
    "cpu": "nnkit.backends.onnxruntime:CPUBackend",
    "cuda": "nnkit.backends.onnxruntime:CUDABackend",
    "tensorrt": "nnkit.backends.onnxruntime:TensorRTBackend",
    "openvino": "nnkit.backends.openvino:OpenVINOBackend",
    "tract": "nnkit.backends.tract:TractBackend",
    "reference": "nnkit.backends.reference:ReferenceBackend",
}

#: name -> the pip requirement of its runtime (each class's ``requirement`` reads it here).
REQUIREMENTS: dict[str, str] = {
    "torch": "torch",
    "cpu": "onnxruntime-gpu (or onnxruntime)",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu",
    "openvino": "openvino",
    "tract": "tract",
    "reference": "onnx",
}


def check_name(name: str) -> str:
    """``name`` if it names a backend, else a one-line error listing the valid names."""
    if name not in BACKENDS:
        raise NnkitError(f"unknown backend {name!r}: valid backends are {', '.join(BACKENDS)}")
    return name


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, its runtime module imported now."""
    module, _, attr = BACKENDS[check_name(name)].partition(":")
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
    """Probe backend ``name`` for real (a tiny model loaded and run), once per process.

    Never raises for a backend that cannot run: the reason is in the result.
    """
    check_name(name)
    try:
        version = backend_class(name).probe()
    except NnkitError as e:
        return ProbeResult(name, reason=e.format_message())
    except Exception as e:  # a runtime that breaks in a way nobody wrapped: still a reason
        return ProbeResult(name, reason=f"{name}: {describe(e)}")
    return ProbeResult(name, version=version)


def available(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """Which backends run here: name -> None where usable, else the one-line reason.

    Args:
        names: the backends to probe (default: all, ``torch`` included, which imports
            torch).
    """
    return {n: probe(n).reason for n in (BACKENDS if names is None else names)}


def require(name: str) -> None:
    """Refuse, before any work, a backend that cannot run here.

    Raises:
        BackendUnavailableError: with the probe's reason.
    """
    result = probe(name)
    if not result:
        raise BackendUnavailableError(result.reason or f"{name}: not available")


def backend_requirement(name: str) -> str:
    """What a user installs to get backend ``name`` (read without importing its runtime)."""
    return REQUIREMENTS[check_name(name)]
