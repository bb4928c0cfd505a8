"""FLOPs of an ONNX graph at concrete input shapes, from the graph alone.

The inputs' symbolic dims are fixed (``batch`` = 64 ...), ONNX shape inference then
gives every tensor's shape, and the operators that do nearly all the arithmetic of a
network are counted, a multiply-add as 2 FLOPs:

- ``Conv``: ``2 * N * C_out * prod(out spatial) * (C_in / group) * prod(kernel)``
- ``ConvTranspose``: ``2 * N * C_in * prod(in spatial) * (C_out / group) * prod(kernel)``
- ``Gemm``: ``2 * M * N * K``; ``MatMul``: ``2 * prod(output shape) * K``
- ``LSTM`` / ``GRU`` / ``RNN``: ``2 * directions * seq * batch * gates * H * (I + H)``
  (4 gates for LSTM, 3 for GRU, 1 for RNN: the input and recurrent products)

Biases, activations, pooling and the elementwise gate arithmetic are not counted:
they are a few FLOPs per output value, next to the hundreds or thousands of a product.
Subgraphs (``If``/``Loop``/``Scan`` bodies) are not counted either. Only onnx is
imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

#: Operators whose FLOPs are counted.
COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN")

Shape = tuple[int, ...]
#: A shape as inference left it: None where a dim stayed unknown.
Partial = tuple[int | None, ...]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one run of a model at given input shapes.

    ``total`` sums the nodes whose shapes are known; ``unknown`` names the counted
    nodes whose shapes inference could not make concrete (then ``total`` is a lower
    bound and :attr:`complete` is false).
    """

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.unknown

    @property
    def gflop(self) -> float:
        return self.total / 1e9


def count_flops(
    model: str | Path | onnx.ModelProto, shapes: Mapping[str, Shape] | None = None
) -> FlopCount:
    """FLOPs of one run of ``model`` with its inputs at ``shapes``.

    Args:
        model: an ONNX file or a loaded model (not modified).
        shapes: input name -> concrete shape; inputs not given keep their declared
            shapes (a symbolic dim left unknown leaves dependent nodes uncounted).

    Returns:
        The count, with the nodes whose shapes stayed unknown.

    Raises:
        ModelFileError: ``model`` is a path that cannot be read.
    """
    import onnx

    from nnkit.onnxfile import load_model_file

    proto = load_model_file(model) if isinstance(model, (str, Path)) else model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    _fix_inputs(fixed.graph, dict(shapes or {}))
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # inference gave up on the whole graph: count what is declared
        inferred = fixed
    known = _shapes(inferred.graph)
    by_op: dict[str, int] = {}
    unknown: list[str] = []
    for index, node in enumerate(inferred.graph.node):
        counter = _COUNTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if counter is None:
            continue
        flops = counter(node, known)
        if flops is None:
            unknown.append(node.name or f"{node.op_type}#{index}")
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
    return FlopCount(sum(by_op.values()), by_op, tuple(unknown))


def _fix_inputs(graph: onnx.GraphProto, shapes: dict[str, Shape]) -> None:
    for value in graph.input:
        shape = shapes.get(value.name)
        if shape is None:
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in shape:
            dims.add().dim_value = int(size)


def _shapes(graph: onnx.GraphProto) -> dict[str, Partial]:
    """Tensor name -> shape (None where a dim is unknown), for every tensor of known rank."""
    out: dict[str, Partial] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        t = value.type.tensor_type
        if t.HasField("shape"):
            out[value.name] = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim
            )
    for init in graph.initializer:
        out[init.name] = tuple(int(d) for d in init.dims)
    return out


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _concrete(shape: Partial | None) -> Shape | None:
    if shape is None or any(d is None for d in shape):
        return None
    return shape  # type: ignore[return-value]


def _input(
    node: onnx.NodeProto, known: dict[str, Partial], index: int, *, partial: bool = False
) -> Any:
    """The shape of input ``index``: all dims known (else None), or as known when ``partial``."""
    if index >= len(node.input) or not node.input[index]:
        return None
    shape = known.get(node.input[index])
    return shape if partial else _concrete(shape)


def _output(node: onnx.NodeProto, known: dict[str, Partial], index: int = 0) -> Shape | None:
    if index >= len(node.output) or not node.output[index]:
        return None
    return _concrete(known.get(node.output[index]))


def _conv(node: onnx.NodeProto, known: dict[str, Partial]) -> int | None:
    w, y = _input(node, known, 1), _output(node, known)
    if w is None or y is None or len(y) < 2:
        return None
    # W: [C_out, C_in / group, k...]; each output value takes C_in/group * prod(k) MACs.
    return 2 * math.prod(y) * math.prod(w[1:])


def _conv_transpose(node: onnx.NodeProto, known: dict[str, Partial]) -> int | None:
    x, w = _input(node, known, 0), _input(node, known, 1)
    if x is None or w is None or len(x) < 2:
        return None
    # W: [C_in, C_out / group, k...]; each input value scatters into C_out/group * prod(k).
    return 2 * math.prod(x) * math.prod(w[1:])


def _gemm(node: onnx.NodeProto, known: dict[str, Partial]) -> int | None:
    a, y = _input(node, known, 0), _output(node, known)
    if a is None or y is None or len(a) != 2:
        return None
    k = a[0] if _attr(node, "transA", 0) else a[1]
    return 2 * math.prod(y) * k


def _matmul(node: onnx.NodeProto, known: dict[str, Partial]) -> int | None:
    a, y = _input(node, known, 0), _output(node, known)
    if a is None or y is None or not a:
        return None
    return 2 * max(math.prod(y), 1) * a[-1]


def _recurrent(node: onnx.NodeProto, known: dict[str, Partial]) -> int | None:
    # X's feature dim may stay unknown (after a Reshape): W gives the input size.
    x, w, r = _input(node, known, 0, partial=True), _input(node, known, 1), _input(node, known, 2)
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3 or len(r) != 3:
        return None
    layout = int(_attr(node, "layout", 0))
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    if seq is None or batch is None:
        return None
    directions, rows, inputs = w
    hidden = r[2]
    # rows = gates * hidden: per step and direction, x @ W^T and h @ R^T.
    return 2 * directions * seq * batch * rows * (inputs + hidden)


_COUNTERS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "RNN": _recurrent,
}
