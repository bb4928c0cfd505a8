"""The PyTorch reference: a module on named arrays, outputs flattened onto names, and
the outputs of its submodules captured through forward hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnkit.backends.base import TensorInfo
from nnkit.backends.onnxruntime import CPUBackend
from nnkit.errors import BackendError, InputError, NnkitError
from nnkit.models import ZOO
from nnkit.reference import Reference

X = (TensorInfo("x", ("batch", "seq", 10), "float32"),)
IMAGE = (TensorInfo("x", ("batch", 3, 32, 32), "float32"),)


class Nested(nn.Module):
    def forward(self, a, b):
        return a + b, (a - b, {"prod": a * b})


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)  # overwrites what fc returned

    def forward(self, x):
        return self.act(self.fc(x))


class Net(nn.Module):
    """Registered in one order (second, first, head), run in another (first, second, head)."""

    def __init__(self) -> None:
        super().__init__()
        self.second = Block()
        self.first = Block()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.second(self.first(x)))


NET_INPUTS = (TensorInfo("x", ("batch", 4), "float32"),)


def _image(batch: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)}


def test_lstm_outputs_flattened_onto_names_and_matching_the_export(zoo_file):
    entry = ZOO["lstm"]
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 5, 10), dtype=np.float32)}
    with Reference(entry.build(), X, entry.outputs) as reference:
        expected = reference.run(feeds)
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
    with Reference(Nested(), ab, ["sum", "diff", "prod"]) as reference:
        out = reference.run(feeds)
        prepared = reference.prepare(feeds)
        assert all(isinstance(t, torch.Tensor) for t in prepared)
        timed = reference.fetch(reference.run_prepared(prepared))
        np.testing.assert_array_equal(timed["prod"], [3.0, 8.0])
    assert {k: v.tolist() for k, v in out.items()} == {
        "sum": [4.0, 6.0],
        "diff": [2.0, 2.0],
        "prod": [3.0, 8.0],
    }
    with (
        Reference(Nested(), ab, ["sum"]) as reference,
        pytest.raises(BackendError, match="gives 3 outputs, 1 are named"),
    ):
        reference.run(feeds)


def test_a_forward_that_fails_is_one_backend_error_naming_the_model():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("no such luck")

    with Reference(Broken(), NET_INPUTS, ["y"]) as reference, pytest.raises(BackendError) as info:
        reference.run({"x": np.zeros((1, 4), np.float32)})
    assert info.value.format_message() == (
        "torch: cannot run <torch Broken>: ValueError: no such luck"
    )


def test_feeds_are_checked_and_threads_restored_on_close():
    entry = ZOO["linear"]
    info = (TensorInfo("x", ("batch", 10), "float32"),)
    before = torch.get_num_threads()
    reference = Reference(entry.build(), info, entry.outputs, threads=1)
    with pytest.raises(RuntimeError, match="not loaded"):
        reference.run({"x": np.zeros((2, 10), np.float32)})
    with reference:
        assert torch.get_num_threads() == 1
        with pytest.raises(InputError, match="dim 1 is 9, must be 10"):
            reference.run({"x": np.zeros((2, 9), np.float32)})
        assert reference.run({"x": np.zeros((2, 10), np.float32)})["y"].shape == (2, 50)
    assert torch.get_num_threads() == before
    assert not torch.is_inference_mode_enabled()


def test_probe_reports_the_torch_version():
    assert Reference.probe() == torch.__version__


# -- capture ----------------------------------------------------------------------------


def test_capture_keys_are_qualified_names_in_execution_order():
    x = {"x": np.random.default_rng(1).standard_normal((3, 4), dtype=np.float32)}
    with Reference(Net(), NET_INPUTS, ["y"], capture="leaves") as reference:
        reference.run(x)
        assert list(reference.captured) == [
            "first.fc",
            "first.act",
            "second.fc",
            "second.act",
            "head",
        ]
    with Reference(Net(), NET_INPUTS, ["y"], capture="all") as reference:
        y = reference.run(x)["y"]
        assert list(reference.captured) == [
            "first.fc",
            "first.act",
            "first",
            "second.fc",
            "second.act",
            "second",
            "head",
        ]
        np.testing.assert_array_equal(reference.captured["head"], y)  # the last module's
    with Reference(Net(), NET_INPUTS, ["y"], capture=["head", "first.fc"]) as reference:
        reference.run(x)
        assert list(reference.captured) == ["first.fc", "head"]  # as run, not as asked


def test_capture_inputs_keeps_each_call_s_arguments_in_call_order():
    x = {"x": np.random.default_rng(3).standard_normal((3, 4), dtype=np.float32)}
    with Reference(Net(), NET_INPUTS, ["y"], capture="all", capture_inputs=True) as reference:
        reference.run(x)
        keys = list(reference.captured)
        captured = reference.captured
    # a module's arguments come when it is called: before its children's outputs
    assert keys[:4] == ["first(in)[0]", "first.fc(in)[0]", "first.fc", "first.act(in)[0]"]
    np.testing.assert_array_equal(captured["first(in)[0]"], x["x"])
    np.testing.assert_array_equal(captured["second(in)[0]"], captured["first"])
    with Reference(Net(), NET_INPUTS, ["y"], capture="all") as reference:
        reference.run(x)
        assert not any("(in)" in k for k in reference.captured)  # off by default


def test_a_capture_is_a_copy_an_in_place_op_does_not_change():
    model = Net()
    x = {"x": np.random.default_rng(2).standard_normal((8, 4), dtype=np.float32)}
    with Reference(model, NET_INPUTS, ["y"], capture=["first.fc", "first.act"]) as reference:
        reference.run(x)
        captured = reference.captured
    with torch.no_grad():
        fc = model.first.fc(torch.from_numpy(x["x"])).numpy()
    assert (fc < 0).any()  # ReLU(inplace=True) overwrote this tensor in forward
    np.testing.assert_allclose(captured["first.fc"], fc, rtol=1e-6)
    np.testing.assert_allclose(captured["first.act"], np.maximum(fc, 0), rtol=1e-6)


def test_a_module_called_twice_is_captured_per_call():
    # CombinedNN calls its one ``relu`` three times
    entry = ZOO["combinednn"]
    model = entry.build()
    with Reference(model, IMAGE, entry.outputs, capture=["fc1", "relu", "fc2"]) as reference:
        reference.run(_image(2))
        captured = reference.captured
        assert list(captured) == ["relu", "fc1", "relu#2", "fc2", "relu#3"]
        reference.run(_image(3))  # each run starts afresh
        assert list(reference.captured) == list(captured)
        assert reference.captured["fc1"].shape == (3, 120)
    np.testing.assert_array_equal(captured["relu#2"], np.maximum(captured["fc1"], 0))
    np.testing.assert_array_equal(captured["relu#3"], np.maximum(captured["fc2"], 0))


def test_a_tuple_output_is_flattened_with_indices():
    entry = ZOO["lstm"]
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 5, 10), dtype=np.float32)}
    with Reference(entry.build(), X, entry.outputs, capture=["rnn"]) as reference:
        out = reference.run(feeds)
        captured = reference.captured
    assert list(captured) == ["rnn[0]", "rnn[1]", "rnn[2]"]  # output, (h_n, c_n)
    for index, name in enumerate(entry.outputs):
        np.testing.assert_array_equal(captured[f"rnn[{index}]"], out[name])


def test_capture_of_a_module_the_model_lacks_lists_those_it_has():
    with pytest.raises(NnkitError) as info:
        Reference(Net(), NET_INPUTS, ["y"], capture=["first.fc", "third"]).load()
    message = info.value.format_message()
    assert "Net has no submodule 'third'" in message
    assert "'second.fc'" in message and "'head'" in message
    with pytest.raises(NnkitError, match="give 'leaves', 'all' or a list of module names"):
        Reference(Net(), NET_INPUTS, ["y"], capture="first.fc").load()


def test_close_removes_the_hooks():
    model = Net()
    x = np.zeros((1, 4), np.float32)
    reference = Reference(model, NET_INPUTS, ["y"], capture="leaves")
    with reference:
        reference.run({"x": x})
    reference.captured = {}
    with torch.no_grad():
        model(torch.from_numpy(x))
    assert reference.captured == {}
    with Reference(model, NET_INPUTS, ["y"]) as plain:  # no capture asked: nothing kept
        plain.run({"x": x})
        assert plain.captured == {}
