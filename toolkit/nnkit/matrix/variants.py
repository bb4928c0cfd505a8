"""Variants in the matrix: each rewrite of an artifact is an artifact column of its own.

``--variants base,fp16`` turns every artifact (``dynamo``, ``file``) into itself and its
rewrites (``dynamo+fp16``): each variant is made once from its base file
(:func:`nnkit.rewrites.rewrite_file`, in the runtimes' worker, where a tool that crashes
or hangs ends only that variant), then runs on every backend like any artifact, judged
by its budget (:mod:`nnkit.compare.budget`). A rewrite that fails is an ``error`` of its
own cells; the rest of the matrix goes on.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nnkit.compare.budget import Budget
from nnkit.compare.text import fmt_cosine
from nnkit.errors import NnkitError
from nnkit.matrix.results import ArtifactRecord, ParityReport

if TYPE_CHECKING:
    from nnkit.matrix.plan import ArtifactPlan, ModelPlan
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess


def plan_variants(
    names: Sequence[str] | None, overrides: Sequence[tuple[str, Mapping[str, float]]] = ()
) -> tuple[list[str], dict[str, Budget]]:
    """The variants asked for (``base`` first) and every rewrite's budget, checked.

    Raises:
        RewriteUnavailableError: an unknown variant, or one whose library is missing.
        ToleranceError: a budget override for an unknown variant or metric.
    """
    from nnkit.compare.budget import budgets
    from nnkit.rewrites import parse_variants, require_tools

    variants = parse_variants(names or [])
    require_tools(variants)
    return variants, budgets([(v, dict(values)) for v, values in overrides])


def file_variant(meta: Mapping[str, str], path: Path) -> str:
    """The variant an ``--onnx`` file is, per the provenance nnkit stamped into it
    (``nnkit.variant``): it is judged by that variant's budget, and reports say so.

    Raises:
        RewriteUnavailableError: the metadata names a variant nnkit does not know.
    """
    from nnkit.rewrites import META_VARIANT, VARIANTS, RewriteUnavailableError

    made = meta.get(META_VARIANT, "base")
    if made not in VARIANTS:
        raise RewriteUnavailableError(
            f"{path} says it is the variant {made!r} (its {META_VARIANT} metadata), which "
            f"nnkit does not know: valid variants are {', '.join(VARIANTS)}"
        )
    return made


def make_variant(
    runtimes: Executor,
    model: ModelPlan,
    artifact: ArtifactPlan,
    base: ArtifactRecord,
    folder: Path,
    timeout: float | None,
) -> ArtifactRecord:
    """Rewrite ``base``'s file into ``folder`` as ``artifact``'s variant; never raises.

    The variant is written beside the other artifacts (never beside an ``--onnx`` file
    the user gave): ``<base file>.<variant>.onnx``.
    """
    from nnkit.rewrites import calibration_feeds, rewrite_file, variant_path
    from nnkit.worker import WorkerFailure

    record = ArtifactRecord(
        model.name,
        artifact.exporter,
        None,
        artifact=artifact.id,
        source="rewrite",
        variant=artifact.variant,
        base=artifact.base,
    )
    if base.error or base.path is None:
        record.error = f"{artifact.variant}: its base {artifact.base!r} has no file: {base.error}"
        return record
    out = folder / variant_path(Path(base.path).name, artifact.variant).name
    start = time.perf_counter()
    try:
        calibration = calibration_feeds(model.inputs) if artifact.variant == "int8-static" else None
        result = runtimes.call(
            rewrite_file,
            artifact.variant,
            base.path,
            out,
            calibration=calibration,
            timeout=timeout,
        )
    except WorkerFailure as e:
        record.error = f"rewriting {artifact.base} as {artifact.variant}: {e.format_message()}"
    except NnkitError as e:  # a tool that raised, a bug (its traceback in the message)
        record.error = re.sub(r"\s+", " ", e.format_message()).strip()
    else:
        record.path, record.seconds = str(result.path), result.seconds
        record.size_bytes, record.tool = result.size_bytes, result.tool
        record.settings, record.notes = dict(result.settings), list(result.notes)
        return record
    record.seconds = time.perf_counter() - start
    return record


def file_size(record: ArtifactRecord) -> None:
    """Set ``record.size_bytes`` from its file (left 0 where there is none)."""
    if record.path and not record.size_bytes:
        with contextlib.suppress(OSError):
            record.size_bytes = os.path.getsize(record.path)


def summary_rows(report: ParityReport) -> list[list[str]]:
    """Which variant to ship on which runtime: per model x artifact x backend, the
    status, the worst cosine, SNR and top-1 agreement over its cases' outputs, the file
    size and its ratio to the base file's. Empty without variants."""
    if len(report.variants) <= 1:
        return []
    records = {(e.model, e.artifact): e for e in report.exports}
    rows = []
    for cell in report.cells():
        outputs = [o for r in cell.results for o in r.outputs if o.compared]
        cos = min((o.cosine for o in outputs), default=None)
        snr = min((o.snr_db for o in outputs if o.snr_db is not None), default=None)
        top1 = min((o.top1 for o in outputs if o.top1 is not None), default=None)
        record = records.get((cell.model, cell.artifact))
        size = record.size_bytes if record else 0
        base = records.get((cell.model, record.base)) if record and record.base else record
        ratio = f"{size / base.size_bytes:.2f}x" if base and base.size_bytes and size else "-"
        if record and record.variant != "base" and not record.base:  # a variant given as is
            ratio = "-"
        rows.append(
            [
                cell.model,
                cell.artifact,
                cell.backend,
                cell.status,
                "-" if cos is None else fmt_cosine(cos),
                "-" if snr is None else ("inf" if snr == float("inf") else f"{snr:.1f}"),
                "-" if top1 is None else f"{top1:.2f}",
                _size(size),
                ratio,
            ]
        )
    return rows


#: The headers of :func:`summary_rows`.
SUMMARY_HEADERS = [
    "model",
    "artifact",
    "backend",
    "status",
    "min cosine",
    "min snr dB",
    "min top-1",
    "size",
    "vs base",
]


def _size(n: int) -> str:
    from nnkit.render import human_bytes

    return human_bytes(n) if n else "-"


def budget_lines(report: ParityReport) -> list[str]:
    """``fp16: atol=0.01,rtol=0.01,cosine=0.999``, one per variant run."""
    return [f"{v}: {report.budgets[v]}" for v in report.variants if v in report.budgets]
