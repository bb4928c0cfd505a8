"""The zoo on this machine: torch eager vs every runtime, p50 latency and speed-up.

Each zoo model is exported once (dynamo) and timed with nnkit's protocol
(:mod:`nnkit.bench`) on torch eager and every runtime that runs here, at batch 1 and
64; the ONNX reference evaluator (pure Python, slow) at batch 1 only. Prints Markdown
for the README: the date, CPU, versions and settings, then p50 per cell with the
speed-up over torch eager, then achieved GFLOP/s at batch 64 beside the machine's peak.

    .venv/bin/python scripts/bench_zoo.py [--seconds 1.0] [--models lstm,gru] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from nnkit import __version__, bench, bench_report
from nnkit.backends import probe
from nnkit.machine import machine_info
from nnkit.models import ZOO

BATCHES = (1, 64)
#: Backends timed at batch 1 only (too slow for batch 64 in a few minutes).
BATCH1_ONLY = ("reference",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="budget per cell")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--exporter", default="dynamo")
    args = parser.parse_args()

    background = busy_cores()
    runtimes = bench.default_backends(with_torch=False)
    columns = ["torch", *runtimes]
    settings = {"warmup": args.warmup, "seconds": args.seconds, "seed": 0}
    results: dict[tuple[str, str, int], bench.BenchResult] = {}
    for name in args.models.split(","):
        print(f"  {name} ...", file=sys.stderr, flush=True)
        common = dict(exporter=args.exporter, threads=args.threads, **settings)
        big = [n for n in columns if n not in BATCH1_ONLY]
        small = [n for n in columns if n in BATCH1_ONLY]
        reports = [bench.bench_model(name, backends=big, batches=BATCHES, **common)]
        if small:
            reports.append(bench.bench_model(name, backends=small, batches=[1], **common))
        rows = [r for report in reports for r in report.results]
        bench.speedups(rows)  # the reference's, at batch 1, against torch's from the first run
        results.update({(name, r.backend, r.batch): r for r in rows})

    machine = machine_info()
    versions = {n: probe(n).version for n in ["torch", *runtimes]}
    import onnx

    print(f"nnkit {__version__} bench of the zoo, {dt.date.today().isoformat()}")
    print()
    print(
        f"- machine: {machine.cpu} ({machine.architecture}), {machine.physical_cores} physical "
        f"cores, {', '.join(machine.vector_extensions)}; {machine.os}, Python {machine.python}"
    )
    print(f"- peak (estimate): {machine.peak_text()}")
    if background is not None:
        print(f"- other load before the run: {background:.1f} of {machine.logical_cores} CPUs busy")
    print(
        "- versions: "
        + ", ".join(
            f"{_runtime_name(n)} {versions[n]}" for n in versions if n not in ("cuda", "tensorrt")
        )
        + f", onnx {onnx.__version__}"
    )
    threads = args.threads or "each runtime's default"
    print(
        f"- protocol: {args.exporter} export; per cell the first run apart, warm-up "
        f"{args.warmup} runs, then timed runs for {args.seconds} s; p50 in ms and speed-up "
        f"over torch eager; threads: {threads}; "
        f"reference at batch 1 only"
    )
    print()
    header = ["model", "batch", *[f"{c} p50 ms" for c in columns]]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---", "---:", *["---:"] * len(columns)]) + "|")
    errors = []
    for name in args.models.split(","):
        for batch in BATCHES:
            cells = []
            for c in columns:
                r = results.get((name, c, batch))
                if r is None:
                    cells.append("")
                elif not r.ok:
                    cells.append("error")
                    errors.append(f"{name} on {c} at batch {batch}: {r.error}")
                elif c == "torch" or r.speedup_vs_torch is None:
                    cells.append(bench_report.fmt_ms(r.p50_ms))
                else:
                    cells.append(f"{bench_report.fmt_ms(r.p50_ms)} ({r.speedup_vs_torch:.2f}x)")
            print("| " + " | ".join([name, str(batch), *cells]) + " |")
    print()
    print(f"Achieved GFLOP/s at batch {BATCHES[-1]} (p50), beside the peak estimate above:")
    print()
    print(
        "| model | MFLOP/sample | " + " | ".join(c for c in columns if c not in BATCH1_ONLY) + " |"
    )
    print("|---|---:|" + "|".join("---:" for c in columns if c not in BATCH1_ONLY) + "|")
    for name in args.models.split(","):
        row = [results.get((name, c, BATCHES[-1])) for c in columns if c not in BATCH1_ONLY]
        flops = next((r.flops for r in row if r and r.flops), None)
        if not flops:
            continue
        cells = [f"{r.gflops:.1f}" if r and r.gflops else "-" for r in row]
        print(f"| {name} | {flops / BATCHES[-1] / 1e6:.3g} | " + " | ".join(cells) + " |")
    for line in errors:
        print(f"\n- error: {line}")
    return 0


def busy_cores(seconds: float = 1.0) -> float | None:
    """CPUs kept busy by other processes, from /proc/stat over ``seconds`` (Linux only)."""
    import time

    def sample() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[0] == first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    import os

    return (total - idle) / total * (os.cpu_count() or 1)


def _runtime_name(backend: str) -> str:
    return {"cpu": "onnxruntime", "reference": "onnx reference"}.get(backend, backend)


if __name__ == "__main__":
    raise SystemExit(main())
