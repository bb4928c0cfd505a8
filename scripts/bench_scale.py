"""The zoo's parity matrix at scale: the export cache cold and warm, --list, --jobs, and
three shards merged against the unsharded run.

Every row is a real ``nnkit parity`` process (what ``make parity`` runs: the JSON,
Markdown and JUnit reports written), timed from outside by its wall clock, with a cache
folder of its own (removed afterwards): cold is the first run (every model exported and
stored), warm the same command again. The shards run one after another here (in CI they
run side by side on separate runners: the slowest shard is the wall time). The merged
report is checked to equal the unsharded one, timings aside. Prints a Markdown table
for the README, with the machine's load (other processes share its cores): a warm
row is the best of ``--repeat`` runs, since other processes only ever add time.

    .venv/bin/python scripts/bench_scale.py [--models linear,lstm] [--jobs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_zoo import busy_cores

from nnkit.matrix.merge import comparable

NNKIT = [sys.executable, "-m", "nnkit"]


def best(args: list[str], repeat: int, **kwargs: Any) -> float:
    """The fastest of ``repeat`` runs (other processes only ever add time)."""
    return min(timed(args, **kwargs) for _ in range(repeat))


def timed(args: list[str], *, expect: tuple[int, ...] = (0, 1)) -> float:
    """Seconds ``nnkit ARGS`` took (its output is dropped; a refusal stops the bench)."""
    start = time.perf_counter()
    done = subprocess.run(
        [*NNKIT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    seconds = time.perf_counter() - start
    if done.returncode not in expect:
        sys.exit(f"nnkit {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated (default: the zoo)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the parallel row")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs: the best of N")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    background = busy_cores()
    work = Path(tempfile.mkdtemp(prefix="nnkit-bench-scale-"))
    try:
        cache = ["--cache", str(work / "cache")]

        def parity(name: str, *extra: str) -> list[str]:
            # One artifacts folder for every run: the reports name the same files.
            out = work / name
            out.mkdir(exist_ok=True)
            return [
                "parity",
                *models,
                "--artifacts",
                str(work / "onnx"),
                "--json",
                str(out / "parity.json"),
                "--markdown",
                str(out / "parity.md"),
                "--junit",
                str(out / "parity.xml"),
                *extra,
            ]

        rows: list[tuple[str, float, str]] = []
        n = args.repeat
        listing = best(["parity", *models, "--list"], n, expect=(0,))
        rows.append(("`nnkit parity --list`", listing, "nothing exported or run; no torch"))
        uncached = timed(parity("nocache", "--no-cache"))
        rows.append(("parity, `--no-cache`", uncached, "every model exported"))
        cold = timed(parity("cold", *cache))
        rows.append(("parity, cache cold", cold, "exported and stored"))
        warm = best(parity("warm", *cache), n)
        rows.append(("parity, cache warm", warm, f"{uncached / warm:.1f}x faster than no cache"))
        jobs = best(parity("jobs", *cache, "--jobs", str(args.jobs)), n)
        rows.append((f"parity, cache warm, `--jobs {args.jobs}`", jobs, ""))
        shards = []
        for i in (1, 2, 3):
            shards.append(best(parity(f"s{i}", *cache, "--shard", f"{i}/3"), n))
        rows.append(
            (
                "3 shards, cache warm: slowest",
                max(shards),
                "one after another: " + " + ".join(f"{s:.1f}" for s in shards),
            )
        )
        merged = work / "merged.json"
        files = [str(work / f"s{i}" / "parity.json") for i in (1, 2, 3)]
        merge = timed(["report", "merge", *files, "--json", str(merged)])
        whole = comparable(json.loads((work / "warm" / "parity.json").read_text()))
        parts = comparable(json.loads(merged.read_text()))
        differ = [key for key in whole if whole[key] != parts.get(key)]
        same = not differ
        if differ:
            print(f"the merged report differs in {', '.join(differ)}", file=sys.stderr)
            for key in differ:
                print(
                    f"  {key}: {whole[key]!r:.300}\n  vs {parts.get(key)!r:.300}", file=sys.stderr
                )
        rows.append(
            (
                "`nnkit report merge` (3 shards)",
                merge,
                "identical to the unsharded report" if same else "DIFFERS from unsharded",
            )
        )
        cells = len(json.loads(merged.read_text())["cells"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import platform

    from nnkit import __version__

    print(
        f"nnkit {__version__}, {dt.date.today().isoformat()}: "
        f"{'the zoo' if not models else ', '.join(models)}, {cells} cells, "
        f"{os.cpu_count()} CPUs ({platform.machine()})"
        + (f", {background:.1f} of them busy with other work at the start" if background else "")
    )
    after = busy_cores()
    if after is not None:
        print(f"{after:.1f} CPUs busy with other work at the end; warm rows: best of {args.repeat}")
    print()
    print("| run | wall s | |")
    print("|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.1f} | {note} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
