"""The reference zoo: the seed's shapes, deterministic weights, its listing."""

from __future__ import annotations

import json

import pytest
import torch

from nnkit.models import ZOO
from nnkit.resolve import count_outputs, example_args, resolve_model
from tests.conftest import run_cli

SEED_LAYERS = {
    "linear": "nn.Linear(10, 50)",
    "conv2d": "nn.Conv2d(3, 16, 3, stride=1, padding=1)",
    "lstm": "nn.LSTM(10, 20, num_layers=2, batch_first=True)",
    "gru": "nn.GRU(10, 20, num_layers=2, batch_first=True)",
    "relu": "nn.ReLU()",
    "sigmoid": "nn.Sigmoid()",
    "tanh": "nn.Tanh()",
    "maxpool2d": "nn.MaxPool2d(2, 2)",
}


def test_zoo_holds_every_layer_of_the_seed_and_combinednn():
    assert set(ZOO) == {*SEED_LAYERS, "combinednn"}
    for name, layer in SEED_LAYERS.items():
        assert ZOO[name].summary == layer


def test_seed_shapes():
    lstm = ZOO["lstm"].build().rnn
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.batch_first) == (
        10,
        20,
        2,
        True,
    )
    conv = ZOO["conv2d"].build().conv
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        3,
        16,
        (3, 3),
        (1, 1),
        (1, 1),
    )
    net = ZOO["combinednn"].build()
    assert [
        net.fc1.in_features,
        net.fc1.out_features,
        net.fc2.out_features,
        net.fc3.out_features,
    ] == [
        4096,
        120,
        84,
        10,
    ]


@pytest.mark.parametrize("name", list(ZOO))
def test_weights_are_deterministic_and_outputs_as_declared(name):
    a, b = ZOO[name].build(), ZOO[name].build()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    model = resolve_model(name)
    assert count_outputs(model) == len(ZOO[name].outputs)
    assert not model.module.training
    assert all(t.shape[0] == 2 for t in example_args(model))


def test_building_does_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ZOO["combinednn"].build()
    assert torch.equal(torch.rand(3), expected)


def test_models_command_lists_the_zoo_as_table_and_json():
    table = run_cli("models")
    assert table.exit_code == 0
    assert "combinednn" in table.stdout and "x:batch=2xseq=7x10:float32" in table.stdout
    listed = json.loads(run_cli("models", "--json").stdout)
    assert [m["name"] for m in listed] == list(ZOO)
    assert listed[2]["outputs"] == ["output", "h_n", "c_n"]
