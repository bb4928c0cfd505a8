"""The ONNX reference evaluator: exact semantics, outputs by name."""

from __future__ import annotations

import numpy as np

from nnkit.backends.reference import ReferenceBackend


def test_runs_a_zoo_file_and_names_outputs_as_declared(zoo_file):
    x = np.random.default_rng(0).standard_normal((2, 7, 10), dtype=np.float32)
    with ReferenceBackend(zoo_file("gru", "torchscript"), threads=4) as backend:
        out = backend.run({"x": x})
    assert {k: v.shape for k, v in out.items()} == {"output": (2, 7, 20), "h_n": (2, 2, 20)}
    assert all(v.dtype == np.float32 for v in out.values())
