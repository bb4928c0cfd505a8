"""Input arrays: sizes checked before anything is allocated or inflated.

The sizes here are astronomically large on purpose: were the check to break, numpy
would fail at once with MemoryError (a test failure) rather than fill this machine.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nnkit.backends.base import TensorInfo
from nnkit.errors import InputError
from nnkit.inputs import (
    LIMIT_ENV,
    generate,
    input_bytes_limit,
    load_feeds,
    usable_memory,
)
from nnkit.spec import parse_spec, tensor_infos
from tests._hostile import npy_header_only, npz_bomb, peak_rss, stamped_model
from tests.conftest import assert_one_line_error, run_cli

#: 4e12 float32 elements: 16 TB.
HUGE = (2_000_000, 2_000_000)


@pytest.fixture(scope="module")
def relu_file(zoo_file):
    return str(zoo_file("relu", "torchscript"))


def test_the_default_limit_is_a_quarter_of_the_memory(monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    assert input_bytes_limit() == usable_memory() // 4
    assert usable_memory() > 0


@pytest.mark.parametrize(
    ("text", "limit"),
    [("1000", 1000), ("64M", 64 * 1024**2), ("8G", 8 * 1024**3), ("2 GiB", 2 * 1024**3)],
)
def test_the_limit_is_overridable(monkeypatch, text, limit):
    monkeypatch.setenv(LIMIT_ENV, text)
    assert input_bytes_limit() == limit


def test_a_limit_that_is_not_a_size_is_refused(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(InputError, match="is not a size"):
        input_bytes_limit()


def test_generated_inputs_are_sized_before_they_are_allocated():
    with pytest.raises(InputError, match=r"need 14\.6 TiB|need [\d.]+ GiB") as info:
        generate([parse_spec("x:2000000x2000000")])
    assert "'x' [2000000, 2000000] float32" in info.value.message
    assert "NNKIT_MAX_INPUT_BYTES" in info.value.message
    with pytest.raises(InputError, match="over nnkit's limit"):
        generate([TensorInfo("x", ("n", 3), "float32")], shapes={"x": HUGE}, seed=0)


def test_the_limit_counts_every_input_together(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "1000")
    specs = [parse_spec("a:100:float32"), parse_spec("b:100:float32")]  # 400 + 400
    assert set(generate(specs)) == {"a", "b"}
    specs.append(parse_spec("c:100:float32"))
    with pytest.raises(
        InputError, match=r"need 1\.2 KiB .* limit of 1000 B \(set by NNKIT_MAX_INPUT_BYTES\)"
    ):
        generate(specs)


def test_a_huge_npy_header_is_refused_from_the_header(tmp_path):
    path = npy_header_only(tmp_path / "huge.npy", HUGE)
    with pytest.raises(InputError, match=r"huge\.npy' \[2000000, 2000000\] float32"):
        load_feeds([("x", path)])


def test_a_truncated_npy_is_named_not_loaded(tmp_path):
    path = npy_header_only(tmp_path / "short.npy", (100, 50), data=b"\0" * 64)
    with pytest.raises(
        InputError, match=r"short\.npy is truncated: .* \(20,000 bytes\), the file holds 64"
    ):
        load_feeds([("x", path)])


def test_an_npz_member_that_is_not_an_array_is_never_inflated(tmp_path):
    import zipfile

    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match=r"odd\.npz\[notes\.txt\] is not an array"):
        load_feeds([(None, path)])


def test_an_npz_bomb_is_refused_without_inflating_it(tmp_path):
    # 256 MiB of zeros in a 1 MiB file, refused with a 64 MiB limit: the child's peak
    # memory shows the member was never inflated.
    bomb = npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 4 * 1024**2
    code = (
        "from pathlib import Path\n"
        "from nnkit.errors import InputError\n"
        "from nnkit.inputs import load_feeds\n"
        "try:\n"
        f"    load_feeds([(None, Path({str(bomb)!r}))])\n"
        "except InputError as e:\n"
        "    print(e.message)\n"
    )
    status, message, err, peak = peak_rss(
        [sys.executable, "-c", code], env={**_env(), LIMIT_ENV: "64M"}
    )
    assert status == 0, err
    assert "need 256.0 MiB" in message and "limit of 64.0 MiB" in message
    assert peak < 200 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"


def test_limits_through_the_cli_are_one_line_exit_2(relu_file, tmp_path):
    err = assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--shape", "x:100000000000x50"),
        "the generated inputs need",
        "over nnkit's limit",
    )
    assert "internal error" not in err and "MemoryError" not in err
    huge = npy_header_only(tmp_path / "huge.npy", HUGE)
    assert_one_line_error(
        run_cli("infer", relu_file, "-p", "cpu", "--input", f"x={huge}"), "huge.npy"
    )


def test_sizes_stamped_in_metadata_are_checked_too(tmp_path):
    path = stamped_model(tmp_path / "stamped.onnx", "x:batch=2xn=100000000000:float32")
    err = assert_one_line_error(
        run_cli("bench", str(path), "--backends", "cpu", "--iterations", "1", "--batch", "1"),
        "the generated inputs need",
    )
    assert "[1, 100000000000]" in err


def test_feeds_within_the_limit_load(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.savez(tmp_path / "f.npz", a=np.ones(2, np.int64), b=np.zeros((1, 2), np.float16))
    feeds = load_feeds([("x", tmp_path / "x.npy"), (None, tmp_path / "f.npz")])
    assert list(feeds) == ["x", "a", "b"]
    assert feeds["x"].tolist() == [[0, 1, 2], [3, 4, 5]] and feeds["b"].dtype == np.float16


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != LIMIT_ENV}


# -- one generator for specs and declared inputs ------------------------------------------


def test_a_spec_and_its_declared_input_generate_the_same_arrays():
    specs = [
        parse_spec(s)
        for s in ("x:batch=2x3:float32", "ids:batch=2x4:int64", "m:batch=2:bool", "h:2:bfloat16")
    ]
    from_specs = generate(specs, sizes={"batch": 5}, seed=3)
    from_file = generate(tensor_infos(specs), sizes={"batch": 5}, seed=3)
    assert list(from_specs) == list(from_file) == ["x", "ids", "m", "h"]
    for name, arr in from_specs.items():
        assert arr.dtype == from_file[name].dtype and arr.shape == from_file[name].shape
        assert np.array_equal(arr, from_file[name]), name
    assert from_specs["x"].shape == (5, 3)


def test_generated_values_are_pinned_to_the_seed():
    # The draws every run, report and CI job relies on: changing them is a visible change.
    x = generate([parse_spec("x:2x3:float32")], seed=0)["x"]
    assert np.array_equal(x, np.random.default_rng(0).standard_normal((2, 3), dtype=np.float32))
    ids = generate([TensorInfo("ids", ("n",), "int64")], sizes={"n": 4}, seed=1)["ids"]
    assert np.array_equal(ids, np.random.default_rng(1).integers(0, 9, size=4, endpoint=True))


def test_a_spec_dim_takes_its_example_and_a_file_dim_takes_1_without_sizes():
    (spec,) = [parse_spec("x:batch=2x3")]
    assert generate([spec])["x"].shape == (2, 3)
    assert generate(tensor_infos([spec]))["x"].shape == (1, 3)


def test_a_sequence_input_is_refused_with_how_to_give_it():
    with pytest.raises(InputError, match=r"seq\(float32\).*s\.0, s\.1"):
        generate([TensorInfo("s", (2,), "float32", kind="sequence")])
