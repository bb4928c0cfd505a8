"""The parity matrix as one call: :func:`run_parity`.

The matrix itself lives in :mod:`nnkit.matrix`: a request (:class:`ParityRequest`) is
planned into cells (:func:`~nnkit.matrix.plan.plan`, nothing run), executed
(:func:`~nnkit.matrix.execute.execute`) into a :class:`ParityReport`
(:mod:`nnkit.matrix.results`). This module keeps the one-call form and the names the
first round exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnkit.compare import Rule
from nnkit.environment import environment
from nnkit.matrix.cases import (
    CASE_SEEDS,
    ParityRequestError,
    ShapeCase,
    larger_size,
    model_cases,
    shape_cases,
    tensor_infos,
)
from nnkit.matrix.cell import declared_shape_notes, judge_row
from nnkit.matrix.execute import execute
from nnkit.matrix.plan import (
    DEFAULT_TIMEOUT,
    FILE_EXPORTER,
    ParityRequest,
    plan,
)
from nnkit.matrix.results import (
    REPORT_ORDER,
    STATUSES,
    ArtifactRecord,
    CaseResult,
    Cell,
    ExportRecord,
    ParityReport,
    ProgressCallback,
    ProgressEvent,
    worst,
)
from nnkit.matrix.sources import select_backends
from nnkit.spec import TensorSpec

__all__ = [
    "CASE_SEEDS",
    "DEFAULT_TIMEOUT",
    "FILE_EXPORTER",
    "REPORT_ORDER",
    "STATUSES",
    "ArtifactRecord",
    "CaseResult",
    "Cell",
    "ExportRecord",
    "ParityReport",
    "ParityRequest",
    "ParityRequestError",
    "ProgressEvent",
    "ShapeCase",
    "declared_shape_notes",
    "environment",
    "judge_row",
    "larger_size",
    "model_cases",
    "run",
    "run_parity",
    "select_backends",
    "shape_cases",
    "tensor_infos",
    "worst",
]


def run(request: ParityRequest, *, progress: ProgressCallback | None = None) -> ParityReport:
    """Plan ``request`` and execute every cell of it."""
    return execute(plan(request), progress=progress)


def run_parity(
    models: Sequence[Any] = (),
    *,
    exporters: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    inputs: Sequence[TensorSpec] = (),
    cases: Sequence[str | Mapping[str, int]] = (),
    data: str | Path | Mapping[str, Mapping[str, Any]] | None = None,
    generated_cases: bool = True,
    ignore_outputs: Sequence[str] = (),
    onnx: str | Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    compare: Mapping[str, Rule | str] | None = None,
    artifacts: str | Path | None = None,
    strict: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    trust_metadata: bool = False,
    localize: bool = False,
) -> ParityReport:
    """Run the parity matrix and return every result.

    Users' code runs in one worker process and the runtimes in another
    (:mod:`nnkit.worker`): a model that exits or hangs, or a runtime that aborts, becomes
    an ``error`` result and the rest of the matrix runs.

    Args:
        models: zoo names, ``file.py:Name`` or ``module:name``; the whole zoo when empty
            (with ``onnx``: the model named in the file's metadata). Also models as
            objects: a :class:`~nnkit.resolve.ResolvedModel`
            (:func:`~nnkit.resolve.resolve_object`), or an ``nn.Module`` with ``inputs``.
        exporters: ``dynamo`` and/or ``torchscript``; both when None.
        backends: backends to check; every one that runs here (``torch`` aside) when None.
            One asked for by name that cannot run here is refused, never dropped.
        inputs: input specs, for models outside the zoo (or to replace a zoo model's).
        cases: chosen sizes of dynamic dims, ``"batch=1,seq=1"`` or ``{"batch": 1}``, run
            beside the generated cases.
        data: real inputs, run beside the generated cases: a ``.npz`` file (one case), a
            folder of them (one case each), or a mapping case name -> input arrays.
        generated_cases: run the generated cases too; False runs only those given
            (``cases``, ``data``, example inputs).
        ignore_outputs: outputs to leave out of the export and the comparison.
        onnx: check this ONNX file against the (one) model instead of exporting.
        atol: explicit absolute tolerance for every output; the scale-aware default rule
            (per model and dtype, see :mod:`nnkit.compare`) when None.
        rtol: explicit relative tolerance for every output; per model and dtype when None.
        compare: a rule per output name, ``{"logits": "cosine:min=0.999", "labels":
            "exact", "scores": "set"}`` (text or :class:`~nnkit.compare.Rule`); outputs
            not named keep the default. A name no model has is refused.
        artifacts: keep the exported files in this folder (created if missing);
            a temporary folder, removed afterwards, when None.
        strict: count ``unsupported`` results and warnings as failures.
        progress: called when each cell starts and when it is done.
        timeout: seconds each step may take (building a model, one PyTorch run, one
            export, loading a file on a runtime, one run of it); None or 0 for no limit.
        trust_metadata: with ``onnx`` and no model, import the model the file's metadata
            names even where it is code outside the zoo.
        localize: localize each mismatching cell's first divergence
            (:attr:`Cell.localization`; the repro is written under ``artifacts``).

    Raises:
        NnkitError: the request cannot be carried out (unknown model, exporter or backend,
            a backend that does not run here, a bad spec, a missing ``onnx`` file, a model
            that cannot be built, a NaN, infinite or negative tolerance, a bad rule or an
            output no model has).
    """
    request = ParityRequest.from_options(
        models,
        inputs=inputs,
        cases=cases,
        data=data,
        generated_cases=generated_cases,
        ignore_outputs=ignore_outputs,
        atol=atol,
        rtol=rtol,
        compare=compare,
        exporters=None if exporters is None else list(exporters),
        backends=None if backends is None else list(backends),
        onnx=None if onnx is None else Path(onnx),
        artifacts=None if artifacts is None else Path(artifacts),
        strict=strict,
        timeout=timeout,
        trust_metadata=trust_metadata,
        localize=localize,
    )
    return run(request, progress=progress)
