"""The backend contract, on every ONNX backend this machine runs: the same behaviour from each."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends import available, backend_class, probe
from nnkit.errors import BackendError, InputError, ModelFileError


def _pair(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.standard_normal((n, 3), dtype=np.float32),
        "b": rng.standard_normal((n, 3), dtype=np.float32),
    }


def test_probe_gives_a_version(backend_name):
    version = backend_class(backend_name).probe()
    assert isinstance(version, str) and version


def test_two_inputs_at_two_sizes_of_a_symbolic_dim(backend_name, add_model):
    with backend_class(backend_name)(add_model) as backend:
        assert [(i.name, i.dims, i.dtype) for i in backend.inputs] == [
            ("a", ("n", 3), "float32"),
            ("b", ("n", 3), "float32"),
        ]
        for n in (2, 5, 2):
            feeds = _pair(n, seed=n)
            out = backend.run(feeds)
            assert list(out) == ["sum"]
            np.testing.assert_allclose(out["sum"], feeds["a"] + feeds["b"], rtol=1e-6)


def test_multi_output_named_and_ordered_as_declared(backend_name, multi_model):
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    with backend_class(backend_name)(multi_model) as backend:
        out = backend.run({"x": x})
    assert list(out) == ["neg", "relu", "sig"]
    assert all(isinstance(v, np.ndarray) for v in out.values())
    np.testing.assert_allclose(out["neg"], -x)
    np.testing.assert_allclose(out["relu"], np.maximum(x, 0))
    np.testing.assert_allclose(out["sig"], 1 / (1 + np.exp(-x)), rtol=1e-5)


BAD_FEEDS = {
    "wrong name": ({"a": (2, 3), "c": (2, 3)}, "float32", ["missing 'b'", "unexpected 'c'"]),
    "missing input": ({"a": (2, 3)}, "float32", ["missing 'b'"]),
    "fixed dim": ({"a": (2, 4), "b": (2, 4)}, "float32", ["dim 1 is 4, must be 3"]),
    "rank": ({"a": (2, 3, 1), "b": (2, 3)}, "float32", ["rank 3 != 2", "expected [n, 3]"]),
    "dtype": ({"a": (2, 3), "b": (2, 3)}, "float64", ["dtype float64 != float32"]),
    "symbol clash": ({"a": (2, 3), "b": (4, 3)}, "float32", ["('n') is 4", "'a' gives 'n' = 2"]),
}


@pytest.mark.parametrize("case", list(BAD_FEEDS))
def test_bad_feeds_are_refused_before_the_runtime_sees_them(
    backend_name, add_model, monkeypatch, case
):
    shapes, dtype, needles = BAD_FEEDS[case]
    feeds = {k: np.zeros(s, dtype=dtype) for k, s in shapes.items()}
    with backend_class(backend_name)(add_model) as backend:

        def runtime_reached(_feeds):
            raise AssertionError("the runtime was given feeds that do not fit")

        monkeypatch.setattr(backend, "prepare_impl", runtime_reached)
        monkeypatch.setattr(backend, "run_prepared", runtime_reached)
        for call in (backend.run, backend.prepare):
            with pytest.raises(InputError) as info:
                call(feeds)
            for needle in needles:
                assert needle in info.value.message


def test_close_then_load_again(backend_name, add_model):
    backend = backend_class(backend_name)(add_model)
    with pytest.raises(RuntimeError, match="not loaded"):
        backend.run(_pair(2))
    backend.load()
    first = backend.run(_pair(2))["sum"]
    backend.close()
    with pytest.raises(RuntimeError, match="not loaded"):
        backend.run(_pair(2))
    backend.close()  # closing twice is harmless
    backend.load()
    np.testing.assert_array_equal(backend.run(_pair(2))["sum"], first)
    backend.close()


def test_prepared_runs_give_what_run_gives(backend_name, add_model):
    feeds = _pair(3)
    with backend_class(backend_name)(add_model, threads=1) as backend:
        expected = backend.run(feeds)["sum"]
        prepared = backend.prepare(feeds)
        for _ in range(2):
            # cuda and tensorrt keep outputs on the device: fetch brings them back
            got = backend.fetch(backend.run_prepared(prepared))
            assert list(got) == ["sum"]
            np.testing.assert_array_equal(got["sum"], expected)


def test_missing_file_is_a_model_file_error(backend_name, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        backend_class(backend_name)(tmp_path / "nope.onnx").load()


def test_a_model_the_runtime_cannot_take_is_one_clean_backend_error(backend_name, unknown_op_model):
    backend = backend_class(backend_name)(unknown_op_model)
    with pytest.raises(BackendError) as info:
        backend.load()
        backend.run({"x": np.zeros(2, np.float32)})
    message = info.value.format_message()
    assert message.startswith(f"{backend_name}: cannot ")
    assert "\n" not in message and "backtrace" not in message.lower()
    assert info.value.backend == backend_name


def test_available_gives_none_or_a_reason_and_is_cached():
    names = ["cpu", "cuda", "reference"]
    result = available(names)
    assert list(result) == names
    assert result["cpu"] is None and result["reference"] is None
    assert probe("cpu") is probe("cpu")  # probed once per process
    if not probe("cuda"):
        assert result["cuda"] and result["cuda"].startswith("cuda: ")
