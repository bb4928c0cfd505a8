"""ONNX values in numpy: the dtype rule, the .npz layout, and --save read back by --input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nnkit.backends.base import TensorInfo
from nnkit.errors import InputError, NnkitError
from nnkit.npzfile import file_arrays, load_values, save_values, write_npz
from nnkit.values import (
    LOW_PRECISION,
    META_KEY,
    as_declared,
    bind_values,
    from_bits,
    group_values,
    pack_bits,
)
from tests.conftest import assert_one_line_error, run_cli

#: nnkit's dtype name -> ONNX element type, for every tensor type a file can hold.
ELEM_TYPES = {
    "bfloat16": TensorProto.BFLOAT16,
    "float8_e4m3fn": TensorProto.FLOAT8E4M3FN,
    "float8_e4m3fnuz": TensorProto.FLOAT8E4M3FNUZ,
    "float8_e5m2": TensorProto.FLOAT8E5M2,
    "float8_e5m2fnuz": TensorProto.FLOAT8E5M2FNUZ,
    "float8_e8m0fnu": TensorProto.FLOAT8E8M0,
    "float4_e2m1fn": TensorProto.FLOAT4E2M1,
    "int4": TensorProto.INT4,
    "uint4": TensorProto.UINT4,
    "int2": TensorProto.INT2,
    "uint2": TensorProto.UINT2,
    "float16": TensorProto.FLOAT16,
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "bool": TensorProto.BOOL,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
    "int16": TensorProto.INT16,
    "uint16": TensorProto.UINT16,
    "int32": TensorProto.INT32,
    "uint32": TensorProto.UINT32,
    "int64": TensorProto.INT64,
    "uint64": TensorProto.UINT64,
    "string": TensorProto.STRING,
}


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinct values of ``dtype``: every bit pattern of the small types shows up."""
    rng = np.random.default_rng(seed)
    if dtype == "string":
        words = np.array(["a", "bé", "", "x y", "日本", "z"] * 4, dtype=object)
        return words[: int(np.prod(shape))].reshape(shape)
    if dtype in LOW_PRECISION:
        bits = LOW_PRECISION[dtype]
        raw = rng.integers(0, 1 << min(bits, 8), size=shape).astype(np.uint8)
        if bits == 16:
            raw = rng.standard_normal(shape).astype(ml_dtypes.bfloat16).view(np.uint16)
        return raw.view(getattr(ml_dtypes, dtype))
    if dtype == "bool":
        return rng.random(shape) < 0.5
    return (rng.standard_normal(shape) * 50).astype(dtype)


