"""Parity of bfloat16 and float16 models: compared in the model's dtype, at its tolerance."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from nnkit.compare import DEFAULT_TOLERANCES
from nnkit.parity import run_parity
from nnkit.spec import parse_spec

MODELS = """\
import torch
from torch import nn

class Half(nn.Module):
    def __init__(self, dtype=torch.bfloat16):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4).to(dtype)

    def forward(self, x):
        return torch.tanh(self.fc(x))

def fp16():
    return Half(torch.float16)
"""


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("half") / "half.py"
    path.write_text(MODELS)
    return path


@pytest.mark.parametrize(("factory", "dtype"), [("Half", "bfloat16"), ("fp16", "float16")])
def test_a_low_precision_model_passes_in_its_own_dtype(half, tmp_path, factory, dtype):
    artifacts = tmp_path / "onnx"
    report = run_parity(
        [f"{half}:{factory}"],
        inputs=[parse_spec(f"x:batch=2x8:{dtype}")],
        exporters=["dynamo"],
        backends=["openvino", "reference"],
        artifacts=artifacts,
    )
    assert report, [r.message for r in report.results]
    for result in report.results:
        [out] = result.outputs
        assert (out.ref_dtype, out.got_dtype) == (dtype, dtype)
        # The dtype's tolerance, relative to the output's scale (nnkit.compare).
        assert (out.relative_atol, out.rtol) == DEFAULT_TOLERANCES[dtype]
        assert out.passed and out.error_ratio is not None and out.error_ratio <= 1
    if dtype != "bfloat16":
        return
    # A stale bfloat16 file (one weight moved by many bfloat16 steps) fails, in bfloat16.
    [exported] = artifacts.glob("*.onnx")
    proto = onnx.load(str(exported))
    weight = max(
        (t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.BFLOAT16),
        key=lambda t: int(np.prod(t.dims)),
    )
    array = numpy_helper.to_array(weight).astype(np.float32)
    array.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(array.astype(ml_dtypes.bfloat16), weight.name))
    stale = tmp_path / "stale.onnx"
    onnx.save(proto, str(stale))
    report = run_parity(
        [f"{half}:{factory}"],
        inputs=[parse_spec("x:batch=2x8:bfloat16")],
        onnx=stale,
        backends=["reference"],
    )
    assert not report and {r.status for r in report.results} == {"mismatch"}
    assert all(r.outputs[0].ref_dtype == "bfloat16" for r in report.results)
