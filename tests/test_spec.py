"""The name:dims[:dtype] syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnkit.errors import SpecError
from nnkit.spec import DTYPES, Dim, TensorSpec, parse_shape_override, parse_spec


def test_parses_dynamic_and_fixed_dims_with_dtype():
    spec = parse_spec("x:batch=2x3x32x32:float16")
    assert spec == TensorSpec("x", (Dim("batch", 2), 3, 32, 32), "float16")
    assert spec.example_shape == (2, 3, 32, 32)
    assert spec.dynamic_axes == {0: "batch"}
    assert spec.shape_with({"batch": 5}) == (5, 3, 32, 32)


def test_dtype_defaults_to_float32_and_scalar_is_rank_0():
    assert parse_spec("x:4").dtype == "float32"
    assert parse_spec("t:scalar:int64").dims == ()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("x", "expected name:dims[:dtype]"),
        (":3", "expected name:dims[:dtype]"),
        ("x:3:float99", "valid dtypes are"),
        ("x:3x:float32", "bad dimension ''"),
        ("x:0x3", "positive size"),
        ("x:b-1=2x3", "label is a Python identifier"),
        ("x:batch=1x3", "at least 2"),
        ("x:n=2xn=3", "one dimension"),
        ("x:3:float32:extra", "expected name:dims[:dtype]"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, needle):
    with pytest.raises(SpecError, match=None) as info:
        parse_spec(text)
    assert needle in info.value.message
    assert text in info.value.message


def test_shape_override():
    assert parse_shape_override("x:4x3") == ("x", (4, 3))
    with pytest.raises(SpecError, match="expected name:dims"):
        parse_shape_override("x")
    with pytest.raises(SpecError, match="sizes joined by x"):
        parse_shape_override("x:batch=2")


dims = st.lists(
    st.one_of(
        st.integers(1, 4096),
        st.builds(
            Dim,
            st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: "x" not in s),
            st.integers(2, 64),
        ),
    ),
    min_size=1,
    max_size=5,
).filter(
    lambda ds: (
        len({d.label for d in ds if isinstance(d, Dim)}) == sum(isinstance(d, Dim) for d in ds)
    )
)


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True),
    dims=dims,
    dtype=st.sampled_from(DTYPES),
)
def test_str_round_trips(name, dims, dtype):
    spec = TensorSpec(name, tuple(dims), dtype)
    assert parse_spec(str(spec)) == spec
