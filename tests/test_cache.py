"""The export cache: a hit only when nothing the export depends on changed; a damaged
entry is never used; entries filled by two processes at once stay whole."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnkit.cache import ExportCache, key_of, key_parts
from nnkit.spec import parse_spec
from nnkit.steps import ModelRequest, forget_models
from tests.conftest import assert_one_line_error, run_cli

NET = """\
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cachehelper import scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        w = np.load(Path(__file__).with_name("w.npy"))
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w))

    def forward(self, x):
        return scale(self.fc(x))
"""


@pytest.fixture
def net(tmp_path: Path) -> Path:
    """A model file outside the zoo: its weights in w.npy, a helper module beside it."""
    (tmp_path / "cachehelper.py").write_text("def scale(y):\n    return y * 2\n")
    np.save(tmp_path / "w.npy", np.arange(12, dtype=np.float32).reshape(3, 4) / 10)
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def _parts(net: Path, **options: Any) -> dict[str, Any]:
    """The key's parts, the model built afresh (as a new worker would)."""
    forget_models()
    sys.modules.pop("cachehelper", None)
    try:
        request = ModelRequest(f"{net}:Net", (parse_spec("x:batch=2x4"),))
        return key_parts(request, **{"exporter": "torchscript", **options})
    finally:
        forget_models()
        sys.modules.pop("cachehelper", None)


def test_every_part_of_the_key_is_a_miss_when_it_changes(net: Path) -> None:
    base = _parts(net)
    assert _parts(net) == base and key_of(_parts(net)) == key_of(base)

    def changed(parts: dict[str, Any]) -> set[str]:
        assert key_of(parts) != key_of(base)
        return {k for k in base if parts[k] != base[k]}

    assert changed(_parts(net, exporter="dynamo")) == {"options"}
    assert changed(_parts(net, opset=17)) == {"options"}
    w = np.load(net.with_name("w.npy"))
    w[0, 0] += 1e-6  # one weight, a little
    np.save(net.with_name("w.npy"), w)
    assert changed(_parts(net)) == {"weights"}
    base = _parts(net)
    net.write_text(NET + "\n# a comment is a change too\n")
    assert changed(_parts(net)) == {"code"}
    base = _parts(net)
    net.with_name("cachehelper.py").write_text("def scale(y):\n    return y * 3\n")
    assert changed(_parts(net)) == {"code"}  # a module the model imports from its folder
    forget_models()
    other = key_parts(
        ModelRequest(f"{net}:Net", (parse_spec("x:batch=3x4"),)), exporter="torchscript"
    )
    sys.modules.pop("cachehelper", None)
    assert key_of(other) != key_of(_parts(net))  # input specs
    assert set(base["versions"]) == {"nnkit", "python", "torch", "onnx", "onnxscript"}


def _parity(
    net: Path, cache: Path | None, out: Path, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    where = ("--cache", str(cache)) if cache else ()
    result = run_cli(
        "parity", f"{net}:Net", "--input", "x:batch=2x4", "--exporters", "torchscript",
        "--backends", "cpu", *where, "--json", str(out), *extra, env=env,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert result.exit_code == data["exit_code"], result.stderr
    return data


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "exports").glob("*/*") if p.is_dir())


def test_a_second_run_hits_and_an_edited_weight_misses(net: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _parity(net, cache, tmp_path / "a.json")
    second = _parity(net, cache, tmp_path / "b.json")
    assert [e["cached"] for e in first["exports"]] == [False]
    assert [e["cached"] for e in second["exports"]] == [True]
    assert first["verdict"] == second["verdict"] == "pass"
    assert [r["outputs"] for r in first["results"]] == [r["outputs"] for r in second["results"]]
    w = np.load(net.with_name("w.npy"))
    np.save(net.with_name("w.npy"), w * 1.5)
    third = _parity(net, cache, tmp_path / "c.json")
    assert [e["cached"] for e in third["exports"]] == [False] and third["verdict"] == "pass"
    assert len(_entries(cache)) == 2
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    for name in ("d", "e"):  # neither read nor filled
        none = _parity(net, None, tmp_path / f"{name}.json", "--no-cache", env=xdg)
        assert [e["cached"] for e in none["exports"]] == [False]
    assert not (tmp_path / "xdg" / "nnkit").exists()


def test_a_tampered_entry_is_never_used(net: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _parity(net, cache, tmp_path / "a.json")
    (entry,) = _entries(cache)
    onnx_file = entry / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-7] + b"planted")
    again = _parity(net, cache, tmp_path / "b.json")
    (record,) = again["exports"]
    assert record["cached"] is False and again["verdict"] == "pass"
    assert any("was not used" in n and "sha256" in n for n in record["notes"]), record["notes"]
    assert [e["cached"] for e in _parity(net, cache, tmp_path / "c.json")["exports"]] == [True]


