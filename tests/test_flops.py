"""FLOPs from the ONNX graph (nnkit.flops), on hand-built graphs and the zoo's exports."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper, numpy_helper

from nnkit.backends._probe import IR_VERSION, OPSET
from nnkit.flops import count_flops


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def _weights(name: str, *shape: int):
    import numpy as np

    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _vi(name: str, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_grouped_conv_counts_each_output_values_macs() -> None:
    # 8 -> 12 channels in 4 groups, 3x3 kernel, stride 2 on 10x10: out 5x5.
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=4, strides=[2, 2], pads=[1] * 4)],
        [_vi("x", ["batch", 8, 10, 10])],
        [_vi("y", None)],
        [_weights("w", 12, 2, 3, 3)],
    )
    count = count_flops(model, {"x": (3, 8, 10, 10)})
    assert count.complete
    assert count.total == 2 * (3 * 12 * 5 * 5) * (2 * 3 * 3)
    assert count.by_op == {"Conv": count.total}


def test_conv_transpose() -> None:
    model = _model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        [_vi("x", [1, 4, 5, 5])],
        [_vi("y", None)],
        [_weights("w", 4, 6, 2, 2)],
    )
    assert count_flops(model).total == 2 * (4 * 5 * 5) * (6 * 2 * 2)


@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_with_a_transposed_or_not(trans_a: int) -> None:
    a_dims = [7, "m"] if trans_a else ["m", 7]
    model = _model(
        [helper.make_node("Gemm", ["a", "w"], ["y"], transA=trans_a, transB=1)],
        [_vi("a", a_dims)],
        [_vi("y", None)],
        [_weights("w", 5, 7)],
    )
    shape = (7, 9) if trans_a else (9, 7)
    assert count_flops(model, {"a": shape}).total == 2 * 9 * 5 * 7


def test_batched_matmul_broadcasts() -> None:
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [_vi("a", ["batch", 4, 6, 8]), _vi("b", [8, 3])],
        [_vi("y", None)],
    )
    assert count_flops(model, {"a": (2, 4, 6, 8)}).total == 2 * (2 * 4 * 6 * 3) * 8


@pytest.mark.parametrize(
    ("op", "gates", "layout", "directions"),
    [("LSTM", 4, 0, 1), ("LSTM", 4, 1, 2), ("GRU", 3, 0, 2), ("RNN", 1, 1, 1)],
)
def test_recurrent_layers(op: str, gates: int, layout: int, directions: int) -> None:
    hidden, features, seq, batch = 20, 10, 7, 5
    x_dims = ["batch", "seq", features] if layout else ["seq", "batch", features]
    direction = "bidirectional" if directions == 2 else "forward"
    model = _model(
        [
            helper.make_node(
                op,
                ["x", "w", "r"],
                ["y"],
                hidden_size=hidden,
                layout=layout,
                direction=direction,
            )
        ],
        [_vi("x", x_dims)],
        [_vi("y", None)],
        [
            _weights("w", directions, gates * hidden, features),
            _weights("r", directions, gates * hidden, hidden),
        ],
    )
    shape = (batch, seq, features) if layout else (seq, batch, features)
    expected = 2 * directions * seq * batch * gates * hidden * (features + hidden)
    assert count_flops(model, {"x": shape}).total == expected


def test_a_shape_left_symbolic_is_reported_unknown() -> None:
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        [_vi("a", ["batch", 8]), _vi("b", [8, 3])],
        [_vi("z", None)],
    )
    count = count_flops(model)
    assert not count.complete
    assert count.total == 0 and len(count.unknown) == 1
    assert count_flops(model, {"a": (4, 8)}).complete


def test_the_model_given_is_not_modified() -> None:
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [_vi("a", ["batch", 8]), _vi("b", [8, 3])],
        [_vi("y", None)],
    )
    before = model.SerializeToString()
    count_flops(model, {"a": (4, 8)})
    assert model.SerializeToString() == before


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize(
    ("name", "shape", "per_sample"),
    [
        # conv 3->16 3x3 on 32x32, then fc 4096->120->84->10
        (
            "combinednn",
            (3, 32, 32),
            2 * 16 * 32 * 32 * 3 * 9 + 2 * (4096 * 120 + 120 * 84 + 84 * 10),
        ),
        ("linear", (10,), 2 * 10 * 50),
        # two layers, 7 steps, 4 gates of 20: inputs 10 then 20
        ("lstm", (7, 10), 2 * 7 * 80 * (10 + 20) + 2 * 7 * 80 * (20 + 20)),
        ("gru", (7, 10), 2 * 7 * 60 * (10 + 20) + 2 * 7 * 60 * (20 + 20)),
        ("relu", (50,), 0),
    ],
)
def test_the_zoo_from_both_exporters(zoo_file, exporter, name, shape, per_sample) -> None:
    for batch in (1, 64):
        count = count_flops(zoo_file(name, exporter), {"x": (batch, *shape)})
        assert count.complete, count.unknown
        assert count.total == batch * per_sample
