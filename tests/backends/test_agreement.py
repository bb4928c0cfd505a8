"""Every CPU backend agrees with onnxruntime on every zoo file, both exporters, and
its ``run`` gives exactly what its timed path (``prepare``, ``run_prepared``, ``fetch``) gives.

At sizes other than the export's example (batch 3, seq 5), so an axis frozen at export
shows. Every runtime runs every zoo file: tract the dynamo LSTM too, since its backend
drops the file's intermediate shape hints before typing it with concrete shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends import backend_class
from nnkit.models import ZOO
from tests.backends.conftest import require_backend

EXPORTERS = ("torchscript", "dynamo")
OTHERS = ("openvino", "tract", "reference")
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
@pytest.mark.parametrize("backend_name", ("cpu", *OTHERS))
def test_backend_agrees_with_onnxruntime(backend_name, name, exporter, zoo_file, reference_outputs):
    require_backend(backend_name)
    entry = ZOO[name]
    path = zoo_file(name, exporter)
    feeds = _feeds(name)
    with backend_class(backend_name)(path) as backend:
        got = backend.run(feeds)
        # run is the timed path: parity verifies the very model bench times
        timed = backend.fetch(backend.run_prepared(backend.prepare(feeds)))
    assert list(timed) == list(got)
    for out in got:
        np.testing.assert_array_equal(timed[out], got[out])
    expected = reference_outputs(name, exporter)
    assert list(got) == list(entry.outputs) == list(expected)
    for out in entry.outputs:
        assert got[out].shape == expected[out].shape, out
        np.testing.assert_allclose(got[out], expected[out], rtol=entry.rtol, atol=entry.atol)
