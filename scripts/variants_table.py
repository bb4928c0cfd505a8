"""Which variant to ship on which runtime: accuracy (nnkit parity) and speed (nnkit bench).

The model is exported once (dynamo); that one file and each of its rewrites
(:mod:`nnkit.rewrites`) are checked against PyTorch on every CPU runtime here
(``nnkit parity --onnx FILE --variants ...``: the verdict by each variant's budget, the
worst cosine and top-1 agreement over the cases) and timed by nnkit's protocol
(``nnkit bench FILE --variants ...``: p50 at one batch, the speed-up over the base file
on the same runtime in the same run). Prints Markdown for the README: one row per
variant x runtime.

    .venv/bin/python scripts/variants_table.py [--model combinednn] [--batch 8] [--seconds 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from nnkit import __version__, bench
from nnkit.compare.text import fmt_cosine
from nnkit.export import export_reference
from nnkit.machine import machine_info
from nnkit.matrix.plan import ParityRequest
from nnkit.parity import run
from nnkit.render import human_bytes
from nnkit.rewrites import VARIANTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="combinednn")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per cell")
    parser.add_argument("--backends", default=",".join(bench.default_backends(with_torch=False)))
    args = parser.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="nnkit-variants-table-") as tmp:
        base = Path(tmp) / f"{args.model}.onnx"
        print(f"  exporting {args.model} ...", file=sys.stderr, flush=True)
        export_reference(args.model, base)
        print("  parity ...", file=sys.stderr, flush=True)
        request = ParityRequest.from_options(
            [args.model], onnx=base, backends=backends, variants=list(VARIANTS)
        )
        report = run(request)
        print("  bench ...", file=sys.stderr, flush=True)
        timed = bench.bench_file(
            base,
            backends=backends,
            batches=[args.batch],
            seconds=args.seconds,
            variants=list(VARIANTS),
        )
    cells = {(c.artifact, c.backend): c for c in report.cells()}
    sizes = {e.variant: e.size_bytes for e in report.exports}
    speed = {(r.variant, r.backend): r for r in timed.results}
    machine = machine_info()
    print(
        f"nnkit {__version__}; {machine.cpu}, {machine.physical_cores} cores; "
        f"p50 at batch {args.batch}, {args.seconds} s per cell\n"
    )
    print(
        "| variant | runtime | verdict | min cosine | min top-1 | p50 ms | speed-up vs base "
        "| size |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        artifact = "file" if variant == "base" else f"file+{variant}"
        for backend in backends:
            cell = cells.get((artifact, backend))
            outputs = (
                [o for r in cell.results for o in r.outputs if o.compared]
                if cell is not None
                else []
            )
            cosine = min((o.cosine for o in outputs), default=None)
            top1 = min((o.top1 for o in outputs if o.top1 is not None), default=None)
            r = speed.get((variant, backend))
            ms = f"{r.p50_ms:.3f}" if r and r.ok and r.p50_ms else "error"
            gain = f"{r.speedup_vs_base:.2f}x" if r and r.speedup_vs_base else "-"
            print(
                f"| {variant} | {backend} | {'-' if cell is None else cell.status} "
                f"| {'-' if cosine is None else fmt_cosine(cosine)} "
                f"| {'-' if top1 is None else f'{top1:.2f}'} | {ms} | {gain} "
                f"| {human_bytes(sizes.get(variant, 0))} |"
            )
    for w in timed.warnings:
        print(f"\nwarning: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
