"""tract: symbolic shapes first, concrete ones per shape signature, clean errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnkit.backends.tract import TractBackend, tract_reason
from nnkit.errors import BackendError
from tests.backends.conftest import require_backend


@pytest.fixture(autouse=True)
def _tract_runs_here() -> None:
    require_backend("tract")


def _x(*shape: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}


def test_dynamo_combinednn_runs_with_its_symbolic_batch(zoo_file):
    with TractBackend(zoo_file("combinednn", "dynamo")) as backend:
        assert backend._symbolic is not None
        for batch in (1, 4):
            assert backend.run(_x(batch, 3, 32, 32))["logits"].shape == (batch, 10)
        assert backend._concrete == {}  # never needed concrete shapes


def test_torchscript_lstm_runs_with_concrete_shapes_one_runnable_per_signature(zoo_file):
    with TractBackend(zoo_file("lstm", "torchscript")) as backend:
        out = backend.run(_x(2, 7, 10))
        assert list(out) == ["output", "h_n", "c_n"]  # the file's names, not tract's node names
        assert out["output"].shape == (2, 7, 20)
        assert backend.run(_x(3, 5, 10))["h_n"].shape == (2, 3, 20)
        backend.run(_x(2, 7, 10))
        assert sorted(backend._concrete) == [((2, 7, 10),), ((3, 5, 10),)]


def test_an_op_tract_lacks_is_refused_in_one_clean_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"])],
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10),
        str(path),
    )
    with TractBackend(path) as backend, pytest.raises(BackendError) as info:
        backend.run({"x": np.eye(3, dtype=np.float32)})
    message = info.value.format_message()
    assert message.startswith(f"tract: cannot load {path} at input shapes [(3, 3)]: ")
    assert "Unimplemented(Det)" in message
    assert "backtrace" not in message.lower() and "\n" not in str(info.value.message)
    assert info.value.backend == "tract"


def test_tract_reason_keeps_the_error_and_its_innermost_cause():
    import tract

    text = (
        'Failed analyse for node #10 "node_conv2d" ConvHir\n\nCaused by:\n    0: Infering facts\n'
        "    1: Impossible to unify Sym(batch) with Val(2).\n\nStack backtrace:\n   0: <anyhow>\n"
    )
    assert tract_reason(tract.TractError(text)) == (
        'Failed analyse for node #10 "node_conv2d" ConvHir: Impossible to unify Sym(batch) with Val(2).'
    )
    assert tract_reason(tract.TractError("plain")) == "plain"


def test_timed_runs_use_concrete_shapes_even_where_the_file_has_symbolic_hints(zoo_file):
    # The dynamo LSTM carries value_info [2, batch, 20]; with it, tract cannot type the
    # model at a concrete batch ("Impossible to unify Sym(batch) with Val(64)").
    x = np.random.default_rng(0).standard_normal((64, 7, 10), dtype=np.float32)
    with TractBackend(zoo_file("lstm", "dynamo")) as backend:
        outputs = backend.fetch(backend.run_prepared(backend.prepare({"x": x})))
        assert [o.shape for o in outputs.values()] == [(64, 7, 20), (2, 64, 20), (2, 64, 20)]
        np.testing.assert_allclose(outputs["output"], backend.run({"x": x})["output"], rtol=1e-6)
        workdir = backend._workdir.name
    assert not Path(workdir).exists()  # the stripped copy goes with the backend
