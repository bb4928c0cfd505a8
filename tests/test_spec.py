"""The name:dims[:dtype] syntax."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnkit.errors import SpecError
from nnkit.inputs import generate
from nnkit.spec import (
    DTYPES,
    Dim,
    TensorSpec,
    ValueRange,
    ValueSet,
    concrete_shape,
    example_sizes,
    parse_shape_override,
    parse_sizes,
    parse_spec,
    split_name,
    split_specs,
    tensor_infos,
)


def test_parses_dynamic_and_fixed_dims_with_dtype():
    spec = parse_spec("x:batch=2x3x32x32:float16")
    assert spec == TensorSpec("x", (Dim("batch", 2), 3, 32, 32), "float16")
    assert spec.example_shape == (2, 3, 32, 32)
    assert spec.dynamic_axes == {0: "batch"}
    assert spec.shape_with({"batch": 5}) == (5, 3, 32, 32)


def test_one_rule_sizes_a_specs_dims_and_a_files_dims():
    specs = [parse_spec("x:batch=2xseq=7x3"), parse_spec("m:batch=2:bool")]
    assert example_sizes(specs) == {"batch": 2, "seq": 7}
    (x_info, m_info) = tensor_infos(specs)
    assert x_info.dims == ("batch", "seq", 3) and m_info.dtype == "bool"
    # A spec's dim falls back to its example; a file's symbolic or unknown dim to 1.
    assert concrete_shape(specs[0].dims, {"seq": 4}) == (2, 4, 3)
    assert concrete_shape(x_info.dims, {"seq": 4}) == (1, 4, 3)
    assert concrete_shape(("n", None, "", 5), {"n": 6}, default=2) == (6, 2, 2, 5)


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


# -- value ranges and sets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "printed"),
    [
        ("ids:batch=2xseq=16:int64[0,30522)", ValueRange(0, 30522, True, False), "[0,30522)"),
        ("m:batch=2xseq=16:int64{0,1}", ValueSet((0, 1)), "{0,1}"),
        ("x:2x3:float32[-1,1]", ValueRange(-1.0, 1.0), "[-1.0,1.0]"),
        ("x:2x3[-1, 1.5)", ValueRange(-1.0, 1.5, True, False), "[-1.0,1.5)"),
        ("x:3:float16(0,1e3]", ValueRange(0.0, 1000.0, False, True), "(0.0,1000.0]"),
        ("b:3:bool{true}", ValueSet((1,)), "{1}"),
        ("c:3:uint8(0,255]", ValueRange(0, 255, False, True), "(0,255]"),
    ],
)
def test_value_ranges_and_sets_parse_print_and_round_trip(text, values, printed):
    spec = parse_spec(text)
    assert spec.value_range == values
    assert str(spec).endswith(printed)
    assert parse_spec(str(spec)) == spec


def test_a_range_is_part_of_the_spec_s_identity():
    assert parse_spec("m:2:int64{0,1}") != parse_spec("m:2:int64")


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
    [
        ("x:3:int64[5,1]", "low > high"),
        ("x:3:int64[1,1)", "holds no int64 value"),
        ("x:3:int64(0,1)", "holds no int64 value"),
        ("x:3:float32(1,1]", "holds no float32 value"),
        ("x:3:uint8[0,256]", "outside what uint8 holds (0 .. 255)"),
        ("x:3:int8{-129}", "outside what int8 holds"),
        ("x:3:float16[0,1e6]", "outside what float16 holds"),
        ("x:3:bool[0,1]", "takes a set, not a range"),
        ("x:3:bool{2}", "outside what bool holds"),
        ("x:3:int64{}", "empty value set"),
        ("x:3:int64{1,1}", "names a value twice"),
        ("x:3:int64[0.5,2]", "whole numbers"),
        ("x:3:float32[0,inf]", "finite"),
        ("x:3:float32[a,1]", "are numbers"),
        ("x:3:int64[0,1,2]", "expected [low,high]"),
        ("x:3:int64[0,10", "bad values"),
    ],
)
def test_bad_values_say_what_is_wrong(text, needle):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert needle in info.value.message
    assert text in info.value.message


def test_generated_values_stay_in_their_range_or_set():
    specs = [
        parse_spec(t)
        for t in (
            "ids:4x500:int64[0,30522)",
            "m:4x500:int64{0,1}",
            "f:4x500:float32[-1,1)",
            "h:4x500:float16(0,0.001)",
            "b:4x500:bool{1}",
            "d:4x500:int64",
            "u:4x500:uint8(250,255]",
        )
    ]
    a = generate(specs, seed=0)
    assert a["ids"].dtype == np.int64 and a["ids"].min() >= 0 and a["ids"].max() < 30522
    assert a["ids"].max() > 20000  # the whole range is used, not 0..9
    assert set(np.unique(a["m"])) == {0, 1}
    assert a["f"].dtype == np.float32 and a["f"].min() >= -1 and a["f"].max() < 1
    assert a["h"].dtype == np.float16 and (a["h"] > 0).all() and (a["h"] < 0.001).all()
    assert a["b"].all()
    assert set(np.unique(a["d"])) == set(range(10))  # the default stays 0..9
    assert set(np.unique(a["u"])) == {251, 252, 253, 254, 255}


def test_parse_sizes_for_chosen_cases():
    assert parse_sizes("batch=1,seq=128") == {"batch": 1, "seq": 128}
    for bad in ("batch", "batch=0", "batch=1,batch=2", "1=2", "batch=x"):
        with pytest.raises(SpecError, match="bad case"):
            parse_sizes(bad)


values = st.one_of(
    st.none(),
    st.builds(
        lambda lo, width, lc, hc: ValueRange(lo, lo + width + 2, lc, hc),
        st.integers(-1000, 1000),
        st.integers(0, 1000),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda vs: ValueSet(tuple(vs)), st.lists(st.integers(-100, 100), min_size=1, unique=True)
    ),
)


@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True), dims=dims, v=values)
def test_str_round_trips_with_values(name, dims, v):
    spec = TensorSpec(name, tuple(dims), "int64", v)
    assert parse_spec(str(spec)) == spec


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
