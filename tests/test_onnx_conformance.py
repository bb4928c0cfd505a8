"""ONNX's own backend node tests through ``nnkit infer`` on every CPU backend.

A vendored sample of ONNX's single-operator cases (``tests/data/onnx_node``, Apache-2.0,
see its README) covers every dtype and value kind a file can hold. Each case runs on
each backend twice: the runtime called directly, and ``nnkit infer --input ... --save``
with the outputs read back (``tests/onnx_node.py``). Wherever the runtime is right,
nnkit must be right; elsewhere it must refuse in one line (exit 2) or give the
runtime's own answer, never another wrong one, a traceback or a damaged file.
``scripts/onnx_conformance.py`` runs the full suite.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from nnkit.backends import probe
from tests.onnx_node import BACKENDS, case_folders, run_all

SAMPLE = Path(__file__).parent / "data" / "onnx_node"
CASES = [p.name for p in case_folders(SAMPLE)]
#: Cases nnkit gets right where the runtime's own Python API cannot (it refuses the
#: dtype, or gives raw or packed bits): nnkit's conversions, pinned at the runtime
#: versions of constraints.txt.
BEYOND_THE_API = {
    "cpu": (
        "test_cast_BFLOAT16_to_FLOAT",
        "test_cast_FLOAT_to_BFLOAT16",
        "test_cast_FLOAT8E5M2_to_FLOAT",
        "test_cast_FLOAT_to_FLOAT8E4M3FN",
        "test_cast_INT4_to_FLOAT",
        "test_cast_FLOAT_to_INT4",
        "test_cast_FLOAT_to_UINT2",
        "test_cast_e8m0_FLOAT_to_FLOAT8E8M0",
    ),
    "openvino": (
        "test_cast_FLOAT_to_BFLOAT16",
        "test_cast_FLOAT8E5M2_to_FLOAT",
        "test_cast_FLOAT4E2M1_to_FLOAT",
        "test_cast_INT4_to_FLOAT",
        "test_cast_FLOAT_to_INT4",
        "test_dequantizelinear_uint4",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_nnkit_is_right_wherever_the_runtime_is(backend):
    """One test per backend (each case runs in a worker process; xdist spreads backends)."""
    if not probe(backend):
        pytest.skip(probe(backend).reason)
    records = run_all(case_folders(SAMPLE), [backend], jobs=1, timeout=120)
    assert len(records) == len(CASES)
    defects = [f"{r.case}: {r.defect} (runtime directly: {r.direct})" for r in records if r.defect]
    assert not defects, "\n".join(defects)
    # The sample proves something: nnkit is right on a good share of the runs, and the
    # onnx reference evaluator, which runs nearly everything, is right on nearly all.
    right = sum(r.nnkit == "right" for r in records)
    assert right >= len(records) // 5, f"nnkit right on {right}/{len(records)}"
    if backend == "reference":
        assert sum(r.direct == "right" for r in records) >= 0.9 * len(records)
    by_case = {r.case: r for r in records}
    wrong = [c for c in BEYOND_THE_API.get(backend, ()) if by_case[c].nnkit != "right"]
    assert not wrong, [(c, by_case[c].nnkit, by_case[c].nnkit_why) for c in wrong]


def _types(type_proto: onnx.TypeProto, found: set[str]) -> None:
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        t = type_proto.tensor_type
        found.add(onnx.TensorProto.DataType.Name(t.elem_type))
        if t.HasField("shape") and not t.shape.dim:
            found.add("rank-0")
    elif which == "sequence_type":
        found.add("sequence")
        _types(type_proto.sequence_type.elem_type, found)
    elif which == "optional_type":
        found.add("optional")
        _types(type_proto.optional_type.elem_type, found)


def test_the_sample_covers_every_dtype_and_value_kind():
    found: set[str] = set()
    ops: set[str] = set()
    for folder in case_folders(SAMPLE):
        model = onnx.load(str(folder / "model.onnx"))
        for value in [*model.graph.input, *model.graph.output]:
            _types(value.type, found)
        ops |= {n.op_type for n in model.graph.node}
    wanted = {
        "BFLOAT16", "FLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2",
        "STRING", "BOOL", "INT8", "UINT64", "DOUBLE", "sequence", "optional", "rank-0",
    }  # fmt: skip
    assert wanted <= found, f"missing from the sample: {sorted(wanted - found)}"
    assert {"If", "Clip", "Range", "SplitToSequence", "Loop"} <= ops
