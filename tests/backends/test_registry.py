"""The registry: one list of backend names for every command, resolved to classes once,
and importing it imports no runtime."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nnkit.backends import (
    BACKENDS,
    BENCH_NAMES,
    ONNX_NAMES,
    TORCH,
    backend_class,
    backend_requirement,
    check_name,
    probe,
)
from nnkit.backends.base import Backend
from nnkit.errors import NnkitError

RUNTIMES = ("torch", "onnx", "onnxruntime", "openvino", "tract")


def test_the_backends_are_the_onnx_runtimes_in_report_order():
    assert list(BACKENDS) == ["cpu", "cuda", "tensorrt", "openvino", "tract", "reference"]
    assert tuple(BACKENDS) == ONNX_NAMES
    assert TORCH == "torch" and TORCH not in BACKENDS
    assert ("torch", *BACKENDS) == BENCH_NAMES


def test_each_name_resolves_to_its_class():
    for name in BACKENDS:
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name
        assert cls.requirement == backend_requirement(name)
    assert backend_requirement(TORCH) == "torch"


def test_an_unknown_name_and_torch_are_refused_with_the_valid_names():
    valid = "valid backends are cpu, cuda, tensorrt, openvino, tract, reference"
    with pytest.raises(NnkitError, match=f"unknown backend 'onnx': {valid}$"):
        check_name("onnx")
    with pytest.raises(NnkitError) as info:
        backend_class("torch")
    message = info.value.format_message()
    assert "the reference every backend is compared with" in message and message.endswith(valid)


def test_the_torch_reference_is_probed_like_a_backend():
    import torch

    assert probe(TORCH).version == torch.__version__


def test_the_commands_offer_the_registrys_names():
    from nnkit.commands.bench import BACKEND_NAMES
    from nnkit.commands.infer import PROVIDERS

    assert list(BENCH_NAMES) == BACKEND_NAMES
    assert PROVIDERS == ONNX_NAMES


def test_importing_the_registry_imports_no_runtime():
    code = (
        "import sys, nnkit.backends, nnkit.commands.bench, nnkit.commands.infer\n"
        f"print([m for m in {RUNTIMES!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
