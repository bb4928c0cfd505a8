"""Timing the variants: each rewrite of a file by the same protocol, against the base.

:func:`bench_variants` writes each rewrite into a temporary folder (in a worker: a tool
that crashes or hangs fails only its variant), times the base file and then every
variant with :func:`nnkit.bench.bench_file` (same inputs, same settings, same backends;
``torch`` once, with the base), and sets each result's ``speedup_vs_base`` (the base
file's p50 over the variant's on the same backend and batch, in the same run) and its
file's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import NnkitError

if TYPE_CHECKING:
    from nnkit.bench import BenchReport, BenchResult


def bench_variants(
    path: str | Path, variants: Sequence[str], *, backends: Sequence[str], **options: Any
) -> BenchReport:
    """Time the file at ``path`` and its ``variants`` on ``backends``.

    ``options`` are :func:`nnkit.bench.bench_file`'s. A rewrite that fails gives
    ``error`` results for its variant (the reason in each); the rest is timed.

    Raises:
        RewriteUnavailableError: an unknown variant, or its library is missing.
        and what :func:`nnkit.bench.bench_file` raises.
    """
    from nnkit.bench import BenchResult, bench_file, check_backends
    from nnkit.fsutil import temporary_folder
    from nnkit.rewrites import parse_variants, require_tools, rewrite_file, variant_path
    from nnkit.worker import Worker

    names = parse_variants(variants)
    require_tools(names)
    check_backends(backends, with_torch=options.get("torch_model") is not None)
    path = Path(path)
    timeout = options.get("timeout")
    rewrites: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    with temporary_folder("nnkit-variants-") as tmp:
        with Worker("rewrites") as worker:
            for v in names[1:]:
                out = Path(tmp) / variant_path(path.name, v).name
                try:
                    made = worker.call(rewrite_file, v, path, out, timeout=timeout)
                except NnkitError as e:
                    rewrites[v] = {"error": f"rewriting as {v}: {e.format_message()}"}
                    continue
                files[v] = made.path
                rewrites[v] = {**made.to_dict(), "path": None, "error": ""}
        report = bench_file(path, backends=backends, **options)
        runtimes = [b for b in backends if b != "torch"]
        plain = {**options, "torch_model": None, "torch_request": None}
        for v in names[1:]:
            if v not in files:
                report.results += [
                    BenchResult(
                        model=report.model,
                        backend=b,
                        batch=batch,
                        status="error",
                        error=rewrites[v]["error"],
                        variant=v,
                    )
                    for b in runtimes
                    for batch in report.batches
                ]
                continue
            timed = bench_file(files[v], backends=runtimes, **plain)
            for r in timed.results:
                r.variant = v
                if r.error:  # the file is gone with the folder: name it
                    r.error = r.error.replace(str(files[v]), f"{files[v].name} (temporary)")
            report.results += timed.results
            said = {w.split(" (")[0] for w in report.warnings}
            report.warnings += [w for w in timed.warnings if w.split(" (")[0] not in said]
    speedups_vs_base(report.results)
    report.variants, report.rewrites = names, rewrites
    return report


def speedups_vs_base(results: list[BenchResult]) -> None:
    """Set each result's speed-up over the base file on its backend and batch, and a
    variant's speed-up over torch eager (in place)."""
    base = {(r.backend, r.batch): r.p50_ms for r in results if r.variant == "base" and r.ok}
    torch = {r.batch: r.p50_ms for r in results if r.backend == "torch" and r.ok}
    for r in results:
        if not (r.ok and r.p50_ms):
            continue
        if (p50 := base.get((r.backend, r.batch))) and r.backend != "torch":
            r.speedup_vs_base = p50 / r.p50_ms
        if r.variant != "base" and (p50 := torch.get(r.batch)):
            r.speedup_vs_torch = p50 / r.p50_ms
