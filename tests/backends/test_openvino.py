"""OpenVINO: fp32 on the CPU, outputs by the file's names, copied, dynamic shapes."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends.openvino import OpenVINOBackend
from nnkit.errors import BackendError
from tests.backends.conftest import require_backend


@pytest.fixture(autouse=True)
def _openvino_runs_here() -> None:
    require_backend("openvino")


def test_compiled_for_latency_in_fp32_with_the_threads_asked(add_model):
    with OpenVINOBackend(add_model, threads=1) as backend:
        compiled = backend.compiled
        assert str(compiled.get_property("PERFORMANCE_HINT")) in (
            "LATENCY",
            "PerformanceMode.LATENCY",
        )
        assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in (
            "f32",
            "<Type: 'float32'>",
        )
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def test_lstm_outputs_keep_their_onnx_names_at_new_shapes(zoo_file):
    x = np.random.default_rng(0).standard_normal((3, 5, 10), dtype=np.float32)
    with OpenVINOBackend(zoo_file("lstm", "torchscript")) as backend:
        out = backend.run({"x": x})
    assert {k: v.shape for k, v in out.items()} == {
        "output": (3, 5, 20),
        "h_n": (2, 3, 20),
        "c_n": (2, 3, 20),
    }


def test_results_are_copies_not_views_of_the_next_run(add_model):
    ones = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32)}
    with OpenVINOBackend(add_model) as backend:
        first = backend.run(ones)["sum"]
        backend.run({k: v * 10 for k, v in ones.items()})
    np.testing.assert_array_equal(first, np.full((2, 3), 2, np.float32))


def test_load_error_keeps_openvino_s_reason_not_its_source_location(zoo_file, tmp_path):
    from tests._faults import unknown_op

    path = unknown_op(zoo_file("linear", "dynamo"), tmp_path / "unknown.onnx")
    with pytest.raises(BackendError) as info:
        OpenVINOBackend(path).load()
    assert "No conversion rule found for operations: nnkit.test.unknown.Gemm" in info.value.message
    assert "core.cpp" not in info.value.message
