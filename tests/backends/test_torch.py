"""PyTorch eager, the reference: built from a module, same contract as every backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnkit.backends.base import TensorInfo
from nnkit.backends.onnxruntime import CPUBackend
from nnkit.backends.torch import TorchBackend
from nnkit.errors import BackendError, InputError
from nnkit.models import ZOO

X = (TensorInfo("x", ("batch", "seq", 10), "float32"),)


class Nested(nn.Module):
    def forward(self, a, b):
        return a + b, (a - b, {"prod": a * b})


def test_lstm_outputs_flattened_onto_names_and_matching_the_export(zoo_file):
    entry = ZOO["lstm"]
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 5, 10), dtype=np.float32)}
    with TorchBackend.from_module(entry.build(), X, entry.outputs) as backend:
        expected = backend.run(feeds)
    assert {k: v.shape for k, v in expected.items()} == {
        "output": (3, 5, 20),
        "h_n": (2, 3, 20),
        "c_n": (2, 3, 20),
    }
    with CPUBackend(zoo_file("lstm", "torchscript")) as onnx:
        got = onnx.run(feeds)
    for name in entry.outputs:
        np.testing.assert_allclose(got[name], expected[name], rtol=entry.rtol, atol=entry.atol)


def test_nested_results_are_flattened_in_order_and_counted():
    ab = (TensorInfo("a", (2,), "float32"), TensorInfo("b", (2,), "float32"))
    feeds = {"a": np.array([3.0, 4.0], np.float32), "b": np.array([1.0, 2.0], np.float32)}
    with TorchBackend.from_module(Nested(), ab, ["sum", "diff", "prod"]) as backend:
        out = backend.run(feeds)
        prepared = backend.prepare(feeds)
        assert isinstance(prepared["a"], torch.Tensor)
        np.testing.assert_array_equal(backend.run_prepared(prepared)["prod"], [3.0, 8.0])
    assert {k: v.tolist() for k, v in out.items()} == {
        "sum": [4.0, 6.0],
        "diff": [2.0, 2.0],
        "prod": [3.0, 8.0],
    }
    with (
        TorchBackend.from_module(Nested(), ab, ["sum"]) as backend,
        pytest.raises(BackendError, match="gives 3 outputs, 1 are named"),
    ):
        backend.run(feeds)


def test_feeds_are_checked_and_threads_restored_on_close():
    entry = ZOO["linear"]
    info = (TensorInfo("x", ("batch", 10), "float32"),)
    before = torch.get_num_threads()
    backend = TorchBackend.from_module(entry.build(), info, entry.outputs, threads=1)
    with backend:
        assert torch.get_num_threads() == 1
        with pytest.raises(InputError, match="dim 1 is 9, must be 10"):
            backend.run({"x": np.zeros((2, 9), np.float32)})
        assert backend.run({"x": np.zeros((2, 10), np.float32)})["y"].shape == (2, 50)
    assert torch.get_num_threads() == before
    assert not torch.is_inference_mode_enabled()


def test_probe_reports_the_torch_version():
    assert TorchBackend.probe() == torch.__version__
