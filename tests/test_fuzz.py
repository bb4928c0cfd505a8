"""Fuzz: mutated model files through `nnkit check` and `nnkit infer`.

A valid file's bytes are mutated at seeded random places (flipped bytes, cuts, inserted
junk, zeroed runs). Every case must end as a verdict or one clear line: exit 0, 1 or 2,
no traceback, no internal error, no signal death, no hang. The cases run in worker
subprocesses, so a runtime that crashes the interpreter fails the test (and names the
case) instead of taking pytest down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CASES = 240
WORKERS = 4
SEED = 20261128

WORKER = r"""
import json, sys
from click.testing import CliRunner
from nnkit.cli import cli

runner = CliRunner()
for path in sys.argv[1:]:
    print(json.dumps({"start": path}), flush=True)
    for args in (["check", path], ["infer", path, "--provider", "cpu"]):
        r = runner.invoke(cli, args)
        print(json.dumps({"path": path, "cmd": args[0], "code": r.exit_code,
                          "stderr": r.stderr, "exception": repr(r.exception)
                          if r.exception and not isinstance(r.exception, SystemExit) else None}),
              flush=True)
"""


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # flip a few bytes
        for pos in rng.integers(0, len(buf), size=rng.integers(1, 9)):
            buf[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # cut short
        del buf[int(rng.integers(1, len(buf))) :]
    elif kind == 2:  # insert junk
        pos = int(rng.integers(0, len(buf)))
        buf[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # zero a run
        pos = int(rng.integers(0, len(buf)))
        buf[pos : pos + int(rng.integers(1, 128))] = bytes(min(len(buf) - pos, 128))
    return bytes(buf)


@pytest.fixture(scope="module")
def mutated_files(zoo_file, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(SEED)
    sources = [
        zoo_file("conv2d", "dynamo").read_bytes(),
        zoo_file("lstm", "torchscript").read_bytes(),
    ]
    files = []
    for i in range(CASES):
        path = folder / f"case{i:03d}.onnx"
        path.write_bytes(_mutate(sources[i % len(sources)], rng))
        files.append(path)
    return files


def test_mutated_models_never_crash_hang_or_trace(mutated_files):
    chunks = [mutated_files[i::WORKERS] for i in range(WORKERS)]
    results = []
    for chunk in chunks:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", WORKER, *map(str, chunk)],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired as e:
            started = [
                json.loads(ln)["start"]
                for ln in (e.stdout or b"").decode().splitlines()
                if '"start"' in ln
            ]
            pytest.fail(f"hang: a worker ran past 300 s, last case started: {started[-1:]}")
        lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0:
            started = [ln["start"] for ln in lines if "start" in ln]
            pytest.fail(
                f"worker died with {proc.returncode} on {started[-1:]}: {proc.stderr[-2000:]}"
            )
        results += [ln for ln in lines if "cmd" in ln]

    assert len(results) == 2 * len(mutated_files)
    bad = [
        r
        for r in results
        if r["code"] not in (0, 1, 2)
        or r["exception"]
        or "Traceback" in r["stderr"]
        or "internal error" in r["stderr"]
        or len(r["stderr"].strip().splitlines()) > 1
    ]
    assert not bad, json.dumps(bad[:5], indent=1)
    # The fuzzer must reach past the parser, or it tests nothing.
    codes = {(r["cmd"], r["code"]) for r in results}
    assert {("check", 0), ("check", 1), ("check", 2), ("infer", 0), ("infer", 2)} <= codes
