"""End to end on real architectures: tiny transformers models, built from configs.

No weights are downloaded: each model is built from a config with random weights, under
nnkit's fixed seed. The models are called as they are written (inputs by name, outputs
by their keys), through the CLI with nothing but a factory function, and through the
Python API as objects.

Found on torch 2.13 / transformers 5.23 (both asserted below, so a change shows): the
dynamo export of BERT differs from PyTorch on a fully padded sequence (PyTorch's
attention gives zeros where every key is masked, the export does not), which only masks
in {0,1} reveal; the torchscript export matches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the test-models extra is not installed")

import torch

from nnkit.errors import SpecError
from nnkit.parity import ShapeCase
from nnkit.spec import parse_spec
from nnkit.testing import assert_parity

pytestmark = pytest.mark.slow

FACTORIES = """
from transformers import BertConfig, BertModel


def bert():
    return BertModel(
        BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=37,
        )
    )
"""

IDS = "input_ids:batch=2xseq=16:int64[0,100)"
MASK = "attention_mask:batch=2xseq=16:int64{0,1}"


def test_bert_from_a_factory_through_the_cli_named_inputs_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "tiny_hf.py").write_text(FACTORIES)
    nnkit = Path(sys.executable).parent / "nnkit"
    report_file = tmp_path / "report.json"
    result = subprocess.run(
        [
            str(nnkit),
            "parity",
            "tiny_hf:bert",
            "--input",
            IDS,
            "--input",
            MASK,
            "--backends",
            "cpu",
            "--json",
            str(report_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(report_file.read_text())
    assert report["exports"] and all(not e["error"] for e in report["exports"])
    for r in report["results"]:
        assert [o["name"] for o in r["outputs"]] == ["last_hidden_state", "pooler_output"]
    specs = [parse_spec(IDS), parse_spec(MASK)]
    padded = {
        c["name"]: bool(
            (ShapeCase(c["name"], c["sizes"], c["seed"]).inputs(specs)["attention_mask"] == 0)
            .all(axis=1)
            .any()
        )
        for c in report["cases"]["tiny_hf:bert"]
    }
    assert any(padded.values())  # the {0,1} masks pad a whole sequence somewhere
    statuses = {(r["exporter"], r["case"]): r["status"] for r in report["results"]}
    for case, is_padded in padded.items():
        assert statuses["torchscript", case] == "pass"
        assert statuses["dynamo", case] == ("mismatch" if is_padded else "pass")
    assert result.returncode == 1


def test_gpt2_as_an_object_with_example_inputs_its_cache_left_out() -> None:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(
        vocab_size=100,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = GPT2Model(config)
    ids = torch.randint(0, 100, (2, 16))
    examples = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    dynamic = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    with pytest.raises(SpecError, match=r"returns a DynamicCache as output 'past_key_values'"):
        assert_parity(model, example_inputs=examples, dynamic=dynamic, backends=["cpu"])
    report = assert_parity(
        model,
        example_inputs=examples,
        dynamic=dynamic,
        ignore_outputs=["past_key_values"],
        exporters=["dynamo"],
        backends=["cpu"],
    )
    assert [c.name for c in report.cases["GPT2Model"]] == [
        "batch=2,seq=16",
        "batch=1,seq=1",
        "batch=5,seq=31",
        "example",
    ]
    assert {o.name for r in report.results for o in r.outputs} == {"last_hidden_state"}
    assert all(np.isfinite(o.max_abs_diff) for r in report.results for o in r.outputs)
