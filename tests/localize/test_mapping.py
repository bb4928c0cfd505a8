"""ONNX nodes to PyTorch modules, on real exports of the zoo's CombinedNN and LSTM."""

from __future__ import annotations

import onnx
import pytest

from nnkit.localize.mapping import enclosing, key_module, module_keys, node_scopes, within

COMBINED = ["", "conv1", "pool", "fc1", "fc2", "fc3", "relu"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_each_layer_owns_its_node_and_its_output(zoo_file, exporter: str) -> None:
    model = onnx.load(str(zoo_file("combinednn", exporter)))
    scopes = node_scopes(model, COMBINED)
    assert scopes.source == exporter
    gemms = [scopes.modules[i] for i, n in enumerate(model.graph.node) if n.op_type == "Gemm"]
    assert gemms == ["fc1", "fc2", "fc3"]
    # relu is called three times: one scope, three outputs, each read outside it
    assert len(scopes.outputs("relu")) == 3
    (fc2_out,) = scopes.outputs("fc2")
    assert model.graph.node[scopes.nodes("fc2")[0]].output[0] == fc2_out
    # fc1 reads the flattened pool output, made by the model's own code (a view)
    (fc1_in,) = scopes.inputs("fc1")
    producer = next(n for n in model.graph.node if fc1_in in n.output)
    assert producer.op_type == "Reshape"
    assert scopes.modules[list(model.graph.node).index(producer)] == ""
    # the model's outputs are the root's; weights are no module's inputs
    assert scopes.outputs("") == ["logits"]
    assert scopes.inputs("") == ["x"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_an_lstm_owns_its_three_results(zoo_file, exporter: str) -> None:
    model = onnx.load(str(zoo_file("lstm", exporter)))
    scopes = node_scopes(model, ["", "rnn"])
    assert set(scopes.outputs("rnn")) >= {"output", "h_n", "c_n"}
    lstm = [i for i, n in enumerate(model.graph.node) if n.op_type == "LSTM"]
    assert {scopes.modules[i] for i in lstm} == {"rnn"}


def test_the_cut_stops_at_known_values(zoo_file) -> None:
    model = onnx.load(str(zoo_file("combinednn", "dynamo")))
    scopes = node_scopes(model, COMBINED)
    (fc2_in,) = scopes.inputs("fc2")
    (fc2_out,) = scopes.outputs("fc2")
    nodes, inputs = scopes.cut(fc2_out, {fc2_in})
    assert [model.graph.node[i].op_type for i in nodes] == ["Gemm"]
    assert inputs == [fc2_in]
    # from the graph input, the cut is everything up to fc2
    nodes, inputs = scopes.cut(fc2_out, {"x"})
    assert len(nodes) == 7 and inputs == ["x"]


def test_a_file_without_scopes_is_all_the_models(zoo_file) -> None:
    model = onnx.load(str(zoo_file("combinednn", "dynamo")))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.name = ""
    scopes = node_scopes(model, COMBINED)
    assert scopes.source == "none"
    assert set(scopes.modules) == {""}


def test_names() -> None:
    assert within("layer1.0.conv1", "layer1.0") and within("fc1", "")
    assert not within("layer1.10", "layer1.1")
    assert enclosing(["layer1.0.conv1", "layer1.0.bn1"]) == "layer1.0"
    assert enclosing(["layer1.0.conv1", "fc"]) == ""
    assert key_module("layer1.0#2(in)[1]") == "layer1.0"
    assert module_keys(["relu", "fc1(in)[0]", "relu#2", "rnn[1]"]) == {
        "relu": ["relu", "relu#2"],
        "fc1": ["fc1(in)[0]"],
        "rnn": ["rnn[1]"],
    }
