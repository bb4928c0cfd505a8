"""Planted faults: ONNX files edited the way a broken exporter or a stale artifact would be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _edit(src: Path, dst: Path, change) -> Path:
    proto = onnx.load(str(src))
    change(proto)
    onnx.save(proto, str(dst))
    return dst


def nudge_weight(src: Path, dst: Path, *, delta: float = 0.05) -> Path:
    """Add ``delta`` to one element of the largest float initializer (a weight)."""

    def change(proto: onnx.ModelProto) -> None:
        floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
        weight = max(floats, key=lambda t: int(np.prod(t.dims)))
        array = numpy_helper.to_array(weight).copy()
        array.flat[0] += np.float32(delta)
        weight.CopyFrom(numpy_helper.from_array(array, weight.name))

    return _edit(src, dst, change)


def negate_before(src: Path, dst: Path, *, op_type: str) -> Path:
    """Feed the first ``op_type`` node the negation of its input (moves a Log's NaNs)."""

    def change(proto: onnx.ModelProto) -> None:
        index, node = next((i, n) for i, n in enumerate(proto.graph.node) if n.op_type == op_type)
        negated = f"{node.input[0]}_negated"
        proto.graph.node.insert(index, helper.make_node("Neg", [node.input[0]], [negated]))
        node.input[0] = negated

    return _edit(src, dst, change)


def unknown_op(src: Path, dst: Path) -> Path:
    """Move every node into a domain no runtime implements: a file nothing can load."""

    def change(proto: onnx.ModelProto) -> None:
        for node in proto.graph.node:
            node.domain = "nnkit.test.unknown"
        proto.opset_import.append(helper.make_opsetid("nnkit.test.unknown", 1))

    return _edit(src, dst, change)


def fix_output_dim(src: Path, dst: Path, *, output: str, axis: int, size: int) -> Path:
    """Declare one output dim fixed, as the dynamo exporter does to an LSTM's sequence axis."""

    def change(proto: onnx.ModelProto) -> None:
        out = next(o for o in proto.graph.output if o.name == output)
        out.type.tensor_type.shape.dim[axis].dim_value = size

    return _edit(src, dst, change)


def external_data_model(dst: Path, *, location: str) -> Path:
    """A valid MatMul model whose weight lives in the external data file ``location``."""
    weight = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, str(dst), save_as_external_data=True, location=location, size_threshold=0)
    return dst


def _after_outputs(proto: onnx.ModelProto, node_for) -> None:
    """Put ``node_for(raw_name, output_name)``'s nodes between each output and its producer."""
    for out in proto.graph.output:
        raw = f"{out.name}_before_fault"
        for node in proto.graph.node:
            node.output[:] = [raw if o == out.name else o for o in node.output]
            node.input[:] = [raw if i == out.name else i for i in node.input]
        proto.graph.node.extend(node_for(raw, out.name))


def scale_outputs(src: Path, dst: Path, *, factor: float) -> Path:
    """Multiply every output by ``factor``: 0 gives a file whose outputs are all zeros."""

    def change(proto: onnx.ModelProto) -> None:
        def nodes(raw: str, name: str) -> list[onnx.NodeProto]:
            elem = next(o for o in proto.graph.output if o.name == name).type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(elem.elem_type)
            k = helper.make_node(
                "Constant",
                [],
                [f"{name}_factor"],
                value=numpy_helper.from_array(np.array(factor, dtype=dtype)),
            )
            return [k, helper.make_node("Mul", [raw, f"{name}_factor"], [name])]

        _after_outputs(proto, nodes)

    return _edit(src, dst, change)


def reverse_last_axis(src: Path, dst: Path) -> Path:
    """Reverse every output along its last axis: the same values in another order."""

    def change(proto: onnx.ModelProto) -> None:
        def nodes(raw: str, name: str) -> list[onnx.NodeProto]:
            consts = {"starts": -1, "ends": -(2**63) + 1, "axes": -1, "steps": -1}
            made = [
                helper.make_node(
                    "Constant",
                    [],
                    [f"{name}_{key}"],
                    value=numpy_helper.from_array(np.array([v], np.int64)),
                )
                for key, v in consts.items()
            ]
            inputs = [raw, *(f"{name}_{key}" for key in consts)]
            return [*made, helper.make_node("Slice", inputs, [name])]

        _after_outputs(proto, nodes)

    return _edit(src, dst, change)


#: A model whose outputs are about 1e-9, as random-init mobilenet_v3_small's logits are.
TINY_MODEL = """\
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)
        with torch.no_grad():
            self.b.weight.mul_(1e-9)
            self.b.bias.mul_(1e-9)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
"""
#: The input spec of :data:`TINY_MODEL`.
TINY_INPUT = "x:batch=2x8"


def scale_initializer(src: Path, dst: Path, *, name: str, factor: float = 1.1) -> Path:
    """Scale the initializer ``name`` (one layer's weight) by ``factor``: a stale or
    wrongly converted weight in one layer of an otherwise right file."""

    def change(proto: onnx.ModelProto) -> None:
        weight = next(t for t in proto.graph.initializer if t.name == name)
        array = numpy_helper.to_array(weight) * np.float32(factor)
        weight.CopyFrom(numpy_helper.from_array(array.astype(np.float32), weight.name))

    return _edit(src, dst, change)
