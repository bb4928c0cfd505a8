"""``outputs=``: any backend returns chosen values of the graph, intermediate ones too,
and they are the values the graph computes (onnxruntime's, and PyTorch's where the
torchscript export names a value after its module)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from nnkit.backends import backend_class
from nnkit.errors import NnkitError
from nnkit.models import ZOO

#: torchscript CombinedNN values, named after the module calls that give them.
TORCHSCRIPT_CNN = {
    "/conv1/Conv_output_0": "conv1",
    "/relu/Relu_output_0": "relu",
    "/fc1/Gemm_output_0": "fc1",
    "/relu_1/Relu_output_0": "relu#2",
    "/fc2/Gemm_output_0": "fc2",
}
#: (model, exporter) -> intermediate values asked for, and a declared output among them.
CASES = {
    ("combinednn", "torchscript"): [*TORCHSCRIPT_CNN, "logits"],
    ("combinednn", "dynamo"): ["relu_1", "logits", "conv2d"],
    ("lstm", "torchscript"): ["/rnn/LSTM_output_0", "h_n", "/rnn/LSTM_1_output_1"],
    ("lstm", "dynamo"): ["val_68", "output"],
}


def _feeds(name: str, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {
        s.name: rng.standard_normal(s.shape_with({"batch": batch, "seq": 5}), dtype=np.float32)
        for s in ZOO[name].inputs
    }


@pytest.fixture(scope="module")
def onnxruntime_values(zoo_file):
    cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def get(name: str, exporter: str) -> dict[str, np.ndarray]:
        if (name, exporter) not in cache:
            path = zoo_file(name, exporter)
            with backend_class("cpu")(path, outputs=CASES[name, exporter]) as backend:
                cache[name, exporter] = backend.run(_feeds(name))
        return cache[name, exporter]

    return get


@pytest.mark.parametrize(("name", "exporter"), list(CASES), ids="-".join)
def test_intermediate_values_match_onnxruntimes(
    backend_name, name, exporter, zoo_file, onnxruntime_values
):
    wanted = CASES[name, exporter]
    path = zoo_file(name, exporter)
    feeds = _feeds(name)
    with backend_class(backend_name)(path, outputs=wanted) as backend:
        assert [o.name for o in backend.outputs] == wanted
        got = backend.run(feeds)
        timed = backend.fetch(backend.run_prepared(backend.prepare(feeds)))
    expected = onnxruntime_values(name, exporter)
    assert list(got) == wanted == list(timed)
    entry = ZOO[name]
    for value in wanted:
        assert got[value].shape == expected[value].shape, value
        np.testing.assert_allclose(got[value], expected[value], rtol=entry.rtol, atol=entry.atol)
        np.testing.assert_array_equal(timed[value], got[value])


def test_intermediate_values_are_what_pytorchs_modules_return(zoo_file, onnxruntime_values):
    from nnkit.parity import tensor_infos
    from nnkit.reference import Reference

    entry = ZOO["combinednn"]
    modules = sorted({m.split("#")[0] for m in TORCHSCRIPT_CNN.values()})
    with Reference(
        entry.build(), tensor_infos(entry.inputs), entry.outputs, capture=modules
    ) as reference:
        reference.run(_feeds("combinednn"))
        captured = reference.captured
    got = onnxruntime_values("combinednn", "torchscript")
    for value, module in TORCHSCRIPT_CNN.items():
        np.testing.assert_allclose(got[value], captured[module], rtol=1e-4, atol=1e-5)


def test_the_declared_outputs_are_the_default_and_types_come_from_inference(zoo_file):
    path = zoo_file("combinednn", "torchscript")
    with backend_class("cpu")(path) as backend:
        assert [o.name for o in backend.outputs] == ["logits"]
    with backend_class("cpu")(path, outputs=["/fc1/Gemm_output_0", "logits"]) as backend:
        fc1, logits = backend.outputs
        assert (fc1.dtype, fc1.dims[1:]) == ("float32", (120,))
        assert logits.dims == ("batch", 10)  # as the file declares it


def test_an_unknown_value_is_refused_listing_the_values(backend_name, zoo_file):
    backend = backend_class(backend_name)(zoo_file("linear", "dynamo"), outputs=["y", "nope"])
    with pytest.raises(NnkitError) as info:
        backend.load()
    message = info.value.format_message()
    assert message.startswith("'nope' is no value of the main graph of ")
    assert "its values are 'x', " in message and "'y'" in message
    with pytest.raises(NnkitError, match="give at least one"):
        backend_class(backend_name)(zoo_file("linear", "dynamo"), outputs=[]).load()


def test_the_edited_copy_goes_with_the_backend(zoo_file, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = zoo_file("combinednn", "dynamo")
    backend = backend_class("cpu")(path, outputs=["relu"])
    with backend:
        assert backend.runtime_path != path and backend.runtime_path.exists()
        assert backend.run(_feeds("combinednn"))["relu"].shape == (3, 16, 32, 32)
    assert backend.runtime_path == path
    assert not list(tmp_path.iterdir())
    with pytest.raises(NnkitError):
        backend_class("cpu")(path, outputs=["nope"]).load()
    assert not list(tmp_path.iterdir())  # a refused request leaves nothing either


def test_a_file_with_external_weights_keeps_them(backend_name, zoo_file, tmp_path):
    import onnx

    original = zoo_file("combinednn", "dynamo")
    path = tmp_path / "external.onnx"
    onnx.save(onnx.load(str(original)), str(path), save_as_external_data=True)
    feeds = _feeds("combinednn")
    with backend_class("cpu")(original, outputs=["linear", "logits"]) as backend:
        expected = backend.run(feeds)
    with backend_class(backend_name)(path, outputs=["linear", "logits"]) as backend:
        got = backend.run(feeds)
    for value in expected:
        np.testing.assert_allclose(got[value], expected[value], rtol=1e-4, atol=1e-5)


def test_device_says_where_inputs_and_results_live(backend_name, add_model):
    backend = backend_class(backend_name)(add_model)
    expected = "cuda:0" if backend_name in ("cuda", "tensorrt") else "cpu"
    assert backend.device == expected


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_the_gpu_backends_live_on_the_first_gpu(name: str) -> None:
    # read without loading: these run on this machine or not
    assert backend_class(name)(Path("unused.onnx")).device == "cuda:0"


def test_a_planted_weight_shows_in_the_values_after_it_only(backend_name, zoo_file, tmp_path):
    # fc1's weight nudged: conv1 still agrees with PyTorch's module, fc1 no longer does
    from nnkit.parity import tensor_infos
    from nnkit.reference import Reference
    from tests._faults import nudge_weight

    entry = ZOO["combinednn"]
    path = nudge_weight(zoo_file("combinednn", "torchscript"), tmp_path / "nudged.onnx")
    feeds = _feeds("combinednn")
    wanted = ["/conv1/Conv_output_0", "/fc1/Gemm_output_0"]
    with backend_class(backend_name)(path, outputs=wanted) as backend:
        got = backend.run(feeds)
    with Reference(
        entry.build(), tensor_infos(entry.inputs), entry.outputs, capture=["conv1", "fc1"]
    ) as reference:
        reference.run(feeds)
        captured = reference.captured
    np.testing.assert_allclose(got[wanted[0]], captured["conv1"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(got[wanted[1]], captured["fc1"], rtol=1e-4, atol=1e-5)