def same_value(a, b) -> bool:
    """Values equal in kind, dtype, shape and bits (NaN in the same places counts as equal)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(same_value(x, y) for x, y in zip(a, b, strict=True))
        )
    if str(a.dtype) != str(b.dtype) or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return a.tolist() == b.tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


# -- the dtype rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(LOW_PRECISION))
def test_low_precision_inputs_are_taken_as_ml_dtypes_raw_void_or_same_width_unsigned(dtype):
    value = sample(dtype, (2, 3))
    width = np.uint16 if LOW_PRECISION[dtype] == 16 else np.uint8
    void = np.dtype(f"V{np.dtype(width).itemsize}")
    for given in (value, value.view(width), value.view(void)):
        got = as_declared(given, dtype, what="input 'x'")
        assert str(got.dtype) == dtype and same_value(got, value)


def test_other_arrays_for_a_low_precision_input_are_refused_in_one_line():
    with pytest.raises(InputError) as e:
        as_declared(np.zeros((2, 3), np.int16), "bfloat16", what="input 'x'")
    message = e.value.format_message()
    assert "declares bfloat16, given int16" in message and "uint16" in message
    with pytest.raises(InputError, match="one value per byte"):
        as_declared(np.zeros(3, np.float32), "int4", what="input 'x'")


@pytest.mark.parametrize(("dtype", "byte"), [("int4", 16), ("uint4", 0xFF), ("int2", 4)])
def test_sub_byte_values_must_fit_one_per_byte(dtype, byte):
    raw = np.array([1, byte, 2], dtype=np.uint8)
    with pytest.raises(InputError, match=f"element 1 is {byte}"):
        as_declared(raw, dtype, what="input 'q'")


@pytest.mark.parametrize("dtype", ["int4", "uint4", "int2", "uint2", "float4_e2m1fn"])
def test_sub_byte_packing_puts_the_first_value_in_the_lowest_bits(dtype):
    value = sample(dtype, (3, 5), seed=4)
    packed = pack_bits(value)
    per_byte = 8 // LOW_PRECISION[dtype]
    assert packed.size == -(-15 // per_byte)
    low = int(value.view(np.uint8).ravel()[0])
    assert int(packed[0]) & ((1 << LOW_PRECISION[dtype]) - 1) == low
    assert same_value(from_bits(packed, dtype, (3, 5)), value)


def test_strings_come_as_u_s_or_object_and_bytes_must_be_utf8():
    for given in (
        np.array(["a", "é"]),
        np.array([b"a", "é".encode()]),
        np.array(["a", "é"], object),
    ):
        got = as_declared(given, "string", what="input 's'")
        assert got.dtype == object and got.tolist() == ["a", "é"]
    with pytest.raises(InputError, match="element 1 is not UTF-8"):
        as_declared(np.array([b"a", b"\xff"]), "string", what="input 's'")


# -- the layout: sequences, optionals, names numpy's savez cannot take --------------------------

DECLARED = (
    TensorInfo("x", (2,), "float32"),
    TensorInfo("s", (None,), "int64", "sequence"),
    TensorInfo("o", (2,), "float32", "optional"),
)


def test_a_sequence_is_its_element_keys_and_an_empty_optional_no_key():
    x = np.zeros(2, np.float32)
    got = bind_values(DECLARED, {"x": x, "s.1": np.arange(3), "s.0": np.arange(1)})
    assert got["o"] is None and [a.tolist() for a in got["s"]] == [[0], [0, 1, 2]]
    empty = bind_values(DECLARED, {"x": x, "s.len": np.array(0), "o": np.ones(2, np.float32)})
    assert empty["s"] == [] and empty["o"].tolist() == [1, 1]


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"s.0": np.arange(2), "s.2": np.arange(2)}, "element s.1 is missing"),
        ({"s.0": np.arange(2), "s.len": np.array(2)}, "'s.len' says 2, 1 elements given"),
        ({"s": np.arange(2)}, "give its elements as 's.0', 's.1'"),
        ({"s": [np.arange(2)], "s.0": np.arange(2)}, "given twice"),
        ({"s.len": np.array(0), "x.1": np.arange(2)}, "unexpected 'x.1'"),
        ({}, "missing 's'"),
        ({"s.len": np.array(0), "t": np.arange(2)}, "unexpected 't'"),
    ],
)
def test_sequence_layout_errors_say_what_to_give(given, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        bind_values(DECLARED, {"x": np.zeros(2, np.float32), **given})


def test_values_given_by_name_take_lists_and_none():
    got = bind_values(DECLARED, {"x": np.zeros(2, np.float32), "s": [np.arange(2)], "o": None})
    assert len(got["s"]) == 1 and got["o"] is None


def test_names_savez_cannot_take_are_written_and_read_back(tmp_path):
    values = {
        "file": np.arange(3),
        "allow_pickle": np.ones(2, np.float32),
        "a/b": np.array(["x"]),
        "seq": [np.zeros((1, 2)), np.ones(3)],
        "empty": [],
        "bf": sample("bfloat16", (2,)),
    }
    path = tmp_path / "v.npz"
    save_values(path, values)
    with np.load(path, allow_pickle=False) as plain:  # plain numpy reads every member
        assert set(plain.files) == {
            "file", "allow_pickle", "a/b", "seq.0", "seq.1", "seq.len", "empty.len", "bf",
            META_KEY,
        }  # fmt: skip
        assert plain["bf"].dtype == np.uint16 and plain["seq.len"] == 2
        assert json.loads(str(plain[META_KEY]))["dtypes"] == {"bf": "bfloat16"}
    back = group_values(load_values(path))  # without a model: strings stay <U
    assert set(back) == set(values)
    for name, value in values.items():
        assert same_value(back[name], value), name


def test_saving_refuses_what_it_cannot_write_faithfully():
    with pytest.raises(NnkitError, match="clashes"):
        file_arrays({"s": [np.zeros(1)], "s.0": np.zeros(1)})
    with pytest.raises(NnkitError, match="NUL"):
        file_arrays({"t": np.array(["ab\x00"], dtype=object)})


def test_write_npz_never_pickles(tmp_path):
    with (tmp_path / "x.npz").open("wb") as f, pytest.raises(ValueError, match="pickle"):
        write_npz(f, {"o": np.array([{}], dtype=object)})


# -- --save read back by --input, over every dtype and value kind ----------------------------------


def passthrough_model(path: Path) -> dict[str, object]:
    """A model whose outputs are its inputs (no nodes), one of every dtype and kind;
    returns the values to feed it, by name."""
    values: dict[str, object] = {}
    infos = []
    for dtype, elem in ELEM_TYPES.items():
        name = f"t_{dtype}"
        values[name] = sample(dtype, (2, 3))
        infos.append(helper.make_tensor_value_info(name, elem, [2, 3]))
    floats = helper.make_tensor_type_proto(TensorProto.FLOAT, None)
    more = {
        "file": (helper.make_tensor_type_proto(TensorProto.FLOAT, []), np.array(1.5, np.float32)),
        "allow_pickle": (helper.make_tensor_type_proto(TensorProto.BOOL, []), np.array(True)),
        "a/b": (
            helper.make_tensor_type_proto(TensorProto.STRING, []),
            np.array("scalar string", dtype=object),
        ),
        "seq": (
            helper.make_sequence_type_proto(floats),
            [sample("float32", (2, 2)), sample("float32", (5,), seed=1)],
        ),
        "seq_bf16": (
            helper.make_sequence_type_proto(
                helper.make_tensor_type_proto(TensorProto.BFLOAT16, None)
            ),
            [sample("bfloat16", (3,))],
        ),
        "empty_seq": (helper.make_sequence_type_proto(floats), []),
        "opt": (
            helper.make_optional_type_proto(
                helper.make_tensor_type_proto(TensorProto.INT64, [None])
            ),
            np.arange(4),
        ),
        "opt_seq": (
            helper.make_optional_type_proto(helper.make_sequence_type_proto(floats)),
            [sample("float32", (1,))],
        ),
    }
    for name, (type_proto, value) in more.items():
        infos.append(helper.make_value_info(name, type_proto))
        values[name] = value
    graph = helper.make_graph([], "passthrough", infos, infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    model.ir_version = 11
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return values


def test_save_is_read_back_by_input_with_the_same_values_and_dtypes(tmp_path):
    model = tmp_path / "passthrough.onnx"
    values = passthrough_model(model)
    feeds = tmp_path / "feeds.npz"
    save_values(feeds, values)
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    for given, saved in ((feeds, first), (first, second)):
        result = run_cli(
            "infer", str(model), "-p", "reference", "--input", str(given), "--save", str(saved)
        )
        assert result.exit_code == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    from nnkit.onnxfile import read_io

    back = bind_values(read_io(model)[1], load_values(second), what="output")
    assert set(back) == set(values)
    for name, value in values.items():
        assert same_value(back[name], value), name


def test_an_absent_optional_output_is_no_key_and_reads_back_absent(tmp_path):
    model = tmp_path / "opt.onnx"
    info = helper.make_value_info(
        "o",
        helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])),
    )
    graph = helper.make_graph([], "opt", [info], [info])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10),
        str(model),
    )
    saved = tmp_path / "out.npz"
    empty = tmp_path / "empty.npz"
    save_values(empty, {})
    result = run_cli(
        "infer", str(model), "-p", "reference", "--input", str(empty), "--save", str(saved)
    )
    assert result.exit_code == 0, result.stderr
    assert "none (empty optional)" in result.stdout
    with zipfile.ZipFile(saved) as zf:
        assert zf.namelist() == []


def test_a_damaged_record_is_refused(tmp_path):
    model = tmp_path / "id.onnx"
    info = helper.make_tensor_value_info("x", TensorProto.UINT8, [2])
    graph = helper.make_graph([], "id", [info], [info])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10),
        str(model),
    )
    path = tmp_path / "bad.npz"
    with path.open("wb") as f:
        write_npz(f, {"x": np.zeros(2, np.uint8), META_KEY: np.array('{"format": "other"}')})
    result = run_cli("infer", str(model), "-p", "reference", "--input", str(path))
    assert_one_line_error(result, "is not an nnkit.values/1 record")
    with pytest.raises(InputError, match=r"is not an nnkit\.values/1 record"):
        load_values(path)
