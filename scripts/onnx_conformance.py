"""Run ONNX's backend node test cases through every CPU backend, directly and with nnkit.

For each case and backend the runtime is called through its own Python API, and
``nnkit infer`` runs the same file on the same inputs (given as a ``.npz`` file, its
outputs saved with ``--save`` and read back); both answers are judged against the
case's expected outputs. nnkit must be right wherever the runtime is, and elsewhere
refuse in one line (exit 2) or give the runtime's own answer. The counts table goes
to stdout (Markdown); ``--json FILE`` keeps every run.

    .venv/bin/python scripts/onnx_conformance.py [ROOT] [--backends cpu,tract] [--jobs 2]
        [--only SUBSTRING] [--json runs.json] [--defects]

ROOT defaults to /work/shared/onnx-node-tests/node (ONNX's 1,802 node cases); the
vendored sample is tests/data/onnx_node.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.onnx_node import BACKENDS, RunRecord, case_folders, counts_table, run_all

DEFAULT_ROOT = Path("/work/shared/onnx-node-tests/node")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], help="case name substring")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--defects", action="store_true", help="list every defect")
    args = parser.parse_args()
    folders = case_folders(args.root)
    if args.only:
        folders = [f for f in folders if any(s in f.name for s in args.only)]
    if not folders:
        print(f"no cases under {args.root}", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    total = len(folders) * len(backends)
    start = time.monotonic()
    done = 0

    def progress(record: RunRecord) -> None:
        nonlocal done
        done += 1
        if done % 100 == 0 or done == total:
            print(f"[{done}/{total}] {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    records = run_all(folders, backends, jobs=args.jobs, on_record=progress)
    records.sort(key=lambda r: (r.case, backends.index(r.backend)))
    print(
        f"{len(folders)} cases x {len(backends)} backends from {args.root}, "
        f"{time.monotonic() - start:.0f} s\n"
    )
    print(counts_table(records, backends))
    if args.defects:
        print()
        for r in records:
            if r.defect:
                print(f"{r.case} / {r.backend}: {r.defect}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in records], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
