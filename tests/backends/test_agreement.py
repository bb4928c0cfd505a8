"""Every CPU backend agrees with onnxruntime on every zoo file, both exporters.

At sizes other than the export's example (batch 3, seq 5), so an axis frozen at export
shows. Where a runtime cannot run a file, that is listed here, and it must fail as one
clean BackendError (and this test fails once it starts working, to update the list).
"""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends import backend_class
from nnkit.errors import BackendError
from nnkit.models import ZOO
from tests.backends.conftest import require_backend

EXPORTERS = ("torchscript", "dynamo")
OTHERS = ("openvino", "tract", "reference")
#: (backend, model, exporter) that cannot run, and why (tract 0.23.9).
KNOWN_UNSUPPORTED = {
    ("tract", "lstm", "dynamo"): (
        "tract types the dynamo LSTM neither with the symbolic batch (Scan: 'Clashing "
        "resolution for expression batch=2 != 1') nor with concrete shapes "
        "(MultiBroadcastTo: 'Impossible to unify Sym(batch) with Val(2)')"
    ),
}
SIZES = {"batch": 3, "seq": 5}


def _feeds(name: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        spec.name: rng.standard_normal(spec.shape_with(SIZES), dtype=np.float32)
        for spec in ZOO[name].inputs
    }


@pytest.fixture(scope="module")
def reference_outputs(zoo_file):
    cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def get(name: str, exporter: str) -> dict[str, np.ndarray]:
        if (name, exporter) not in cache:
            with backend_class("cpu")(zoo_file(name, exporter)) as backend:
                cache[name, exporter] = backend.run(_feeds(name))
        return cache[name, exporter]

    return get


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(ZOO))
@pytest.mark.parametrize("backend_name", OTHERS)
def test_backend_agrees_with_onnxruntime(backend_name, name, exporter, zoo_file, reference_outputs):
    require_backend(backend_name)
    entry = ZOO[name]
    path = zoo_file(name, exporter)
    with backend_class(backend_name)(path) as backend:
        if (backend_name, name, exporter) in KNOWN_UNSUPPORTED:
            with pytest.raises(BackendError) as info:
                backend.run(_feeds(name))
            assert info.value.format_message().startswith(f"{backend_name}: cannot ")
            return
        got = backend.run(_feeds(name))
    expected = reference_outputs(name, exporter)
    assert list(got) == list(entry.outputs) == list(expected)
    for out in entry.outputs:
        assert got[out].shape == expected[out].shape, out
        np.testing.assert_allclose(got[out], expected[out], rtol=entry.rtol, atol=entry.atol)
