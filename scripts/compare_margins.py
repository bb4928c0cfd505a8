"""How far below its tolerance every zoo cell passes, and how a zero-output file fails.

Runs the parity matrix over the zoo (both exporters, the backends given) with the
default, scale-aware comparison, and prints per model output and backend the largest
share of the tolerance any case used (``error_ratio``: 100% is the limit, over every
exporter and shape case) and the largest relative error norm. Then it exports a model
whose outputs are about 1e-9 (as random-init mobilenet_v3_small's logits are), plants a
copy whose outputs are all zeros, and judges both by the default rule and by the old
absolute one (``--atol 1e-5 --rtol 1e-4``)::

    python scripts/compare_margins.py
    python scripts/compare_margins.py --backends cpu,openvino
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# The planted fault and the tiny model are the test suite's own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnkit.compare import DEFAULT_TOLERANCES, fmt
from nnkit.machine import cpu_info
from nnkit.parity import ParityReport, run_parity
from nnkit.render import table
from tests._faults import TINY_INPUT, TINY_MODEL, scale_outputs


def margins(report: ParityReport) -> list[list[str]]:
    """Rows: model, output, rms(ref) over the cases, then per backend the worst share of
    the tolerance, then the worst relative error norm and the margin (limit / worst)."""
    worst: dict[tuple[str, str], dict[str, float]] = {}
    norms: dict[tuple[str, str], float] = {}
    scales: dict[tuple[str, str], list[float]] = {}
    for r in report.results:
        for o in r.outputs:
            key = (r.model, o.name)
            ratio = o.error_ratio if o.error_ratio is not None else float("inf")
            per = worst.setdefault(key, {})
            per[r.backend] = max(per.get(r.backend, 0.0), ratio)
            norms[key] = max(norms.get(key, 0.0), o.rel_err_norm)
            scales.setdefault(key, []).append(o.ref_rms)
    rows = []
    for (model, output), per in worst.items():
        top = max(per.values())
        rows.append(
            [
                model,
                output,
                f"{fmt(min(scales[model, output]))}..{fmt(max(scales[model, output]))}",
                *(_pct(per.get(b)) for b in report.backends),
                fmt(norms[model, output]),
                "exact" if top == 0 else f"{1 / top:.0f}x",
            ]
        )
    return rows


def planted(backends: list[str]) -> list[list[str]]:
    """The tiny model's true file and zero-output copy, by the default and the old rule."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnkit-margins-") as tmp:
        folder = Path(tmp)
        (folder / "tiny.py").write_text(TINY_MODEL)
        from nnkit.export import export_model
        from nnkit.resolve import resolve_model
        from nnkit.spec import parse_spec

        spec = parse_spec(TINY_INPUT)
        model = resolve_model(f"{folder / 'tiny.py'}:Tiny", inputs=[spec])
        good = folder / "tiny.onnx"
        export_model(model, good, exporter="dynamo")
        zero = scale_outputs(good, folder / "zero.onnx", factor=0.0)
        for label, path in (("true file", good), ("outputs * 0", zero)):
            for rule, tol in (
                ("default", {}),
                ("old: --atol 1e-5 --rtol 1e-4", {"atol": 1e-5, "rtol": 1e-4}),
            ):
                report = run_parity(
                    [model.name], inputs=[spec], onnx=path, backends=backends, **tol
                )
                outs = [o for r in report.results for o in r.outputs]
                ratio = max((o.error_ratio or float("inf")) for o in outs)
                rows.append(
                    [
                        label,
                        rule,
                        "PASS" if report else "FAIL",
                        str(report.exit_code),
                        fmt(max(o.ref_max_abs for o in outs)),
                        fmt(max(o.rel_err_norm for o in outs)),
                        _pct(ratio),
                        str(report.warned),
                    ]
                )
    return rows


def _pct(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio == float("inf"):
        return "inf"
    if ratio > 1:
        return f"{ratio:.2g}x over"
    return f"{100 * ratio:.2g}%"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="cpu,openvino,tract,reference")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    cpu = cpu_info()
    atol, rtol = DEFAULT_TOLERANCES["float32"]
    start = time.perf_counter()
    report = run_parity(backends=backends)
    print(
        f"the zoo x dynamo, torchscript x {', '.join(backends)} x 3 cases; {cpu.model}, "
        f"{cpu.usable_cores} cores; {time.perf_counter() - start:.0f} s; "
        f"{report.summary()['pass']}/{report.summary()['total']} pass"
    )
    print(
        f"default float32 rule: |got-ref| <= {atol:g}*rms(ref) + {rtol:g}*|ref| and "
        f"||got-ref|| <= {atol:g}*||ref|| (the zoo's own atol/rtol where it sets them)"
    )
    print("share of the tolerance used, worst case and exporter per backend (100% = fail):\n")
    headers = ["model", "output", "rms(ref)", *backends, "rel_err_norm", "margin"]
    print(table(headers, margins(report), right=range(2, len(headers))))
    print("\na model whose outputs are ~1e-9, and a copy of its file whose outputs are 0:\n")
    headers = ["file", "rule", "verdict", "exit", "max|ref|", "rel_err_norm", "used", "warned"]
    print(table(headers, planted(backends), right=range(3, len(headers))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
