"""Feeds for a model's declared inputs, output statistics, the quick timer."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.backends.base import TensorInfo
from nnkit.errors import SpecError
from nnkit.infer import OutputStats, random_feeds, resolve_shapes, run_file

DECLARED = (
    TensorInfo("x", ("batch", "seq", 10), "float32"),
    TensorInfo("mask", ("batch", None), "bool"),
    TensorInfo("ids", ("batch",), "int64"),
)


def test_symbolic_and_unknown_dims_default_to_1_and_symbols_follow_overrides():
    assert resolve_shapes(DECLARED) == {"x": (1, 1, 10), "mask": (1, 1), "ids": (1,)}
    assert resolve_shapes(DECLARED, {"x": (4, 6, 10)}) == {
        "x": (4, 6, 10),
        "mask": (4, 1),
        "ids": (4,),
    }


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


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        ({"z": (1,)}, "'z', which is not an input"),
        ({"x": (1, 1, 9)}, "dim 2 is fixed at 10"),
        ({"x": (1, 1)}, "rank 2 != 3"),
    ],
)
def test_overrides_that_do_not_fit(shapes, match):
    with pytest.raises(SpecError, match=match):
        resolve_shapes(DECLARED, shapes)


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
