"""Shared fixtures: the CLI runners and the zoo's ONNX files, exported once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nnkit.cli import cli


@pytest.fixture(autouse=True, scope="session")
def _export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """nnkit parity caches exports under $XDG_CACHE_HOME/nnkit: the tests use a cache of
    their own (shared by the session), never the user's. A test of the cache itself gives
    --cache a folder of its own."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``nnkit ARGS`` in-process; stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def run_nnkit(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m nnkit ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "nnkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        **kwargs,
    )


def unavailable(backend: str) -> str:
    """The probe's reason why ``backend`` cannot run here; skips the test where it runs.

    For tests of the failure path (``--backends cuda`` refused): it is tested wherever the
    backend is missing, and skipped, saying so, on a machine where it works.
    """
    from nnkit.backends import probe

    result = probe(backend)
    if result:
        pytest.skip(
            f"{backend} runs here ({result.version}): its failure path needs a machine without it"
        )
    assert result.reason
    return result.reason


def assert_one_line_error(result: Result | subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, one line on stderr (no traceback) that contains every needle."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    err = result.stderr.strip()
    assert code == 2, f"exit {code}, stderr: {err!r}"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.fixture(scope="session")
def zoo_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``zoo_file(name, exporter)``: the zoo model exported once per session, read-only."""
    from nnkit.export import export_model
    from nnkit.resolve import resolve_model

    folder = tmp_path_factory.mktemp("zoo")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, exporter: str = "dynamo") -> Path:
        key = (name, exporter)
        if key not in cache:
            path = folder / f"{name}.{exporter}.onnx"
            export_model(resolve_model(name), path, exporter=exporter)
            path.chmod(0o444)
            cache[key] = path
        return cache[key]

    return get


@pytest.fixture
def user_model_file(tmp_path: Path) -> Path:
    """A model defined outside the zoo, in a file of its own."""
    path = tmp_path / "user_net.py"
    path.write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class TwoLayer(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(1)\n"
        "        self.a = nn.Linear(6, 8)\n"
        "        self.b = nn.Linear(8, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.b(torch.tanh(self.a(x)))\n\n"
        "def make():\n"
        "    return TwoLayer()\n\n"
        "class NeedsArgs(nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(width, width)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n\n"
        "NOT_A_MODEL = 3\n"
    )
    return path


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real full disk (needs root and mount; skipped without them)."""
    from tests._hostile import small_disk

    with small_disk(tmp_path / "small") as folder:
        if folder is None:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        yield folder
