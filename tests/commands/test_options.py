"""Numeric options: NaN, infinities and out-of-range values are one line, exit 2.

A NaN tolerance passes every comparison (a tanh file passed as sigmoid); ``--seconds
inf`` never ends; ``--threads 2147483648`` reached the runtime. Each is refused while
the command line is parsed, before anything is loaded.
"""

from __future__ import annotations

import pytest

from nnkit.commands._options import MAX_SEED, MAX_THREADS, usable_cores
from tests.conftest import assert_one_line_error, run_cli

REFUSED = [
    (["parity", "relu", "--atol", "nan"], "--atol", "'nan' is not a finite number"),
    (["parity", "relu", "--atol", "inf"], "--atol", "'inf' is not a finite number"),
    (["parity", "relu", "--atol", "-1e-5"], "--atol", "not in the range x>=0"),
    (["parity", "relu", "--rtol", "nan"], "--rtol", "'nan' is not a finite number"),
    (["parity", "relu", "--rtol", "-inf"], "--rtol", "'-inf' is not a finite number"),
    (["parity", "relu", "--rtol", "-1"], "--rtol", "not in the range x>=0"),
    (["bench", "m.onnx", "--seconds", "inf"], "--seconds", "'inf' is not a finite number"),
    (["bench", "m.onnx", "--seconds", "nan"], "--seconds", "'nan' is not a finite number"),
    (["bench", "m.onnx", "--seconds", "0"], "--seconds", "0<x<=3600"),
    (["bench", "m.onnx", "--seconds", "1e9"], "--seconds", "0<x<=3600"),
    (["bench", "m.onnx", "--threads", "2147483648"], "--threads", f"1<=x<={MAX_THREADS}"),
    (["bench", "m.onnx", "--threads", "0"], "--threads", f"1<=x<={MAX_THREADS}"),
    (["bench", "m.onnx", "--warmup", "-1"], "--warmup", "0<=x<=1000000"),
    (["bench", "m.onnx", "--warmup", "10000000000"], "--warmup", "0<=x<=1000000"),
    (["bench", "m.onnx", "--iterations", "0"], "--iterations", "1<=x<=100000000"),
    (["bench", "m.onnx", "--iterations", "1e3"], "--iterations", "is not a valid integer"),
    (["bench", "m.onnx", "--batch", "0,8"], "--batch", "from 1 to 1,000,000"),
    (["bench", "m.onnx", "--batch", "99999999999"], "--batch", "from 1 to 1,000,000"),
    (["bench", "m.onnx", "--seed", "-1"], "--seed", f"0<=x<={MAX_SEED}"),
    (["infer", "m.onnx", "-p", "cpu", "--seed", "-1"], "--seed", f"0<=x<={MAX_SEED}"),
    (["infer", "m.onnx", "-p", "cpu", "--seed", str(2**64)], "--seed", f"0<=x<={MAX_SEED}"),
    (["infer", "m.onnx", "-p", "cpu", "--threads", "2147483648"], "--threads", "1<=x<=1024"),
    (["infer", "m.onnx", "-p", "cpu", "--iterations", "-1"], "--iterations", "0<=x<="),
    (["infer", "m.onnx", "-p", "cpu", "--warmup", "-3"], "--warmup", "0<=x<="),
    (["export", "relu", "-o", "r.onnx", "--opset", "-1"], "--opset", "7<=x<=30"),
]


@pytest.mark.parametrize(
    ("args", "option", "needle"), REFUSED, ids=[" ".join(a[0:1] + a[-2:]) for a, *_ in REFUSED]
)
def test_non_finite_and_out_of_range_numbers_are_refused(args, option, needle):
    assert_one_line_error(run_cli(*args), f"Invalid value for '{option}'", needle)


def test_a_nan_tolerance_never_reaches_a_comparison(zoo_file):
    # The attack: a tanh file checked as sigmoid passed with --atol nan.
    tanh = zoo_file("tanh", "torchscript")
    result = run_cli("parity", "sigmoid", "--onnx", str(tanh), "--backends", "cpu")
    assert result.exit_code == 1, result.output
    assert_one_line_error(
        run_cli("parity", "sigmoid", "--onnx", str(tanh), "--backends", "cpu", "--atol", "nan"),
        "not a finite number",
    )


def test_threads_above_the_usable_cores_warn_and_run(zoo_file):
    relu = str(zoo_file("relu", "torchscript"))
    over = usable_cores() + 1
    result = run_cli("infer", relu, "-p", "cpu", "--threads", str(over))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == (
        f"warning: --threads {over} is more than the {usable_cores()} core(s) this process "
        "may use: the runs will be slower, not faster"
    )
    result = run_cli("infer", relu, "-p", "cpu", "--threads", str(usable_cores()))
    assert result.exit_code == 0 and result.stderr == ""


def test_the_largest_seed_runs(zoo_file):
    relu = str(zoo_file("relu", "torchscript"))
    result = run_cli("infer", relu, "-p", "cpu", "--seed", str(MAX_SEED), "--json")
    assert result.exit_code == 0, result.stderr
    assert f'"seed": {MAX_SEED}' in result.stdout
