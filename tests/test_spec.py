"""The name:dims[:dtype] syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnkit.errors import SpecError
from nnkit.spec import (
    DTYPES,
    Dim,
    TensorSpec,
    parse_shape_override,
    parse_spec,
    split_name,
    split_specs,
)


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


# -- names holding ':' or '=' (TensorFlow's input:0) -----------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ('"input:0":batch=2x3', TensorSpec("input:0", (Dim("batch", 2), 3))),
        ('"a=b":4:int64', TensorSpec("a=b", (4,), "int64")),
        ('"my input":2', TensorSpec("my input", (2,))),
        ('"plain":2', TensorSpec("plain", (2,))),
    ],
)
def test_a_quoted_name_may_hold_colons_equals_and_spaces(text, spec):
    assert parse_spec(text) == spec
    assert parse_spec(str(spec)) == spec


def test_an_unquoted_colon_name_gets_the_quoting_hint():
    with pytest.raises(SpecError) as info:
        parse_spec("input:0:2x3")
    assert "bad dtype '2x3'" in info.value.message
    assert "goes in double quotes" in info.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [('"input:0:2x3', "no closing quote"), ('"":2', "is empty"), ('"a"b:2', "expected ':'")],
)
def test_bad_quotes_say_what_is_wrong(text, needle):
    with pytest.raises(SpecError, match=needle):
        parse_spec(text)


def test_shape_override_takes_names_with_colons_quoted_or_not():
    # Dims never hold ':', so the last one ends the name.
    assert parse_shape_override("input:0:4x3") == ("input:0", (4, 3))
    assert parse_shape_override('"input:0":4x3') == ("input:0", (4, 3))
    assert parse_shape_override('"a=b":4x3') == ("a=b", (4, 3))
    with pytest.raises(SpecError, match="goes in double quotes"):
        parse_shape_override("x:4x3:float32")


def test_split_name_and_split_specs():
    assert split_name('"a=b"=x.npy', "=", what="--input") == ("a=b", "=", "x.npy")
    assert split_name("a=dir=1/x.npy", "=", what="--input") == ("a", "=", "dir=1/x.npy")
    assert split_specs('x:2:float32 "my in:0":2x3:int64  y:3') == [
        "x:2:float32",
        '"my in:0":2x3:int64',
        "y:3",
    ]


@given(
    name=st.text(
        st.characters(codec="utf-8", exclude_characters='"', exclude_categories=("Cs", "Cc")),
        min_size=1,
        max_size=12,
    ),
    dims=dims,
    dtype=st.sampled_from(DTYPES),
)
def test_any_name_without_quotes_round_trips_through_a_stamp(name, dims, dtype):
    # The nnkit.inputs metadata is specs joined by spaces: names with spaces survive.
    specs = [TensorSpec(name, tuple(dims), dtype), TensorSpec("y", (2,), "int64")]
    stamp = " ".join(str(s) for s in specs)
    assert [parse_spec(s) for s in split_specs(stamp)] == specs
