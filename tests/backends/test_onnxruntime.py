"""onnxruntime: the cpu provider's session, and cuda/tensorrt failing for real where they cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends import probe
from nnkit.backends.onnxruntime import (
    CPUBackend,
    CUDABackend,
    TensorRTBackend,
    default_trt_cache,
    fallback_reason,
    ort_distribution,
)
from nnkit.errors import BackendUnavailableError
from tests.backends.conftest import require_backend

GPU_BACKENDS = [CUDABackend, TensorRTBackend]


def test_cpu_session_gets_only_the_cpu_provider_all_optimizations_and_threads(add_model):
    import onnxruntime as ort

    with CPUBackend(add_model, threads=1) as backend:
        assert backend.session.get_providers() == ["CPUExecutionProvider"]
        options = backend.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert backend.session is None


def test_distribution_is_read_from_metadata():
    assert ort_distribution() in ("onnxruntime-gpu", "onnxruntime")


@pytest.mark.parametrize("cls", GPU_BACKENDS, ids=lambda c: c.name)
def test_gpu_provider_that_cannot_load_is_refused_never_replaced(cls, add_model, tmp_path):
    if probe(cls.name):
        pytest.skip(f"{cls.name} runs here: its failure path needs a machine without it")
    kwargs = {"cache_dir": tmp_path / "trt"} if cls is TensorRTBackend else {}
    backend = cls(add_model, **kwargs)
    with pytest.raises(BackendUnavailableError) as info:
        backend.load()
    message = info.value.format_message()
    assert message.startswith(f"{cls.name}: {cls.provider} did not load: ")
    # the reason names what is missing: a shared library, or the provider in this build
    assert ".so" in message or "has no" in message
    assert "GPU" in message
    assert "nnkit never does" in message or "has no" in message
    assert "\n" not in message
    assert backend.session is None
    assert not (tmp_path / "trt").exists()  # no empty engine cache left behind


def test_fallback_reason_names_the_library_from_onnxruntimes_log():
    log = (
        "[E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] ... Failed to load "
        "library /x/capi/libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot "
        "open shared object file: No such file or directory\n"
        "[W:onnxruntime:Default] Failed to create CUDAExecutionProvider. Require cuDNN 9.* and "
        "CUDA 12.*. Please install all dependencies\n"
    )
    reason = fallback_reason(
        log,
        ["CPUExecutionProvider"],
        backend="cuda",
        provider=CUDABackend.provider,
        library=CUDABackend.provider_library,
    )
    assert reason.startswith("cuda: CUDAExecutionProvider did not load: libcudnn.so.9 not found")
    assert "requires cuDNN 9.* and CUDA 12.*" in reason
    assert reason.endswith("(onnxruntime fell back to CPU; nnkit never does)")


def test_trt_cache_defaults_under_the_user_cache(monkeypatch, tmp_path, add_model):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_trt_cache() == tmp_path / "nnkit" / "trt"
    backend = TensorRTBackend(add_model, cache_dir=tmp_path / "engines")
    options = dict(backend.provider_list()[0][1])
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert [p if isinstance(p, str) else p[0] for p in backend.provider_list()] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("cls", GPU_BACKENDS, ids=lambda c: c.name)
def test_gpu_runs_on_the_device_with_iobinding(cls, add_model, tmp_path):
    require_backend(cls.name)
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((4, 3), dtype=np.float32) for k in ("a", "b")}
    kwargs = {"cache_dir": tmp_path / "trt"} if cls is TensorRTBackend else {}
    with cls(add_model, **kwargs) as backend:
        assert backend.session.get_providers()[0] == cls.provider
        np.testing.assert_allclose(backend.run(feeds)["sum"], feeds["a"] + feeds["b"], rtol=1e-6)
        prepared = backend.prepare(feeds)
        out = backend.run_prepared(prepared)["sum"]
        assert out.device_name().lower() == "cuda"  # the output stayed on the device
        np.testing.assert_allclose(out.numpy(), feeds["a"] + feeds["b"], rtol=1e-6)
    if cls is TensorRTBackend:
        assert any((tmp_path / "trt").iterdir())  # the engine was cached