def test_a_wrong_file_planted_with_a_matching_hash_still_fails_parity(
    net: Path, tmp_path: Path, zoo_file: Callable[[str, str], Path]
) -> None:
    """The cache saves the export, never the judgement: a file that is not the model
    (here planted with its hash recorded) is compared with PyTorch like any other."""
    import hashlib

    cache = tmp_path / "cache"
    _parity(net, cache, tmp_path / "a.json")
    (entry,) = _entries(cache)
    planted = zoo_file("linear", "torchscript").read_bytes()  # another model: x:batch=2x10
    (entry / "model.onnx").write_bytes(planted)
    meta = json.loads((entry / "entry.json").read_text())
    meta["sha256"] = hashlib.sha256(planted).hexdigest()
    (entry / "entry.json").write_text(json.dumps(meta))
    data = _parity(net, cache, tmp_path / "b.json")
    assert data["exports"][0]["cached"] is True
    assert data["verdict"] == "fail" and data["exit_code"] == 1


def test_the_default_cache_is_under_xdg_cache_home(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    args = ("parity", "relu", "--exporters", "torchscript", "--backends", "cpu", "--json", str(out))
    assert run_cli(*args, env=env).exit_code == 0
    assert len(_entries(tmp_path / "xdg" / "nnkit")) == 1
    assert run_cli(*args, env=env).exit_code == 0
    assert json.loads(out.read_text())["exports"][0]["cached"] is True


def test_cache_and_no_cache_together_are_refused(tmp_path: Path) -> None:
    result = run_cli("parity", "relu", "--cache", str(tmp_path), "--no-cache")
    assert_one_line_error(result, "--cache", "--no-cache")


FILLER = """\
import sys, time
from pathlib import Path
from nnkit.cache import ExportCache
cache, source, start = ExportCache(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(40):
    key = f"{i:064x}"
    note = cache.store(key, {"i": i}, source, [f"note {i}"], 0.5)
    assert note == "", note
    entry, damaged = cache.fetch(key, Path(sys.argv[4]))
    assert entry is not None and not damaged and entry.notes == [f"note {i}"], damaged
print("ok")
"""


def test_two_processes_filling_the_same_entries_at_once(tmp_path: Path) -> None:
    import time

    source = tmp_path / "model.onnx"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: a copy takes a moment
    start = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(FILLER),
                str(tmp_path / "cache"),
                str(source),
                start,
                str(tmp_path / f"out{n}.onnx"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    cache = ExportCache(tmp_path / "cache")
    assert len(_entries(tmp_path / "cache")) == 40
    assert not [p for p in (tmp_path / "cache" / "exports").iterdir() if p.name.startswith(".")]
    entry, _ = cache.fetch(f"{7:064x}", tmp_path / "again.onnx")
    assert entry is not None and (tmp_path / "again.onnx").read_bytes() == source.read_bytes()


def test_a_cached_file_names_its_model_file_from_where_it_now_lives(
    net: Path, tmp_path: Path
) -> None:
    """The entry was exported for another folder: ``nnkit.model_file`` is stamped again,
    relative to the new artifact, so ``--onnx`` checks of it find the model's source."""
    import onnx

    cache = tmp_path / "cache"
    first = tmp_path / "a"
    second = tmp_path / "deeper" / "b"
    _parity(net, cache, tmp_path / "a.json", "--artifacts", str(first))
    data = _parity(net, cache, tmp_path / "b.json", "--artifacts", str(second))
    (record,) = data["exports"]
    assert record["cached"] is True
    meta = {p.key: p.value for p in onnx.load(record["path"]).metadata_props}
    assert (Path(record["path"]).parent / meta["nnkit.model_file"]).resolve() == net.resolve()
    assert meta["nnkit.model_file"].startswith("../../")
