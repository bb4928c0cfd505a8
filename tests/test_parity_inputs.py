"""Inputs the user controls: value ranges, chosen cases, real inputs, stamped specs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnkit.parity import run_parity
from nnkit.spec import parse_spec
from tests.conftest import assert_one_line_error, run_cli

MODELS = '''
import torch
import torch.nn.functional as F
from torch import nn


class MaskedAttention(nn.Module):
    """Attention over padded tokens, the mask taken as booleans.

    On a fully padded sequence PyTorch gives zeros; the dynamo export gives the mean of
    the values instead. Masks drawn from 0..9 almost never pad a whole sequence; masks
    in {0,1} do, at seq=1 half the time.
    """

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.qkv = nn.Linear(8, 24)

    def forward(self, input_ids, attention_mask):
        q, k, v = (t[:, None] for t in self.qkv(self.emb(input_ids)).chunk(3, -1))
        mask = attention_mask[:, None, None, :].bool()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[:, 0]


class Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(5, 4)

    def forward(self, ids):
        return self.e(ids)


class Cache:
    pass


class WithCache(nn.Module):
    def forward(self, x):
        return {"y": x * 2, "pair": (x + 1, x - 1), "cache": Cache()}
'''

IDS = "input_ids:batch=2xseq=6:int64[0,50)"
MASK01 = "attention_mask:batch=2xseq=6:int64{0,1}"
MASK_DEFAULT = "attention_mask:batch=2xseq=6:int64"


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "inputs_models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture(scope="module")
def masked_file(models_file: Path) -> Path:
    """MaskedAttention exported once with dynamo, its masks declared {0,1}."""
    out = models_file.parent / "masked.onnx"
    result = run_cli(
        "export",
        f"{models_file}:MaskedAttention",
        "-o",
        str(out),
        "--input",
        IDS,
        "--input",
        MASK01,
    )
    assert result.exit_code == 0, result.stderr
    return out


def parity_json(tmp_path: Path, *args: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    result = run_cli("parity", *args, "--backends", "cpu", "--json", str(report))
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(report.read_text())


def padded(feeds: dict[str, np.ndarray]) -> bool:
    """True when some sequence of the case is all padding."""
    return bool((feeds["attention_mask"] == 0).all(axis=1).any())


def test_the_ranges_are_stamped_into_the_file_and_read_back(masked_file: Path) -> None:
    result = run_cli("check", str(masked_file), "--json")
    stamped = json.loads(result.stdout)["summary"]["metadata"]["nnkit.inputs"].split()
    assert stamped == [IDS, MASK01]
    assert [str(parse_spec(s)) for s in stamped] == stamped


def test_a_mask_divergence_is_caught_with_masks_in_0_1_and_missed_with_the_default(
    masked_file: Path, models_file: Path, tmp_path: Path
) -> None:
    # The file's own specs ({0,1} masks): a fully padded sequence shows the divergence.
    code, report = parity_json(tmp_path, "--onnx", str(masked_file), "--trust-metadata")
    assert code == 1
    from nnkit.parity import ShapeCase

    specs = [parse_spec(IDS), parse_spec(MASK01)]
    cases = {
        c["name"]: ShapeCase(c["name"], c["sizes"], c["seed"])
        for c in report["cases"][f"{models_file}:MaskedAttention"]
    }
    statuses = {r["case"]: r["status"] for r in report["results"]}
    expected = {
        name: "mismatch" if padded(case.inputs(specs)) else "pass" for name, case in cases.items()
    }
    assert statuses == expected
    assert "mismatch" in statuses.values()
    # The same file with masks from 0..9 (the default): every case passes, a false pass.
    code, report = parity_json(
        tmp_path,
        "--onnx",
        str(masked_file),
        "--trust-metadata",
        "--input",
        IDS,
        "--input",
        MASK_DEFAULT,
    )
    assert code == 0
    assert {r["status"] for r in report["results"]} == {"pass"}


def test_chosen_cases_run_beside_or_instead_of_the_generated_ones(
    masked_file: Path, tmp_path: Path
) -> None:
    _, report = parity_json(
        tmp_path,
        "--onnx",
        str(masked_file),
        "--trust-metadata",
        "--case",
        "seq=3",
        "--case",
        "batch=1,seq=1",
    )
    cases = next(iter(report["cases"].values()))
    # batch=1,seq=1 is a generated case already: it runs once.
    assert [(c["name"], c["source"]) for c in cases] == [
        ("batch=2,seq=6", "generated"),
        ("batch=1,seq=1", "generated"),
        ("batch=5,seq=11", "generated"),
        ("batch=2,seq=3", "chosen"),
    ]
    _, report = parity_json(
        tmp_path,
        "--onnx",
        str(masked_file),
        "--trust-metadata",
        "--case",
        "batch=3,seq=4",
        "--no-generated-cases",
    )
    assert [r["shapes"] for r in report["results"]] == [
        {"input_ids": [3, 4], "attention_mask": [3, 4]}
    ]
    for case, *expected in (
        ("len=3", "has no dynamic dim 'len'", "'batch', 'seq'"),
        ("seq", "bad case 'seq'", "batch=1,seq=128"),
    ):
        bad = run_cli(
            "parity",
            "--onnx",
            str(masked_file),
            "--trust-metadata",
            "--backends",
            "cpu",
            "--case",
            case,
        )
        assert_one_line_error(bad, *expected)


def test_real_inputs_run_as_cases_named_after_their_files(
    masked_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8]], dtype=np.int64)
    np.savez(
        data / "padded.npz",
        input_ids=ids,
        attention_mask=np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]),
    )
    np.savez(data / "full.npz", input_ids=ids[:2], attention_mask=np.ones((2, 4), dtype=np.int64))
    (data / "notes.txt").write_text("not a case")
    code, report = parity_json(
        tmp_path,
        "--onnx",
        str(masked_file),
        "--trust-metadata",
        "--data",
        str(data),
        "--no-generated-cases",
    )
    assert code == 1
    assert {r["case"]: (r["status"], r["seed"]) for r in report["results"]} == {
        "full.npz": ("pass", None),
        "padded.npz": ("mismatch", None),
    }
    cases = next(iter(report["cases"].values()))
    assert [(c["name"], c["sizes"], c["source"]) for c in cases] == [
        ("full.npz", {"batch": 2, "seq": 4}, "data"),
        ("padded.npz", {"batch": 3, "seq": 4}, "data"),
    ]
    # One file is one case, beside the generated ones.
    code, report = parity_json(
        tmp_path, "--onnx", str(masked_file), "--trust-metadata", "--data", str(data / "full.npz")
    )
    assert [c["name"] for c in next(iter(report["cases"].values()))][-1] == "full.npz"


@pytest.mark.parametrize(
    ("arrays", "needles"),
    [
        (
            {"input_ids": np.zeros((2, 4), np.int32), "attention_mask": np.ones((2, 4), np.int64)},
            ["case 'bad.npz'", "dtype int32 != int64"],
        ),
        ({"input_ids": np.zeros((2, 4), np.int64)}, ["case 'bad.npz'", "missing 'attention_mask'"]),
        (
            {"input_ids": np.zeros((2, 4), np.int64), "attention_mask": np.ones((2, 5), np.int64)},
            ["case 'bad.npz'", "'seq'"],
        ),
        (
            {
                "input_ids": np.zeros((2, 4, 1), np.int64),
                "attention_mask": np.ones((2, 4), np.int64),
            },
            ["case 'bad.npz'", "rank 3 != 2"],
        ),
    ],
)
def test_real_inputs_that_do_not_fit_the_model_are_refused_before_any_work(
    masked_file: Path, tmp_path: Path, arrays: dict, needles: list[str]
) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    result = run_cli(
        "parity",
        "--onnx",
        str(masked_file),
        "--trust-metadata",
        "--backends",
        "cpu",
        "--data",
        str(tmp_path / "bad.npz"),
    )
    assert_one_line_error(result, *needles)


def test_a_data_path_that_holds_no_case_is_refused(masked_file: Path, tmp_path: Path) -> None:
    for path, needle in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "holds no .npz file"),
        (masked_file, "is not a .npz file or a folder of them"),
    ):
        result = run_cli(
            "parity",
            "--onnx",
            str(masked_file),
            "--trust-metadata",
            "--backends",
            "cpu",
            "--data",
            str(path),
        )
        assert_one_line_error(result, needle)


def test_a_model_that_fails_on_generated_ids_says_nnkit_generated_them(
    models_file: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "export",
        f"{models_file}:Emb",
        "-o",
        str(tmp_path / "e.onnx"),
        "--input",
        "ids:batch=2x3:int64",
    )
    assert_one_line_error(
        result,
        "IndexError: index out of range",
        "nnkit generated the integer inputs (ids: int64 in [0,9] (the default",
        "--input ids:batch=2x3:int64[0,N)",
    )
    assert not (tmp_path / "e.onnx").exists()
    report = run_parity(
        [f"{models_file}:Emb"],
        inputs=[parse_spec("ids:batch=2x3:int64[0,5)")],
        exporters=["torchscript"],
        backends=["cpu"],
    )
    assert report, report.results


def test_outputs_keep_their_names_and_a_cache_object_is_refused_or_ignored(
    models_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.onnx"
    ref = f"{models_file}:WithCache"
    result = run_cli("export", ref, "-o", str(out), "--input", "x:batch=2x3")
    assert_one_line_error(
        result, "returns a Cache as output 'cache'", "--ignore-output cache", "use_cache=False"
    )
    result = run_cli(
        "export", ref, "-o", str(out), "--input", "x:batch=2x3", "--ignore-output", "nope"
    )
    assert_one_line_error(
        result, "no output 'nope' to ignore; its outputs are 'y', 'pair.*', 'cache'"
    )
    result = run_cli(
        "export",
        ref,
        "-o",
        str(out),
        "--input",
        "x:batch=2x3",
        "--ignore-output",
        "cache",
        "--exporter",
        "torchscript",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(run_cli("check", str(out), "--json").stdout)["summary"]
    assert [o["name"] for o in summary["outputs"]] == ["y", "pair.0", "pair.1"]
    report = run_parity(
        [ref],
        inputs=[parse_spec("x:batch=2x3")],
        onnx=out,
        backends=["cpu"],
        ignore_outputs=["cache"],
    )
    assert report, report.results
    assert [o.name for o in report.results[0].outputs] == ["y", "pair.0", "pair.1"]
    cli = run_cli(
        "parity",
        ref,
        "--onnx",
        str(out),
        "--input",
        "x:batch=2x3",
        "--backends",
        "cpu",
        "--ignore-output",
        "cache",
    )
    assert cli.exit_code == 0, cli.stderr
    # A file's output that the check ignores is not compared.
    report = run_parity(
        [ref],
        inputs=[parse_spec("x:batch=2x3")],
        onnx=out,
        backends=["cpu"],
        ignore_outputs=["cache", "pair"],
    )
    assert report, report.results
    assert [o.name for o in report.results[0].outputs] == ["y"]
