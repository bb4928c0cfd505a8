"""Concrete input shapes (nnkit.shapes): ``--shape`` overrides, batch sizes, stamped sizes."""

from __future__ import annotations

import pytest

from nnkit.backends.base import TensorInfo
from nnkit.errors import SpecError
from nnkit.onnxfile import load_model_file
from nnkit.shapes import batch_shapes, resolve_shapes, stamped_sizes

DECLARED = (
    TensorInfo("x", ("batch", "seq", 10), "float32"),
    TensorInfo("mask", ("batch", None), "bool"),
    TensorInfo("ids", ("batch",), "int64"),
)


# -- --shape overrides (nnkit infer) ------------------------------------------------------


def test_symbolic_and_unknown_dims_default_to_1_and_symbols_follow_overrides():
    assert resolve_shapes(DECLARED) == {"x": (1, 1, 10), "mask": (1, 1), "ids": (1,)}
    assert resolve_shapes(DECLARED, {"x": (4, 6, 10)}) == {
        "x": (4, 6, 10),
        "mask": (4, 1),
        "ids": (4,),
    }


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


# -- batch sizes (nnkit bench) -------------------------------------------------------------


def test_batch_goes_to_the_dim_labelled_batch() -> None:
    declared = [
        TensorInfo("x", ("batch", "seq", 10), "float32"),
        TensorInfo("mask", ("seq", "batch"), "bool"),
        TensorInfo("scale", (1,), "float32"),
    ]
    shapes = batch_shapes(declared, 16, {"seq": 7, "batch": 2})
    assert shapes == {"x": (16, 7, 10), "mask": (7, 16), "scale": (1,)}


def test_batch_goes_to_a_dynamic_axis_0_without_a_label() -> None:
    declared = [TensorInfo("x", ("N", 3, None), "float32"), TensorInfo("s", (), "float32")]
    assert batch_shapes(declared, 8) == {"x": (8, 3, 1), "s": ()}


def test_a_fixed_batch_dim_that_differs_is_refused() -> None:
    declared = [TensorInfo("x", (1, 4), "float32")]
    assert batch_shapes(declared, 1) == {"x": (1, 4)}
    with pytest.raises(SpecError, match=r"cannot run at batch 8: input 'x' has a fixed batch"):
        batch_shapes(declared, 8)


def test_example_sizes_come_from_the_files_metadata(zoo_file) -> None:
    assert stamped_sizes(load_model_file(zoo_file("lstm"))) == {"batch": 2, "seq": 7}
