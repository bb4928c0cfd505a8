"""tract: concrete shapes per shape signature, the declared ones where tract needs them, clean errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from nnkit.backends.onnxruntime import CPUBackend
from nnkit.backends.tract import TractBackend, tract_reason
from nnkit.errors import BackendError
from tests.backends.conftest import require_backend


@pytest.fixture(autouse=True)
def _tract_runs_here() -> None:
    require_backend("tract")


def _x(*shape: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}


def _onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with CPUBackend(path) as backend:
        return backend.run(feeds)


@pytest.mark.parametrize(
    ("name", "exporter"),
    [("combinednn", "dynamo"), ("lstm", "torchscript"), ("lstm", "dynamo")],
)
def test_the_files_tract_types_one_way_only_run_at_every_batch(zoo_file, name, exporter):
    # tract types the dynamo CombinedNN with concrete shapes only without the file's
    # shape hints, and runs the LSTM typed with its symbolic batch at batch 1 only
    # ("Clashing resolution for expression. batch=3 != 1"): batch 1 first, then others.
    path = zoo_file(name, exporter)
    shape = (3, 32, 32) if name == "combinednn" else (7, 10)
    with TractBackend(path) as backend:
        for batch in (1, 3, 64):
            x = _x(batch, *shape)
            got = backend.run(x)
            expected = _onnxruntime(path, x)
            assert list(got) == list(expected)  # the file's names, not tract's node names
            for out in expected:
                assert got[out].shape == expected[out].shape
                np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-5)


def test_one_runnable_per_shape_signature_shared_by_run_and_timed_runs(zoo_file):
    with TractBackend(zoo_file("lstm", "torchscript")) as backend:
        at_2 = backend.prepare(_x(2, 7, 10))
        at_3 = backend.prepare(_x(3, 5, 10))
        assert backend.prepare(_x(2, 7, 10)).runnable is at_2.runnable
        assert at_3.runnable is not at_2.runnable
        assert backend.run(_x(3, 5, 10))["h_n"].shape == (2, 3, 20)
        assert backend.prepare(_x(3, 5, 10)).runnable is at_3.runnable


def test_a_file_tract_types_only_with_its_declared_shapes_runs_with_them(zoo_file, tmp_path):
    # With external weights the file keeps its shape hints (a copy would lose them), and
    # tract cannot type the dynamo CombinedNN at a concrete batch: it runs symbolic.
    import onnx

    original = zoo_file("combinednn", "dynamo")
    path = tmp_path / "external.onnx"
    onnx.save(onnx.load(str(original)), str(path), save_as_external_data=True)
    saved = onnx.load(str(path), load_external_data=False).graph
    assert saved.value_info
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in saved.initializer)
    x = _x(3, 3, 32, 32)
    with TractBackend(path) as backend:
        got = backend.run(x)["logits"]
        prepared = backend.prepare(x)
        timed = backend.fetch(backend.run_prepared(prepared))["logits"]
        # typed with the declared (symbolic) batch: one runnable for every batch
        assert backend.prepare(_x(5, 3, 32, 32)).runnable is prepared.runnable
    np.testing.assert_allclose(got, _onnxruntime(original, x)["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(timed, got)


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


def test_timed_runs_use_concrete_shapes_even_where_the_file_has_symbolic_hints(
    zoo_file, tmp_path, monkeypatch
):
    # The dynamo LSTM carries value_info [2, batch, 20]; with it, tract cannot type the
    # model at a concrete batch ("Impossible to unify Sym(batch) with Val(64)").
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    x = np.random.default_rng(0).standard_normal((64, 7, 10), dtype=np.float32)
    with TractBackend(zoo_file("lstm", "dynamo")) as backend:
        outputs = backend.fetch(backend.run_prepared(backend.prepare({"x": x})))
        assert [o.shape for o in outputs.values()] == [(64, 7, 20), (2, 64, 20), (2, 64, 20)]
        np.testing.assert_allclose(outputs["output"], backend.run({"x": x})["output"], rtol=1e-6)
        assert list(tmp_path.iterdir())  # the copy without the hints
    assert not list(tmp_path.iterdir())  # the stripped copy goes with the backend
