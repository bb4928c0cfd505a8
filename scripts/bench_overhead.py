"""What nnkit's harness costs: its onnxruntime p50 beside a bare ``session.run`` loop.

For each model (exported once with dynamo) and batch: nnkit's ``cpu`` backend timed by
:func:`nnkit.timing.measure`, and the tightest loop a user can write around
``session.run(names, feeds)`` (output names fetched once: ``session.run(None, feeds)``
looks them up on every call, which costs more than nnkit's whole call path), on the
same file, the same input and the same onnxruntime session (the backend's own, so
session-to-session variance drops out). The two alternate in rounds so drift hits both alike; both run
with Python's garbage collector off, so the difference is nnkit's call path only. The
target is nnkit's p50 within 3 % of the bare loop's. Printed, never asserted.

    .venv/bin/python scripts/bench_overhead.py [--rounds 10] [--iterations 300]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np

from nnkit.backends.onnxruntime import CPUBackend
from nnkit.export import export_reference
from nnkit.fsutil import temporary_folder
from nnkit.inputs import generate
from nnkit.models import ZOO
from nnkit.onnxfile import read_io
from nnkit.shapes import batch_shapes
from nnkit.spec import example_sizes
from nnkit.timing import measure, percentile

#: (model, batch) pairs: a sub-10-microsecond model, a mid-size one, and a large batch.
CASES = (("linear", 1), ("conv2d", 1), ("combinednn", 1), ("combinednn", 64), ("lstm", 1))
TARGET = 0.03


def bare_loop(session, feeds, iterations: int) -> list[int]:
    """The tightest loop around ``session.run``: nothing else timed."""
    names = [o.name for o in session.get_outputs()]
    run, clock = session.run, time.perf_counter_ns
    samples = []
    for _ in range(iterations):
        t0 = clock()
        run(names, feeds)
        samples.append(clock() - t0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=300, help="timed runs per round")
    args = parser.parse_args()

    rows = []
    for name, batch in CASES:
        print(f"  {name} batch {batch} ...", file=sys.stderr, flush=True)
        with temporary_folder("nnkit-overhead-") as folder:
            path = export_reference(name, folder / f"{name}.onnx").path
            declared, _ = read_io(path)
            shapes = batch_shapes(declared, batch, example_sizes(ZOO[name].inputs))
            feeds = generate(declared, shapes=shapes, seed=0)
            backend = CPUBackend(path)
            backend.load()
            session = backend.session
            ours: list[int] = []
            theirs: list[int] = []
            for _ in range(10):  # warm both up
                session.run(None, feeds)
            for r in range(args.rounds):
                for who in ("nnkit", "bare") if r % 2 == 0 else ("bare", "nnkit"):
                    if who == "nnkit":
                        m = measure(backend, feeds, warmup=10, iterations=args.iterations)
                        ours += m.samples_ns
                    else:
                        for _ in range(10):
                            session.run(None, feeds)
                        gc.collect()
                        gc.disable()
                        try:
                            theirs += bare_loop(session, feeds, args.iterations)
                        finally:
                            gc.enable()
            backend.close()
        p50_ours = percentile(ours, 50) / 1e3
        p50_bare = percentile(theirs, 50) / 1e3
        rows.append((name, batch, p50_bare, p50_ours, p50_ours / p50_bare - 1))

    print(
        f"nnkit bench overhead: cpu backend vs a bare onnxruntime session.run loop "
        f"({args.rounds} alternating rounds x {args.iterations} runs each, same file and input)"
    )
    print()
    print("| model | batch | bare p50 us | nnkit p50 us | difference | within 3 % |")
    print("|---|---:|---:|---:|---:|---|")
    for name, batch, bare, ours_us, diff in rows:
        verdict = "yes" if diff <= TARGET else "no"
        print(
            f"| {name} | {batch} | {bare:.2f} | {ours_us:.2f} | {diff * 100:+.1f} % "
            f"({(ours_us - bare):+.2f} us) | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
