"""The manifest: models with inputs, cases, tolerances and rules of their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnkit.matrix.config import ConfigError, load_config
from tests.conftest import assert_one_line_error, run_cli

NETS = """\
import torch
from torch import nn

class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)

    def forward(self, ids, scale):
        return {"vec": self.emb(ids).sum(1) * scale, "ids": ids * 2}
"""

MANIFEST = """\
[parity]
backends = ["cpu"]
exporters = ["torchscript"]

[[model]]
ref = "nets/pair.py:Pair"
inputs = ["ids:batch=2x3:int64[0,5)", "scale:batch=2x4:float32[0.5,2]"]
compare = { ids = "exact" }
cases = ["batch=3"]

[[model]]
ref = "relu"
atol = 1e-4
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "pair.py").write_text(NETS)
    (tmp_path / "nnkit.toml").write_text(MANIFEST)
    return tmp_path


def test_a_manifest_runs_each_model_with_its_own_settings(project, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path.parent)  # paths are relative to the manifest, not here
    report = tmp_path / "r.json"
    result = run_cli("parity", "--config", str(project / "nnkit.toml"), "--json", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["request"]["models"] == ["nets/pair.py:Pair", "relu"]
    assert [c["name"] for c in data["cases"]["nets/pair.py:Pair"]][-1] == "batch=3"
    pair = [r for r in data["results"] if r["model"] == "nets/pair.py:Pair"]
    modes = {o["name"]: o["mode"] for r in pair for o in r["outputs"]}
    assert modes == {"vec": "allclose", "ids": "exact"}
    relu = [o for r in data["results"] if r["model"] == "relu" for o in r["outputs"]]
    assert {o["atol"] for o in relu} == {1e-4}  # explicit, absolute


def test_models_on_the_command_line_pick_from_the_manifest(project) -> None:
    result = run_cli("parity", "--config", str(project / "nnkit.toml"), "relu")
    assert result.exit_code == 0, result.output
    assert "PASS: 3 results" in result.stdout and "Pair" not in result.stdout
    assert_one_line_error(
        run_cli("parity", "--config", str(project / "nnkit.toml"), "nope"),
        "has no model 'nope'",
        "nets/pair.py:Pair, relu",
    )


def test_command_line_settings_override_the_run_and_refuse_model_settings(project) -> None:
    result = run_cli(
        "parity", "--config", str(project / "nnkit.toml"), "relu", "--backends", "reference"
    )
    assert result.exit_code == 0 and "reference" in result.stdout
    assert_one_line_error(
        run_cli("parity", "--config", str(project / "nnkit.toml"), "--atol", "1"),
        "--atol is a model's setting",
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[model]]\nref = 'relu'\nbogus = 1\n", "unknown key 'bogus'"),
        ("[[model]]\ninputs = ['x:2']\n", "has no ref"),
        ("[parity]\nbackends = 'cpu'\n[[model]]\nref = 'relu'\n", "backends must be a list"),
        ("[parity]\nstrict = 1\n[[model]]\nref = 'relu'\n", "strict must be a bool"),
        ("[parity]\nbackends = ['cpu']\n", "names no model"),
        ("[[model]]\nref = 'relu'\n[[model]]\nref = 'relu'\n", "names a model twice"),
        ("[models]\n", "unknown table 'models'"),
        ("[[model]\nref = 1", "is not valid TOML"),
    ],
)
def test_a_bad_manifest_is_one_line_exit_2(tmp_path, text, needle) -> None:
    path = tmp_path / "nnkit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)
    assert_one_line_error(run_cli("parity", "--config", str(path)), needle)


def test_a_missing_manifest(tmp_path) -> None:
    assert_one_line_error(
        run_cli("parity", "--config", str(tmp_path / "no.toml")), "does not exist"
    )
