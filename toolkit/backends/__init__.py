"""The backend registry: a name per runtime, its module imported only when chosen."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nnkit.errors import NnkitError

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


def check_name(name: str) -> str:
    """``name`` if it names a backend, else a one-line error listing the valid names."""
    if name not in BACKENDS:
        raise NnkitError(f"unknown backend {name!r}: valid backends are {', '.join(BACKENDS)}")
    return name


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, its runtime module imported now."""
    module, _, attr = BACKENDS[check_name(name)].partition(":")
    return getattr(importlib.import_module(module), attr)
