"""Each rewrite on the zoo: a checked file with provenance, written atomically; bad
requests refused in one line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnkit.check import check_file
from nnkit.commands._options import VARIANT_NAMES
from nnkit.compare.budget import DEFAULT_BUDGETS
from nnkit.rewrites import (
    CALIBRATION_SEEDS,
    VARIANTS,
    RewriteError,
    RewriteUnavailableError,
    parse_variants,
    rewrite_file,
    variant_path,
)
from tests.conftest import assert_one_line_error, run_nnkit

REWRITES = VARIANTS[1:]


def test_the_cli_and_the_budgets_know_every_variant():
    assert list(VARIANTS) == VARIANT_NAMES
    assert list(DEFAULT_BUDGETS) == list(REWRITES)


def test_calibration_seeds_are_none_of_the_cases_seeds():
    from nnkit.matrix.cases import CASE_SEEDS

    assert not set(CALIBRATION_SEEDS) & {0, *CASE_SEEDS, *range(4, 100)}


@pytest.mark.parametrize("variant", REWRITES)
def test_each_rewrite_of_combinednn_is_a_checked_file_with_provenance_that_runs(
    zoo_file, tmp_path, variant
):
    base = zoo_file("combinednn")
    out = tmp_path / f"m.{variant}.onnx"
    made = rewrite_file(variant, base, out)
    assert made.path == out and out.stat().st_size == made.size_bytes
    assert check_file(out)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnkit.variant"] == variant
    assert meta["nnkit.variant.base_sha256"] == hashlib.sha256(base.read_bytes()).hexdigest()
    assert meta["nnkit.variant.tool"] == made.tool and made.tool.split()[1][0].isdigit()
    assert json.loads(meta["nnkit.variant.settings"]) == made.settings
    assert meta["nnkit.model"] == "combinednn"  # the base's own stamp is kept
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert got[0].shape == (3, 10) and got[0].dtype == np.float32  # float32 I/O kept


def test_shrinking_rewrites_shrink_the_file(zoo_file, tmp_path):
    base = zoo_file("combinednn")
    size = base.stat().st_size
    fp16 = rewrite_file("fp16", base, tmp_path / "a.onnx")
    int8 = rewrite_file("int8-dynamic", base, tmp_path / "b.onnx")
    assert fp16.size_bytes < 0.55 * size and int8.size_bytes < 0.3 * size


def test_int8_static_records_its_calibration_set(zoo_file, tmp_path):
    made = rewrite_file("int8-static", zoo_file("linear"), tmp_path / "q.onnx")
    assert made.settings["calibration_samples"] == len(CALIBRATION_SEEDS) == 16
    assert made.settings["quant_format"] == "QDQ"
    ops = {n.op_type for n in onnx.load(str(made.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_static_calibrates_a_file_nnkit_did_not_stamp_on_its_declared_inputs(
    zoo_file, tmp_path
):
    proto = onnx.load(str(zoo_file("linear")))
    del proto.metadata_props[:]  # no nnkit.inputs: the declared x[batch, 10], batch at 1
    raw = tmp_path / "raw.onnx"
    onnx.save(proto, str(raw))
    made = rewrite_file("int8-static", raw, tmp_path / "raw.int8-static.onnx")
    assert check_file(made.path) and made.settings["calibration_samples"] == 16


def test_optimized_says_which_operators_only_onnxruntime_runs(zoo_file, tmp_path):
    made = rewrite_file("optimized", zoo_file("combinednn"), tmp_path / "o.onnx")
    assert any("com.microsoft" in n and "FusedConv" in n for n in made.notes)


def test_a_rewrite_that_fails_leaves_no_file_and_says_which(tmp_path):
    base = tmp_path / "bad.onnx"  # a valid file the quantizer cannot read: no graph inputs
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value_float=1.0)],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    onnx.save(helper.make_model(graph, ir_version=10), str(base))
    out = tmp_path / "bad.int8-static.onnx"
    with pytest.raises(RewriteError, match="int8-static needs calibration inputs"):
        rewrite_file("int8-static", base, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_unknown_variants_are_refused_listing_the_valid_ones():
    with pytest.raises(RewriteUnavailableError, match="valid variants are base, slim"):
        parse_variants(["fp8"])
    assert parse_variants(["fp16", "base", "fp16"]) == ["base", "fp16"]


def test_variant_files_are_named_beside_the_base():
    assert variant_path(Path("out/model.onnx"), "fp16") == Path("out/model.fp16.onnx")
    assert variant_path("m.ONNX", "int8-static") == Path("m.int8-static.onnx")


#: onnxslim made unimportable in every process (as where the extra is not installed).
NO_ONNXSLIM = """\
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxslim" or name.startswith("onnxslim."):
            raise ModuleNotFoundError("No module named 'onnxslim'")
        return None

sys.meta_path.insert(0, _Block())
"""


def planted_env(tmp_path: Path, code: str) -> dict[str, str]:
    """The environment of a process (and its workers) with ``code`` as sitecustomize."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(code)
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}


def test_a_missing_library_is_one_line_naming_the_extra(tmp_path, zoo_file):
    env = planted_env(tmp_path, NO_ONNXSLIM)
    for args in (
        ["parity", "linear", "--backends", "cpu", "--variants", "slim"],
        ["bench", str(zoo_file("linear")), "--backends", "cpu", "--variants", "fp16,slim"],
        ["export", "linear", "-o", str(tmp_path / "m.onnx"), "--variant", "slim"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "nnkit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert_one_line_error(done, "onnxslim", "pip install 'nnkit-onnx[rewrite]'")
    assert not (tmp_path / "m.onnx").exists()


def test_export_writes_each_variant_beside_the_file(tmp_path):
    out = tmp_path / "lin.onnx"
    done = run_nnkit(
        "export", "linear", "-o", str(out), "--variant", "fp16", "--variant", "int8-dynamic"
    )
    assert done.returncode == 0, done.stderr
    assert "wrote fp16 to" in done.stdout and "lin.int8-dynamic.onnx" in done.stdout
    for variant in ("fp16", "int8-dynamic"):
        path = tmp_path / f"lin.{variant}.onnx"
        assert check_file(path)
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert meta["nnkit.variant"] == variant
        assert meta["nnkit.variant.base_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lin.fp16.onnx",
        "lin.int8-dynamic.onnx",
        "lin.onnx",
    ]
