"""``nnkit bench``'s rendering: the console table and the latency plot.

The data is :class:`~nnkit.bench.BenchReport`; this module only draws it. matplotlib
is imported only to plot (``pip install 'nnkit-onnx[plot]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nnkit import DISTRIBUTION
from nnkit.errors import NnkitError

if TYPE_CHECKING:
    from nnkit.bench import BenchReport


def fmt_ms(value: float | None) -> str:
    """Milliseconds with about four significant digits: 0.01234, 1.234, 123.4."""
    if value is None:
        return "-"
    if value < 0.1:
        return f"{value:.4f}"
    if value < 10:
        return f"{value:.3f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:.0f}"


def fmt_rate(value: float | None) -> str:
    """1234567 -> '1.23M', 12345 -> '12.3k', 123 -> '123'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def render(report: BenchReport) -> str:
    """The console table, then the FLOPs, the machine's peak and any errors."""
    from nnkit.render import table

    has_torch = any(r.backend == "torch" and r.ok for r in report.results)
    headers = [
        "backend",
        "batch",
        "load ms",
        "1st run ms",
        "runs",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "stdev ms",
        "samples/s",
    ]
    if has_torch:
        headers.append("vs torch")
    headers.append("GFLOP/s")
    with_variants = len(report.variants) > 1
    if with_variants:
        headers = ["variant", *headers, "vs base", "size"]
    rows = []
    for r in report.results:
        lead = [r.variant] if with_variants else []
        tail = [_ratio(r.speedup_vs_base), _bytes(r.file_bytes)] if with_variants else []
        if not r.ok:
            rows.append(
                [*lead, r.backend, r.batch, "error", *["-"] * (len(headers) - 3 - len(lead))]
            )
            if with_variants:
                rows[-1][-1] = _bytes(r.file_bytes)
            continue
        row = [
            *lead,
            r.backend,
            r.batch,
            fmt_ms(r.load_ms),
            fmt_ms(r.first_run_ms),
            r.iterations,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p90_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.mean_ms),
            fmt_ms(r.stdev_ms),
            fmt_rate(r.samples_per_s),
        ]
        if has_torch:
            row.append(f"{r.speedup_vs_torch:.2f}x" if r.speedup_vs_torch else "-")
        row.append(f"{r.gflops:.3g}" if r.gflops is not None else "-")
        rows.append([*row, *tail])
    lines = [
        f"{report.model} ({report.file or f'its {report.exporter} export'})",
        table(headers, rows, right=range(1 + with_variants, len(headers))),
    ]
    if with_variants:
        lines += ["", *variant_summary(report)]
    per_batch = {r.batch: r.flops for r in report.results if r.flops}
    if per_batch:
        b = max(per_batch)
        lines.append(
            f"FLOPs: {per_batch[b] / b / 1e6:.3g} MFLOP per sample (Conv, Gemm/MatMul, RNNs); "
            f"machine peak: {report.machine.peak_text()}"
        )
    else:
        lines.append(f"machine peak: {report.machine.peak_text()}")
    settings = report.settings
    threads = settings["threads"] or "each runtime's default"
    budget = f"{settings['seconds']} s" if settings["seconds"] else "none"
    lines.append(
        f"{report.machine.cpu}, {report.machine.physical_cores} cores; threads: {threads}; "
        f"warm-up {settings['warmup']}, iterations {settings['iterations'] or 'by budget'}, "
        f"budget {budget} per backend and batch"
    )
    lines += [
        f"error: {r.backend} batch {r.batch}{'' if r.variant == 'base' else f' ({r.variant})'}: "
        f"{r.error}"
        for r in report.results
        if not r.ok
    ]
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def plot(report: BenchReport, out: str | Path) -> None:
    """A bar chart of p50 latency (whiskers to p90) per backend and batch, written atomically.

    Raises:
        NnkitError: matplotlib is not installed.
    """
    target = check_plot_path(out)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nnkit.fsutil import atomic_output

    ok = [r for r in report.results if r.ok]
    backends = [b for b in report.backends if any(r.backend == b for r in ok)]
    fig = Figure(figsize=(max(6.0, 1.2 * len(report.batches) * max(len(backends), 1)), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        xs, p50, err = [], [], []
        for j, b in enumerate(report.batches):
            r = next((r for r in ok if r.backend == backend and r.batch == b), None)
            if r is None or r.p50_ms is None or r.p90_ms is None:
                continue
            xs.append(j + (i - (len(backends) - 1) / 2) * width)
            p50.append(r.p50_ms)
            err.append(r.p90_ms - r.p50_ms)
        ax.bar(xs, p50, width, yerr=[[0] * len(err), err], label=backend, capsize=2)
    ax.set_xticks(range(len(report.batches)), [f"batch {b}" for b in report.batches])
    ax.set_yscale("log")
    ax.set_ylabel("latency p50 (ms, whisker to p90)")
    ax.set_title(f"nnkit bench {report.model}: {report.machine.cpu}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_output(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".").lower())


def require_matplotlib() -> None:
    """Refuse ``--plot`` early where matplotlib is missing.

    Raises:
        NnkitError: with the command that installs it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NnkitError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            f"(or pip install '{DISTRIBUTION}[plot]')"
        ) from None


def check_plot_path(out: str | Path) -> Path:
    """Refuse, before any work, a plot nnkit cannot write: no matplotlib, a format it lacks.

    Raises:
        NnkitError: matplotlib is missing, or the file's extension is not an image format.
        OutputPathError: the file cannot be written.
    """
    from nnkit.fsutil import check_writable

    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = check_writable(out)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in formats:
        raise NnkitError(
            f"cannot plot to {str(target)!r}: give a file ending in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    return target


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def _bytes(value: int | None) -> str:
    from nnkit.render import human_bytes

    return human_bytes(value) if value else "-"


def variant_summary(report: BenchReport) -> list[str]:
    """Which variant is fastest where: per variant, each backend's speed-up over the base
    file at the largest batch (p50), and the file's size."""
    from nnkit.render import table

    batch = max(report.batches)
    backends = [b for b in report.backends if b != "torch"]
    at = {(r.variant, r.backend): r for r in report.results if r.batch == batch}
    rows = []
    for v in report.variants:
        cells = []
        for b in backends:
            r = at.get((v, b))
            cells.append("-" if r is None else _ratio(r.speedup_vs_base) if r.ok else "error")
        size = next((r.file_bytes for r in report.results if r.variant == v and r.file_bytes), None)
        rows.append([v, *cells, _bytes(size)])
    return [
        f"speed-up over the base file, p50 at batch {batch} (accuracy: nnkit parity --variants):",
        table(["variant", *backends, "size"], rows, right=range(1, len(backends) + 2)),
    ]
