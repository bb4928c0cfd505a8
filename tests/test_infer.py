"""Feeds for a model's declared inputs, output statistics, the quick timer."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends.base import TensorInfo
from nnkit.errors import SpecError
from nnkit.infer import OutputStats, random_feeds, run_file

DECLARED = (
    TensorInfo("x", ("batch", "seq", 10), "float32"),
    TensorInfo("mask", ("batch", None), "bool"),
    TensorInfo("ids", ("batch",), "int64"),
)


def test_random_feeds_are_seeded_and_typed():
    a = random_feeds(DECLARED, seed=5)
    b = random_feeds(DECLARED, seed=5)
    assert {k: (v.shape, str(v.dtype)) for k, v in a.items()} == {
        "x": ((1, 1, 10), "float32"),
        "mask": ((1, 1), "bool"),
        "ids": ((1,), "int64"),
    }
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], random_feeds(DECLARED, seed=6)["x"])


def test_output_stats_count_nan_and_inf_and_skip_them():
    stats = OutputStats.of("y", np.array([1.0, np.nan, np.inf, -1.0, 3.0], np.float32))
    assert (stats.min, stats.max, stats.mean) == (-1.0, 3.0, 1.0)
    assert (stats.nan_count, stats.inf_count) == (1, 1)
    empty = OutputStats.of("e", np.array([np.nan]))
    assert empty.min is None and empty.mean is None and empty.nan_count == 1


def test_run_file_times_when_asked(zoo_file):
    result = run_file(zoo_file("relu", "torchscript"), "reference", iterations=3, warmup=0)
    assert result.timing is not None and result.timing.iterations == 3
    assert result.input_source == "random" and list(result.outputs) == ["y"]
    with pytest.raises(SpecError, match="nnkit parity"):
        run_file(zoo_file("relu", "torchscript"), "torch")
