"""Small ONNX models built by hand, and the backends that can run here."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from nnkit.backends import BACKENDS, probe
from nnkit.backends._probe import IR_VERSION, OPSET

#: Backends that run ONNX files: every registered one.
ONNX_BACKENDS = list(BACKENDS)


def save_model(nodes, inputs, outputs, path: Path) -> Path:
    """Build, check and save a one-graph model with an IR version onnxruntime reads."""
    graph = helper.make_graph(nodes, path.stem, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    path.chmod(0o444)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("handmade")


@pytest.fixture(scope="session")
def add_model(model_dir: Path) -> Path:
    """``sum = a + b``: two float32 inputs ``[n, 3]`` sharing the symbolic dim ``n``."""
    return save_model(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 3])],
        model_dir / "add.onnx",
    )


@pytest.fixture(scope="session")
def multi_model(model_dir: Path) -> Path:
    """Three outputs, declared in an order no runtime would sort them in: neg, relu, sig."""
    return save_model(
        [
            helper.make_node("Relu", ["x"], ["relu"]),
            helper.make_node("Neg", ["x"], ["neg"]),
            helper.make_node("Sigmoid", ["x"], ["sig"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [
            helper.make_tensor_value_info("neg", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("relu", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("sig", TensorProto.FLOAT, [2, 4]),
        ],
        model_dir / "multi.onnx",
    )


@pytest.fixture(scope="session")
def unknown_op_model(model_dir: Path) -> Path:
    """A well-formed file whose one operator no runtime has."""
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="nnkit.test")],
        "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("nnkit.test", 1)],
    )
    model.ir_version = IR_VERSION
    path = model_dir / "unknown_op.onnx"
    onnx.save(model, str(path))
    return path


def require_backend(name: str) -> None:
    """Skip, with the probe's reason, where backend ``name`` cannot run here."""
    result = probe(name)
    if not result:
        pytest.skip(f"{name} unavailable here: {result.reason}")


@pytest.fixture(params=ONNX_BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each ONNX backend that runs on this machine (the others skip, saying why)."""
    require_backend(request.param)
    return request.param
