"""Export time per zoo model and exporter, on this machine; prints a Markdown table.

Each model is exported with each exporter ``--repeat`` times into a temporary folder;
the table gives the median (the full nnkit export: example run, export, metadata,
checker, atomic move). The first export of the process also pays for importing and
warming up the exporter: it is reported apart.

    .venv/bin/python scripts/bench_export.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from nnkit.export import EXPORTERS, export_model
from nnkit.machine import cpu_info
from nnkit.models import ZOO
from nnkit.resolve import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first: dict[str, float] = {}
        for exporter in EXPORTERS:
            start = time.perf_counter()
            export_model(resolve_model("relu"), folder / f"warm.{exporter}.onnx", exporter=exporter)
            first[exporter] = time.perf_counter() - start
        rows = []
        for name in ZOO:
            model = resolve_model(name)
            cells = []
            for exporter in EXPORTERS:
                times = [
                    export_model(
                        model, folder / f"{name}.{exporter}.onnx", exporter=exporter
                    ).seconds
                    for _ in range(args.repeat)
                ]
                cells.append(statistics.median(times))
            size = (folder / f"{name}.dynamo.onnx").stat().st_size
            rows.append((name, *cells, size))

    cpu = cpu_info()
    print(
        f"export time, median of {args.repeat}; {cpu.model or platform.machine()}, "
        f"{cpu.usable_cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print()
    print("| model | dynamo (s) | torchscript (s) | file (dynamo) |")
    print("| --- | ---: | ---: | ---: |")
    for name, dyn, ts, size in rows:
        print(f"| {name} | {dyn:.2f} | {ts:.3f} | {size / 1024:.1f} KiB |")
    print()
    print(
        "first export in a fresh process (imports and warm-up): "
        + ", ".join(f"{e} {s:.2f} s" for e, s in first.items())
    )


if __name__ == "__main__":
    main()
