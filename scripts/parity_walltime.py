"""Measure the wall time of the full default parity matrix, cold, in a fresh process.

Runs ``python -m nnkit parity`` (every zoo model x both exporters x every backend that
runs here x every shape case) as a user would, from interpreter start to exit, and
prints the time beside the machine and the result counts. Extra arguments go to
``nnkit parity``::

    python scripts/parity_walltime.py
    python scripts/parity_walltime.py --backends cpu,openvino
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="nnkit-walltime-") as tmp:
        report = Path(tmp) / "parity.json"
        command = [sys.executable, "-m", "nnkit", "parity", "--json", str(report), *argv]
        start = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        wall = time.perf_counter() - start
        if not report.is_file():
            sys.stderr.write(done.stdout + done.stderr)
            print(f"nnkit parity exited {done.returncode} without a report")
            return 2
        data = json.loads(report.read_text())
    summary, machine = data["summary"], data["environment"]["machine"]
    request = data["request"]
    counts = ", ".join(f"{summary[s]} {s}" for s in ("pass", "mismatch", "unsupported", "error"))
    print(f"command:   {' '.join(['nnkit', 'parity', *argv])}")
    print(
        f"matrix:    {len(request['models'])} models x {len(request['exporters'])} exporters x "
        f"{len(request['backends'])} backends ({', '.join(request['backends'])})"
    )
    print(f"results:   {summary['total']} ({counts}); exit {done.returncode}")
    print(f"machine:   {machine['cpu']}, {machine['cores']} usable cores, {machine['platform']}")
    print(f"in-run:    {data['seconds']:.1f} s (parity itself, after imports)")
    print(f"wall time: {wall:.1f} s (cold: interpreter start to exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
