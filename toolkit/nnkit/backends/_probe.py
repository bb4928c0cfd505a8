"""What every backend's :meth:`~nnkit.backends.base.Backend.probe` shares.

A probe proves a runtime works by running a tiny model built here in memory (with an
IR version onnxruntime reads), not by asking the runtime what it claims to support.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.errors import BackendUnavailableError, NnkitError

if TYPE_CHECKING:
    import onnx

    from nnkit.backends.base import Backend

#: IR version of the models nnkit builds itself: onnx 1.23 stamps 14, onnxruntime 1.31 reads 13.
IR_VERSION = 10
#: Opset of the models nnkit builds itself.
OPSET = 17


def import_runtime(backend: str, module: str) -> ModuleType:
    """Import a runtime's Python module, or say which package to install.

    Raises:
        BackendUnavailableError: the module is not installed or does not import.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"{backend}: the Python module {module!r} is not installed or does not import "
            f"({type(e).__name__}: {e}); install it with: pip install {REQUIREMENTS[backend]}"
        ) from e


def tiny_model() -> onnx.ModelProto:
    """``y = x + x`` over a float32 ``[1, 4]`` input: the smallest model worth running."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "nnkit_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def run_probe(cls: type[Backend], version: str) -> str:
    """Load and run :func:`tiny_model` on ``cls``; return ``version`` if the answer is right.

    Raises:
        BackendUnavailableError: the runtime cannot load or run the model, or answers wrong.
    """
    import onnx

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    with tempfile.TemporaryDirectory(prefix="nnkit-probe-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(tiny_model(), str(path))
        backend = cls(path, threads=1)
        try:
            with backend:
                y = backend.run({"x": x})["y"]
        except BackendUnavailableError:
            raise
        except NnkitError as e:
            raise BackendUnavailableError(
                f"{cls.name}: cannot run a one-node model: {e.format_message()}"
            ) from e
    if not np.array_equal(np.asarray(y), x + x):
        raise BackendUnavailableError(f"{cls.name}: a one-node Add model gave a wrong answer")
    return version
