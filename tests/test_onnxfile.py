"""Graph edits (nnkit.onnxfile) on real zoo exports, each checked by the ONNX checker and
by running the edited model on onnxruntime beside the original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nnkit.onnxfile import (
    STACK_TRACE_KEY,
    GraphEditError,
    add_outputs,
    extract_subgraph,
    graphs,
    load_model_file,
    metadata,
    set_metadata,
    strip_stack_traces,
    strip_value_info,
)

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` on onnxruntime's CPU provider: output name -> array."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def checked(model: onnx.ModelProto) -> onnx.ModelProto:
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def combinednn(zoo_file) -> onnx.ModelProto:
    """The dynamo CombinedNN export: conv2d -> relu -> max_pool2d -> view -> ... -> logits."""
    return load_model_file(zoo_file("combinednn"))


# -- strip hints -------------------------------------------------------------------------------


def test_stripping_the_shape_hints_changes_no_value(combinednn):
    stripped = onnx.ModelProto()
    stripped.CopyFrom(combinednn)
    assert strip_value_info(stripped) == len(combinednn.graph.value_info) > 0
    assert not any(g.value_info for g in graphs(stripped.graph))
    assert [o.name for o in checked(stripped).graph.output] == ["logits"]
    np.testing.assert_array_equal(
        run(stripped, {"x": X})["logits"], run(combinednn, {"x": X})["logits"]
    )
    assert strip_value_info(stripped) == 0


def test_without_the_hints_the_onnxruntime_quantizer_takes_the_dynamo_export(combinednn, tmp_path):
    # DESIGN.md: quantize_dynamic refuses this export while its hints disagree with
    # shape inference; stripped, it quantizes (the rewrites will rely on this).
    from onnxruntime.quantization import quantize_dynamic

    stripped = onnx.ModelProto()
    stripped.CopyFrom(combinednn)
    strip_value_info(stripped)
    onnx.save(stripped, str(tmp_path / "f32.onnx"))
    quantize_dynamic(str(tmp_path / "f32.onnx"), str(tmp_path / "int8.onnx"))
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    assert any(n.op_type.startswith(("MatMulInteger", "DynamicQuantize")) for n in int8.graph.node)
    assert run(int8, {"x": X})["logits"].shape == (2, 10)


# -- stack traces and metadata -----------------------------------------------------------------


def test_stack_traces_go_and_the_module_scopes_stay(tmp_path):
    from nnkit.export import export_model
    from nnkit.resolve import resolve_model

    path = tmp_path / "traced.onnx"
    export_model(resolve_model("linear"), path, keep_stack_traces=True)
    model = load_model_file(path)

    def keys() -> list[str]:
        return [p.key for n in model.graph.node for p in n.metadata_props]

    traces = keys().count(STACK_TRACE_KEY)
    assert traces > 0 and "pkg.torch.onnx.name_scopes" in keys()
    assert strip_stack_traces(model) == traces
    assert STACK_TRACE_KEY not in keys() and "pkg.torch.onnx.name_scopes" in keys()
    assert strip_stack_traces(checked(model)) == 0


def test_metadata_replaces_a_prefix_and_keeps_the_rest_in_order(combinednn):
    model = onnx.ModelProto()
    model.CopyFrom(combinednn)
    before = metadata(model)
    assert before["nnkit.model"] == "combinednn"
    set_metadata(model, {"other": "1"})
    set_metadata(model, {"nnkit.model": "renamed"}, replace_prefix="nnkit.")
    after = metadata(checked(model))
    assert after == {"other": "1", "nnkit.model": "renamed"}
    set_metadata(model, {"other": "2"})
    assert list(metadata(model).items()) == [("nnkit.model", "renamed"), ("other", "2")]


# -- add outputs --------------------------------------------------------------------------------


def test_intermediate_values_become_outputs_with_what_pytorch_computes(combinednn):
    import torch

    from nnkit.resolve import resolve_model

    exposed = add_outputs(combinednn, ["conv2d", "relu_1", "logits"])
    assert [o.name for o in combinednn.graph.output] == ["logits"]  # the original is untouched
    assert [o.name for o in checked(exposed).graph.output] == ["logits", "conv2d", "relu_1"]
    got = run(exposed, {"x": X})
    np.testing.assert_array_equal(got["logits"], run(combinednn, {"x": X})["logits"])
    net = resolve_model("combinednn").module
    with torch.inference_mode():
        conv = net.conv1(torch.from_numpy(X)).numpy()
    assert got["conv2d"].shape == (2, 16, 32, 32) and got["relu_1"].shape == (2, 120)
    np.testing.assert_allclose(got["conv2d"], conv, rtol=1e-4, atol=1e-5)


def test_without_hints_the_types_of_new_outputs_are_inferred(zoo_file):
    model = load_model_file(zoo_file("combinednn", "torchscript"))
    strip_value_info(model)
    exposed = checked(add_outputs(model, ["/pool/MaxPool_output_0", "fc1.weight", "x"]))
    shapes = {k: v.shape for k, v in run(exposed, {"x": X}).items()}
    assert shapes == {
        "logits": (2, 10),
        "/pool/MaxPool_output_0": (2, 16, 16, 16),
        "fc1.weight": (120, 4096),
        "x": (2, 3, 32, 32),
    }


def test_a_name_that_is_no_value_is_refused_with_the_values_there_are(combinednn):
    with pytest.raises(GraphEditError, match=r"'conv' is no value of the main graph; its values"):
        add_outputs(combinednn, ["conv"])


# -- extract a subgraph -------------------------------------------------------------------------


def test_an_extract_computes_what_the_whole_model_computes(combinednn):
    middle = run(add_outputs(combinednn, ["relu"]), {"x": X})["relu"]
    tail = checked(extract_subgraph(combinednn, ["relu"], ["logits"]))
    assert [n.op_type for n in tail.graph.node] == [
        "MaxPool",
        "Reshape",
        "Gemm",
        "Relu",
        "Gemm",
        "Relu",
        "Gemm",
    ]
    assert {t.name for t in tail.graph.initializer} >= {"fc1.weight", "fc3.bias"}
    assert "conv1.weight" not in {t.name for t in tail.graph.initializer}
    assert tail.ir_version == combinednn.ir_version and not tail.metadata_props
    np.testing.assert_array_equal(
        run(tail, {"relu": middle})["logits"], run(combinednn, {"x": X})["logits"]
    )
    head = checked(extract_subgraph(combinednn, ["x"], ["relu"]))
    np.testing.assert_array_equal(run(head, {"x": X})["relu"], middle)


def test_an_extract_that_needs_another_input_names_it(combinednn):
    with pytest.raises(GraphEditError, match=r"also need the graph input 'x': add it"):
        extract_subgraph(combinednn, [], ["relu"])
    with pytest.raises(GraphEditError, match="at least one output"):
        extract_subgraph(combinednn, ["x"], [])
    with pytest.raises(GraphEditError, match="'relu' twice"):
        extract_subgraph(combinednn, ["x"], ["relu", "relu"])
    with pytest.raises(GraphEditError, match="'nope' is no value"):
        extract_subgraph(combinednn, ["nope"], ["logits"])


def test_a_cut_through_one_nodes_outputs_is_refused(zoo_file):
    lstm = load_model_file(zoo_file("lstm"))
    node = next(n for n in lstm.graph.node if n.op_type == "LSTM")
    y, y_h = node.output[0], node.output[1]
    # The LSTM node computes y_h too: it cannot be an input while the node stays.
    with pytest.raises(GraphEditError, match="is not a valid model"):
        extract_subgraph(lstm, [y_h, *dict.fromkeys(i for i in node.input if i)], [y])


def test_an_extract_keeps_what_a_branch_reads_from_outside(tmp_path: Path):
    # y = If(c) then x * w else x + w; the branches read x and w from the main graph.
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["x", "w"], [f"{op}_out"])],
            op,
            [],
            [helper.make_tensor_value_info(f"{op}_out", TensorProto.FLOAT, [2])],
        )

    graph = helper.make_graph(
        [
            helper.make_node("Neg", ["a"], ["x"]),
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branch("Mul"), else_branch=branch("Add")
            ),
        ],
        "branches",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2], [2.0, 3.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    part = checked(extract_subgraph(model, ["x", "c"], ["y"]))
    assert [n.op_type for n in part.graph.node] == ["If"]
    assert [t.name for t in part.graph.initializer] == ["w"]
    x = np.array([1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(run(part, {"x": x, "c": np.array(True)})["y"], x * [2.0, 3.0])
    with pytest.raises(GraphEditError, match="also need the graph input 'a'"):
        extract_subgraph(model, ["c"], ["y"])
