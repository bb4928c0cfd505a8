"""Variants in the matrix: each rewrite is an artifact column, judged by its budget; a
rewrite that breaks the model is caught, one that fails is an error of its own cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnkit.matrix.plan import ParityRequest, plan
from tests.conftest import assert_one_line_error, run_nnkit
from tests.rewrites.test_rewrites import planted_env

#: onnxslim raises, in the worker that rewrites.
SLIM_RAISES = """\
import sys

if "nnkit.worker" in sys.orig_argv:
    import onnxslim

    def slim(model, *args, **kwargs):
        raise RuntimeError("planted: onnxslim failed")

    onnxslim.slim = slim
"""
#: onnxslim told the example's input shape: it folds the batch dim into a constant.
SLIM_FREEZES = """\
import sys

if "nnkit.worker" in sys.orig_argv:
    import onnxslim

    real = onnxslim.slim

    def slim(model, *args, **kwargs):
        return real(model, input_shapes=["x:2,10"], **kwargs)

    onnxslim.slim = slim
"""
#: quantize_dynamic's file with its largest int8 weight zeroed: an int8 layer that lost
#: everything (the file still checks, loads and runs everywhere).
INT8_LOSES_A_LAYER = """\
import sys

if "nnkit.worker" in sys.orig_argv:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    import onnxruntime.quantization as q

    real = q.quantize_dynamic

    def quantize_dynamic(model_input, model_output, *args, **kwargs):
        real(model_input, model_output, *args, **kwargs)
        proto = onnx.load(str(model_output))
        weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        weight = max(weights, key=lambda t: int(np.prod(t.dims)))
        zeros = np.zeros_like(numpy_helper.to_array(weight))
        weight.CopyFrom(numpy_helper.from_array(zeros, weight.name))
        onnx.save(proto, str(model_output))

    q.quantize_dynamic = quantize_dynamic
"""
#: A Linear whose outputs overflow float16 (max 65504) on standard-normal inputs (its
#: weights, below 3.2e4, do not). onnxruntime's and OpenVINO's CPU kernels compute an
#: fp16 Gemm in float32 (no overflow there); the onnx reference evaluator computes in
#: float16, as a device with fp16 kernels does.
BIG = """\
import torch
from torch import nn


class Big(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(10, 8)
        with torch.no_grad():
            self.fc.weight.mul_(1e5)

    def forward(self, x):
        return self.fc(x)
"""


def parity(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "nnkit", "parity", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def linear(tmp_path: Path, backends: str, variants: str, *args: str, env=None):
    """``nnkit parity linear`` (dynamo) with ``variants``: the process and its JSON report."""
    report = tmp_path / "r.json"
    done = parity(
        "linear",
        *("--exporters", "dynamo", "--backends", backends, "--variants", variants),
        *("--json", str(report), *args),
        env=env,
    )
    return done, json.loads(report.read_text()) if report.exists() else {}


def cells(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["cells"]}


def test_plan_has_a_column_per_variant_of_each_artifact():
    request = ParityRequest.from_options(
        ["linear"], backends=["cpu"], exporters=["dynamo", "torchscript"], variants=["fp16", "slim"]
    )
    planned = plan(request)
    assert planned.artifacts == [
        "dynamo",
        "dynamo+fp16",
        "dynamo+slim",
        "torchscript",
        "torchscript+fp16",
        "torchscript+slim",
    ]
    body = planned.to_dict()
    assert body["variants"] == ["base", "fp16", "slim"]
    assert body["budgets"]["fp16"] == "atol=0.01,rtol=0.01,cosine=0.999,corr=0.999"
    fp16 = body["models"][0]["artifacts"][1]
    assert fp16["variant"] == "fp16" and fp16["base"] == "dynamo" and fp16["source"] == "rewrite"
    # without variants the plan (and its fingerprint) is what it was
    plain = plan(ParityRequest.from_options(["linear"], backends=["cpu"], exporters=["dynamo"]))
    assert "variants" not in plain.to_dict()
    assert "variant" not in plain.to_dict()["models"][0]["artifacts"][0]


def test_every_variant_of_linear_is_a_column_in_grids_json_and_junit(tmp_path):
    junit, markdown = tmp_path / "r.xml", tmp_path / "r.md"
    done, data = linear(
        tmp_path,
        "cpu,reference",
        "base,slim,optimized,fp16,int8-dynamic,int8-static",
        *("--junit", str(junit), "--markdown", str(markdown)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = markdown.read_text()
    assert (
        "### Variants" in text
        and "- budget fp16: atol=0.01,rtol=0.01,cosine=0.999,corr=0.999" in text
    )
    # the report reads back from its JSON (shards merge) with every variant field
    from nnkit.matrix.results import ParityReport

    again = ParityReport.from_dict(data).to_dict()
    for key in ("cells", "exports", "results", "request"):
        assert again[key] == data[key], key
    assert data["request"]["variants"][0] == "base" and len(data["request"]["variants"]) == 6
    assert data["request"]["budgets"]["int8-static"] == "cosine=0.99,corr=0.99,top1=0.9"
    by_id = cells(data)
    for variant in ("slim", "optimized", "fp16", "int8-dynamic", "int8-static"):
        cell = by_id[f"linear|dynamo+{variant}|cpu"]
        assert cell["variant"] == variant and cell["status"] == "pass"
        assert f"variant: dynamo+{variant} ({variant} of dynamo by onnx" in done.stdout
        assert f'name="linear[dynamo+{variant}-cpu]"' in junit.read_text()
    exports = {e["artifact"]: e for e in data["exports"]}
    assert exports["dynamo"]["size_bytes"] > exports["dynamo+int8-dynamic"]["size_bytes"] > 0
    assert exports["dynamo+fp16"]["tool"].startswith("onnxruntime ")
    assert exports["dynamo+fp16"]["settings"]["keep_io_types"] is True
    results = [r for r in data["results"] if r["variant"] == "int8-dynamic"]
    output = results[0]["outputs"][0]
    assert output["top1"] is not None and output["snr_db"] > 20
    assert output["budget"] == "int8-dynamic: cosine=0.99,corr=0.99,top1=0.9"
    base = next(r for r in data["results"] if r["variant"] == "base")
    assert base["outputs"][0]["budget"] is None
    assert "min cosine" in done.stdout and "vs base" in done.stdout  # the summary table


def test_a_rewrite_tool_that_raises_is_an_error_of_its_cells_only(tmp_path):
    done, data = linear(tmp_path, "cpu", "slim,fp16", env=planted_env(tmp_path, SLIM_RAISES))
    assert done.returncode == 1, done.stderr
    by_id = cells(data)
    assert by_id["linear|dynamo+slim|cpu"]["status"] == "error"
    assert by_id["linear|dynamo|cpu"]["status"] == "pass"
    assert by_id["linear|dynamo+fp16|cpu"]["status"] == "pass"
    assert "planted: onnxslim failed" in done.stdout
    assert "export failed" not in done.stdout


def test_a_rewrite_that_freezes_a_dynamic_dim_fails_at_another_batch(tmp_path):
    done, data = linear(tmp_path, "cpu,reference", "slim", env=planted_env(tmp_path, SLIM_FREEZES))
    assert done.returncode == 1, done.stderr
    slim = {r["case"]: r["status"] for r in data["results"] if r["artifact"] == "dynamo+slim"}
    assert slim == {"batch=2": "pass", "batch=1": "mismatch", "batch=5": "mismatch"}
    assert all(c["status"] == "pass" for c in data["cells"] if c["variant"] == "base")


def test_an_int8_file_that_lost_a_layer_is_a_mismatch_on_every_runtime(tmp_path):
    done, data = linear(
        tmp_path, "cpu,openvino", "int8-dynamic", env=planted_env(tmp_path, INT8_LOSES_A_LAYER)
    )
    assert done.returncode == 1, done.stderr
    by_id = cells(data)
    assert by_id["linear|dynamo|cpu"]["status"] == "pass"
    for backend in ("cpu", "openvino"):
        assert by_id[f"linear|dynamo+int8-dynamic|{backend}"]["status"] == "mismatch"
    assert "correlation" in done.stdout and "would pass with --budget int8-dynamic:" in done.stdout


def test_fp16_of_a_model_that_overflows_float16_is_a_mismatch(tmp_path):
    model = tmp_path / "big.py"
    model.write_text(BIG)
    report = tmp_path / "r.json"
    done = parity(
        f"{model}:Big",
        "--input",
        "x:batch=2x10",
        "--exporters",
        "dynamo",
        "--backends",
        "reference",
        "--variants",
        "fp16",
        "--json",
        str(report),
    )
    assert done.returncode == 1, done.stderr
    by_id = cells(json.loads(report.read_text()))
    assert by_id[f"{model}:Big|dynamo|reference"]["status"] == "pass"
    assert by_id[f"{model}:Big|dynamo+fp16|reference"]["status"] == "mismatch"
    assert "NaN/Inf in different places" in done.stdout


def test_variants_of_an_onnx_file_and_a_budget_override(zoo_file, tmp_path):
    onnx_file = zoo_file("linear")
    before = sorted(onnx_file.parent.iterdir())
    report = tmp_path / "r.json"
    done = parity(
        "--onnx",
        str(onnx_file),
        "--backends",
        "cpu",
        "--variants",
        "int8-dynamic",
        "--budget",
        "int8-dynamic:cosine=0.9999999",
        "--json",
        str(report),
    )
    assert done.returncode == 1, done.stderr
    assert sorted(onnx_file.parent.iterdir()) == before  # nothing written beside the file
    data = json.loads(report.read_text())
    exports = {e["artifact"]: e for e in data["exports"]}
    assert exports["file"]["path"] == str(onnx_file)  # the user's file, named
    assert exports["file+int8-dynamic"]["path"] is None  # a temporary file, gone
    assert exports["file+int8-dynamic"]["base"] == "file"
    by_id = cells(data)
    assert by_id["linear|file|cpu"]["status"] == "pass"
    assert by_id["linear|file+int8-dynamic|cpu"]["status"] == "mismatch"
    assert "< 0.9999999" in done.stdout
    assert "would pass with --budget int8-dynamic:cosine=0.99" in done.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--variants", "fp8"], "unknown 'fp8': valid are base, slim"),
        (["--budget", "int9:cosine=0.9"], "unknown variant 'int9'"),
        (["--budget", "fp16:cosine=2"], "cosine must be a number in (0, 1]"),
        (["--budget", "slim:atol=1"], "judged by the base's rule"),
        (["--budget", "fp16:cosine=0.9"], "'fp16' is not among the variants run (base)"),
        (
            ["--variants", "slim", "--budget", "int8-static:top1=1"],
            "'int8-static' is not among the variants run (base, slim); add it to --variants",
        ),
    ],
)
def test_bad_variant_options_are_one_line_exit_2(args, needle):
    assert_one_line_error(run_nnkit("parity", "linear", "--backends", "cpu", *args), needle)


def test_bench_times_each_variant_against_the_base_file(zoo_file, tmp_path):
    out = tmp_path / "b.json"
    done = run_nnkit(
        "bench",
        str(zoo_file("linear")),
        "--backends",
        "cpu",
        "--batch",
        "1",
        "--iterations",
        "20",
        "--variants",
        "fp16,int8-dynamic",
        "--json",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["variants"] == ["base", "fp16", "int8-dynamic"]
    rows = {r["variant"]: r for r in data["results"]}
    assert rows["base"]["speedup_vs_base"] == pytest.approx(1.0)
    assert rows["fp16"]["speedup_vs_base"] > 0 and rows["int8-dynamic"]["file_bytes"] > 0
    assert rows["base"]["file_bytes"] == Path(zoo_file("linear")).stat().st_size
    assert data["rewrites"]["fp16"]["tool"].startswith("onnxruntime ")
    assert "speed-up over the base file" in done.stdout


def test_a_manifest_names_variants_and_budgets(tmp_path):
    from nnkit.matrix.config import ConfigError, load_config

    manifest = tmp_path / "nnkit.toml"
    manifest.write_text(
        '[parity]\nvariants = ["fp16"]\nbudget = ["fp16:cosine=0.9999"]\n\n'
        '[[model]]\nref = "linear"\n'
    )
    request = load_config(manifest)
    assert request.variants == ["fp16"]
    planned = plan(request)
    assert planned.budgets["fp16"].cosine == 0.9999
    assert {c.artifact for c in planned.cells} == {
        "dynamo",
        "dynamo+fp16",
        "torchscript",
        "torchscript+fp16",
    }
    manifest.write_text('[parity]\nbudget = ["fp16:cosin=1"]\n\n[[model]]\nref = "linear"\n')
    with pytest.raises(ConfigError, match=r"\[parity\]: bad --budget 'fp16:cosin=1'"):
        load_config(manifest)


def test_a_variant_file_checked_with_onnx_is_judged_by_its_budget(zoo_file, tmp_path):
    import onnx

    from nnkit.rewrites import rewrite_file

    fp16 = rewrite_file("fp16", zoo_file("combinednn"), tmp_path / "m.fp16.onnx").path
    done = parity("--onnx", str(fp16), "--backends", "cpu")
    assert done.returncode == 0, done.stdout
    assert "its fp16 variant per its metadata; budget atol=0.01,rtol=0.01,cosine=0.999," in (
        done.stdout
    )
    proto = onnx.load(str(fp16))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "nnkit.variant"]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    # without the stamp the same file is judged by the base rule, which it fails
    assert parity("--onnx", str(plain), "--backends", "cpu").returncode == 1
    proto.metadata_props.add(key="nnkit.variant", value="fp32")
    onnx.save(proto, str(plain))
    assert_one_line_error(
        run_nnkit("parity", "--onnx", str(plain), "--backends", "cpu"),
        "says it is the variant 'fp32'",
    )


def test_a_shard_with_only_a_variant_cell_makes_its_base_file_and_runs_only_that_cell():
    from nnkit.matrix.execute import execute

    planned = plan(
        ParityRequest.from_options(
            ["linear"], backends=["cpu"], exporters=["dynamo"], variants=["int8-dynamic"]
        )
    )
    report = execute(planned, only={"linear|dynamo+int8-dynamic|cpu"})
    assert [c.id for c in report.cells()] == ["linear|dynamo+int8-dynamic|cpu"]
    assert report.cells()[0].status == "pass"
    assert [e.artifact for e in report.exports] == ["dynamo", "dynamo+int8-dynamic"]
    assert {r.variant for r in report.results} == {"int8-dynamic"}


@pytest.mark.slow
def test_every_rewrite_of_every_zoo_model_passes_its_budget_on_onnxruntime():
    from nnkit.models import ZOO
    from nnkit.parity import run
    from nnkit.rewrites import VARIANTS

    report = run(
        ParityRequest.from_options(
            [], backends=["cpu"], exporters=["dynamo"], variants=list(VARIANTS)
        )
    )
    assert {c.model for c in report.cells()} == set(ZOO)
    assert {c.variant for c in report.cells()} == set(VARIANTS)
    failed = [(c.id, c.status, c.results[0].message[:200]) for c in report.cells() if not c]
    assert not failed
    assert all(e.size_bytes > 0 and not e.error for e in report.exports)
