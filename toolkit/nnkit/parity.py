"""The parity matrix: models x exporters x backends x shape cases -> results.

Every cell of the matrix is one model, one exporter and one backend. The model is
exported once per exporter (the file is shared by all backends), each backend loads
that file once and runs every shape case, and every output is compared with PyTorch's
on the same inputs. Shape cases change every dynamic dim (the example size, 1, and an
odd larger size) and draw their inputs from seeds of their own, never the export's, so
an exporter that froze a dim or baked an input-dependent value into a constant shows
up as a mismatch.

Cases can be given too, beside the generated ones (or instead, with
``generated_cases=False``): chosen sizes of the dynamic dims (``--case batch=1,seq=1``,
generated inputs at those sizes), real inputs (``--data``: one ``.npz`` file per case,
arrays keyed by input name), and a module object's example inputs (case ``example``).

A result's status is one of:

``pass``
    ran, and every output matched by its rule (:mod:`nnkit.compare`).
``mismatch``
    ran, and the numbers, shapes or dtypes differ (or the file refuses the case's
    input shapes).
``unsupported``
    the runtime cannot load or run the model (a :class:`~nnkit.errors.BackendError`).
``error``
    the export failed, PyTorch itself failed on the case, or nnkit failed.

A result also carries the warnings of its outputs: a reference that is a weak judge
(all zeros, constant, below the comparison's resolution, full of ties). A
:class:`ParityReport` is true when nothing is a mismatch or an error (and, with
``strict``, nothing is unsupported and nothing has a warning);
:attr:`ParityReport.exit_code` is the CLI's.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.compare import OutputCompareResult, Rule, Tolerance, compare_outputs
from nnkit.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BackendError,
    BackendUnavailableError,
    InputError,
    ModelSourceError,
    NnkitError,
    OutputPathError,
)
from nnkit.spec import Dim, TensorSpec

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo
    from nnkit.resolve import ResolvedModel
    from nnkit.steps import ModelInfo, ModelRequest
    from nnkit.worker import InProcess, Worker

    Executor = Worker | InProcess

#: Result statuses, best first; a cell's status is the worst of its cases'.
STATUSES = ("pass", "unsupported", "mismatch", "error")
#: The order reports list statuses in.
REPORT_ORDER = ("pass", "mismatch", "unsupported", "error")
#: The PyTorch reference: never a backend under test.
REFERENCE = "torch"
#: Exporter label of an ``--onnx`` file whose metadata does not name its exporter.
FILE_EXPORTER = "file"
#: Seeds of the shape cases' inputs; the export traces with seed 0 (``example_args``).
CASE_SEEDS = (1, 2, 3)
#: Seconds one step of a run may take by default (see ``run_parity``'s ``timeout``).
DEFAULT_TIMEOUT = 600.0


class ParityRequestError(NnkitError):
    """A parity request that cannot be carried out (exit status 2)."""


@dataclass(frozen=True)
class ShapeCase:
    """One case to run: dynamic dim label -> size, and the inputs' seed.

    A case with ``feeds`` runs those arrays (real inputs, example inputs) instead of
    generating them; its ``seed`` is None. ``source`` says where the case came from:
    ``generated``, ``chosen`` (``--case``), ``data`` (a file) or ``example``.
    """

    name: str
    sizes: Mapping[str, int]
    seed: int | None
    feeds: Mapping[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    source: str = "generated"

    def shapes(self, specs: Sequence[TensorSpec]) -> dict[str, tuple[int, ...]]:
        if self.feeds is not None:
            return {k: tuple(v.shape) for k, v in self.feeds.items()}
        return {s.name: s.shape_with(dict(self.sizes)) for s in specs}

    def inputs(self, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """The case's input arrays: its own, or generated from ``specs`` at its sizes."""
        from nnkit.inputs import generate

        if self.feeds is not None:
            return {k: np.array(v, copy=True) for k, v in self.feeds.items()}
        return generate(specs, sizes=self.sizes, seed=self.seed or 0)


def larger_size(example: int) -> int:
    """An odd size above the example for a dynamic dim: batch 2 -> 5, seq 7 -> 13."""
    return max(5, 2 * example - 1)


def shape_cases(specs: Sequence[TensorSpec]) -> tuple[ShapeCase, ...]:
    """The shape cases of a model: the example sizes, every dynamic dim 1, every one larger.

    Each case has its own seed. A model without dynamic dims gets its one shape twice,
    with two seeds.
    """
    labels: dict[str, int] = {}
    for spec in specs:
        for d in spec.dims:
            if isinstance(d, Dim):
                labels.setdefault(d.label, d.example)
    if not labels:
        return (ShapeCase("static", {}, CASE_SEEDS[0]), ShapeCase("static#2", {}, CASE_SEEDS[1]))
    sizes = (
        dict(labels),
        dict.fromkeys(labels, 1),
        {label: larger_size(ex) for label, ex in labels.items()},
    )
    return tuple(
        ShapeCase(_sizes_name(s), s, seed) for s, seed in zip(sizes, CASE_SEEDS, strict=True)
    )


def _sizes_name(sizes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items())


def _labels(specs: Sequence[TensorSpec]) -> dict[str, int]:
    return {d.label: d.example for s in specs for d in s.dims if isinstance(d, Dim)}


def chosen_cases(
    specs: Sequence[TensorSpec], chosen: Sequence[Mapping[str, int]], *, model: str
) -> list[ShapeCase]:
    """Cases at chosen sizes of the dynamic dims (``--case``); a label not given takes
    its example size. Each has a seed of its own, after the generated cases' seeds.

    Raises:
        ParityRequestError: a label the model's specs do not have.
    """
    labels = _labels(specs)
    cases = []
    for i, sizes in enumerate(chosen):
        unknown = [k for k in sizes if k not in labels]
        if unknown:
            have = ", ".join(map(repr, labels)) or "none (every dim is fixed)"
            raise ParityRequestError(
                f"--case {_sizes_name(sizes)}: model {model!r} has no dynamic dim "
                f"{', '.join(map(repr, unknown))}; its dynamic dims are {have}"
            )
        full = {k: sizes.get(k, v) for k, v in labels.items()}
        cases.append(ShapeCase(_sizes_name(full), full, len(CASE_SEEDS) + 1 + i, source="chosen"))
    return cases


def load_data(data: str | Path | Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict]:
    """Real inputs: case name -> input name -> array.

    ``data`` is one ``.npz`` file (one case, named after the file), a folder of them
    (every ``*.npz`` in it, one case each, in name order), or, from Python, a mapping
    case name -> arrays.

    Raises:
        InputError: a missing path, a folder without ``.npz`` files, an unreadable file.
    """
    from nnkit.inputs import load_feeds

    if isinstance(data, Mapping):
        return {str(name): dict(feeds) for name, feeds in data.items()}
    path = Path(data)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise InputError(f"--data folder {str(path)!r} holds no .npz file (one per case)")
    elif path.is_file() and path.suffix == ".npz":
        files = [path]
    elif path.exists():
        raise InputError(
            f"--data {str(path)!r} is not a .npz file or a folder of them "
            "(one .npz per case, arrays keyed by input name)"
        )
    else:
        raise InputError(f"--data {str(path)!r} does not exist")
    return {f.name: load_feeds([(None, f)]) for f in files}


def data_cases(
    specs: Sequence[TensorSpec], data: Mapping[str, Mapping[str, np.ndarray]], *, model: str
) -> list[ShapeCase]:
    """Cases of real inputs, checked against the model's specs: names, ranks, fixed
    dims, dtypes, one size per dynamic dim label.

    Raises:
        InputError: a case whose arrays do not fit the specs, naming the case.
    """
    from nnkit.backends.base import check_feeds

    infos = tensor_infos(specs)
    cases = []
    for name, feeds in data.items():
        try:
            check_feeds(infos, feeds)
        except InputError as e:
            raise InputError(f"case {name!r} for model {model!r}: {e.format_message()}") from None
        sizes = {
            d.label: int(feeds[s.name].shape[axis])
            for s in specs
            for axis, d in enumerate(s.dims)
            if isinstance(d, Dim)
        }
        cases.append(ShapeCase(name, sizes, None, feeds=feeds, source="data"))
    return cases


def model_cases(
    model: ResolvedModel | ModelInfo,
    *,
    chosen: Sequence[Mapping[str, int]] = (),
    data: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    generated: bool = True,
) -> list[ShapeCase]:
    """Every case of ``model``: generated (unless ``generated`` is False), its example
    inputs, chosen sizes, real inputs; a case whose name is taken already is dropped.

    Raises:
        ParityRequestError: no case at all, or a chosen size the model does not have.
        InputError: real inputs that do not fit the model.
    """
    cases = list(shape_cases(model.inputs)) if generated else []
    if model.examples is not None:
        examples = data_cases(model.inputs, {"example": model.examples}, model=model.name)
        cases += [replace(c, source="example") for c in examples]
    cases += chosen_cases(model.inputs, chosen, model=model.name)
    cases += data_cases(model.inputs, data or {}, model=model.name)
    if not cases:
        raise ParityRequestError(
            f"no cases to run for model {model.name!r}: give --case or --data, or let nnkit "
            "generate cases"
        )
    unique: dict[str, ShapeCase] = {}
    for case in cases:
        if case.name in unique:
            if case.source == "chosen":  # those sizes run already
                continue
            raise ParityRequestError(f"model {model.name!r} has two cases named {case.name!r}")
        unique[case.name] = case
    return list(unique.values())


@dataclass
class CaseResult:
    """One model x exporter x backend x shape case; true when it passed."""

    model: str
    exporter: str
    backend: str
    case: str
    status: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int | None = None
    outputs: list[OutputCompareResult] = field(default_factory=list)
    #: Why it is not a pass, in one line per problem; empty on a pass.
    message: str = ""
    #: Findings that are not failures by themselves (declared shapes that disagree).
    notes: list[str] = field(default_factory=list)
    #: Seconds the backend took to run this case (0 where it did not run).
    seconds: float = 0.0
    #: Why an output's reference is a weak judge (``output 'y': the reference is ...``);
    #: failures only with ``strict``.
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.status == "pass"

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.model, self.exporter, self.backend)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "exporter": self.exporter,
            "backend": self.backend,
            "case": self.case,
            "status": self.status,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "seed": self.seed,
            "message": self.message,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 6),
            "outputs": [o.to_dict() for o in self.outputs],
        }


@dataclass
class Cell:
    """One model x exporter x backend: its cases' results; true when all passed."""

    model: str
    exporter: str
    backend: str
    results: list[CaseResult] = field(default_factory=list)
    #: Wall-clock seconds of the cell: loading the file and running every case.
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return worst(r.status for r in self.results)

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(n for r in self.results for n in r.notes))

    @property
    def warnings(self) -> list[str]:
        """The cases' warnings, each once."""
        return list(dict.fromkeys(w for r in self.results for w in r.warnings))

    def __bool__(self) -> bool:
        return self.status == "pass"


@dataclass
class ExportRecord:
    """How one model x exporter file came to be: exported here, or given with ``--onnx``."""

    model: str
    exporter: str
    path: str | None
    seconds: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "exporter": self.exporter,
            "path": self.path,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": list(self.notes),
        }


@dataclass
class ParityReport:
    """Everything a parity run found; true when the verdict is a pass."""

    models: list[str]
    exporters: list[str]
    backends: list[str]
    results: list[CaseResult] = field(default_factory=list)
    #: The cells in run order, each holding its cases' results.
    cells_run: list[Cell] = field(default_factory=list)
    exports: list[ExportRecord] = field(default_factory=list)
    cases: dict[str, list[ShapeCase]] = field(default_factory=dict)
    strict: bool = False
    atol: float | None = None
    rtol: float | None = None
    #: ``--compare``: output name -> rule, as text (``cosine:min=0.999``).
    compare: dict[str, str] = field(default_factory=dict)
    onnx: str | None = None
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Count of results per status (every status present), and ``total``."""
        counts = dict.fromkeys(REPORT_ORDER, 0)
        for r in self.results:
            counts[r.status] += 1
        return {**counts, "total": len(self.results)}

    def cells(self) -> list[Cell]:
        """The results grouped per model x exporter x backend, in run order."""
        return list(self.cells_run)

    def failing_statuses(self) -> tuple[str, ...]:
        return ("mismatch", "error", "unsupported") if self.strict else ("mismatch", "error")

    def fails(self, result: CaseResult) -> bool:
        """Whether ``result`` fails the verdict: its status, or (``strict``) a warning."""
        return result.status in self.failing_statuses() or bool(self.strict and result.warnings)

    @property
    def warned(self) -> int:
        """How many results carry a warning."""
        return sum(bool(r.warnings) for r in self.results)

    @property
    def passed(self) -> bool:
        return not any(self.fails(r) for r in self.results)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILED


def worst(statuses: Any) -> str:
    """The worst of ``statuses`` (``pass`` for none)."""
    return max(statuses, key=STATUSES.index, default="pass")


@dataclass(frozen=True)
class ProgressEvent:
    """A cell starting (``cell`` None) or done, and where it is in the matrix (1-based)."""

    index: int
    total: int
    model: str
    exporter: str
    backend: str
    cell: Cell | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class _Plan:
    models: list[str]
    exporters: list[str]
    backends: list[str]
    onnx: Path | None
    onnx_exporter: str | None


def run_parity(
    models: Sequence[str | ResolvedModel | Any] = (),
    *,
    exporters: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    inputs: Sequence[TensorSpec] = (),
    cases: Sequence[str | Mapping[str, int]] = (),
    data: str | Path | Mapping[str, Mapping[str, np.ndarray]] | None = None,
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
) -> ParityReport:
    """Run the parity matrix and return every result.

    Users' code (the model's import, build and forward, and the exporter tracing it) runs
    in one worker process and the runtimes in another (:mod:`nnkit.worker`): a model that
    exits or hangs, or a runtime that aborts, becomes an ``error`` result and the rest of
    the matrix runs.

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

    Raises:
        NnkitError: the request cannot be carried out (unknown model, exporter or backend,
            a backend that does not run here, a bad spec, a missing ``onnx`` file, a model
            that cannot be built, a NaN, infinite or negative tolerance, a bad rule or an
            output no model has).
    """
    from nnkit.resolve import ResolvedModel, resolve_object
    from nnkit.spec import parse_sizes
    from nnkit.steps import ModelRequest, register
    from nnkit.worker import InProcess, Worker, preload

    start = time.perf_counter()
    policy = Tolerance(atol=atol, rtol=rtol, compare=compare or {})
    objects = {m.name: m for m in models if isinstance(m, ResolvedModel)}
    for m in models:
        if not isinstance(m, (str, ResolvedModel)):
            resolved_object = resolve_object(m, inputs=inputs, ignore_outputs=ignore_outputs)
            objects[resolved_object.name] = resolved_object
    refs = [m if isinstance(m, str) else m.name for m in models]
    if len(objects) != len([m for m in models if not isinstance(m, str)]):
        raise ParityRequestError(f"a model is named twice: {', '.join(refs)}")
    plan = _plan(
        refs,
        exporters=exporters,
        backends=backends,
        onnx=onnx,
        inputs=inputs,
        trust_metadata=trust_metadata,
    )
    chosen = [parse_sizes(c) if isinstance(c, str) else dict(c) for c in cases]
    real = load_data(data) if data is not None else None
    specs = tuple(inputs) or _metadata_specs(plan)
    requests = [ModelRequest(ref, specs, tuple(ignore_outputs)) for ref in plan.models]
    # Objects cannot cross into a worker: their code runs here, as the caller's does.
    for request in requests:
        if request.ref in objects:
            register(request, objects[request.ref])
    # The folder outlives the workers: they are stopped before it is cleaned up.
    with (
        _folder(artifacts) as folder,
        InProcess() if objects else Worker("PyTorch") as user,
        Worker("runtimes") as runtimes,
    ):
        user.call(preload, ["torch"])  # not timed: importing torch is not the model's time
        infos = [_build(user, request, timeout) for request in requests]
        _check_compare_names(policy, infos)
        model_case_lists = [
            model_cases(m, chosen=chosen, data=real, generated=generated_cases) for m in infos
        ]
        report = ParityReport(
            models=[m.name for m in infos],
            exporters=plan.exporters,
            backends=plan.backends,
            strict=strict,
            atol=policy.atol,
            rtol=policy.rtol,
            compare={name: policy.rule(name).text() for name in policy.compare},
            onnx=str(plan.onnx) if plan.onnx else None,
        )
        total = len(infos) * len(plan.exporters) * len(plan.backends)
        counter = iter(range(1, total + 1))
        for request, model, model_case_list in zip(requests, infos, model_case_lists, strict=True):
            tolerance = replace(policy, model_atol=model.atol, model_rtol=model.rtol)
            report.cases[model.name] = model_case_list
            runs = _reference_runs(user, request, model, model_case_list, timeout)
            for exporter in plan.exporters:
                record = _export(user, request, model, exporter, plan, folder, timeout)
                report.exports.append(record)
                row = []
                for backend in plan.backends:
                    index = next(counter)
                    if progress:
                        progress(ProgressEvent(index, total, model.name, exporter, backend))
                    cell = Cell(model.name, exporter, backend)
                    began = time.perf_counter()
                    cell.results = _run_cell(runtimes, cell, record, runs, tolerance, timeout)
                    cell.seconds = time.perf_counter() - began
                    report.cells_run.append(cell)
                    row.append(cell)
                    if progress:
                        progress(ProgressEvent(index, total, model.name, exporter, backend, cell))
                judge_row(row, runs)
                report.results.extend(r for c in row for r in c.results)
    if artifacts is None and plan.onnx is None:  # the temporary folder is gone
        for record in report.exports:
            record.path = None
        _forget_folder(report, folder)
    report.environment = environment(plan.backends)
    report.seconds = time.perf_counter() - start
    return report


# -- the request --------------------------------------------------------------------


def _plan(
    models: Sequence[str],
    *,
    exporters: Sequence[str] | None,
    backends: Sequence[str] | None,
    onnx: str | Path | None,
    inputs: Sequence[TensorSpec],
    trust_metadata: bool = False,
) -> _Plan:
    """Check the request before any work; refuse it in one line if it cannot be done."""
    from nnkit.export import EXPORTERS

    onnx_path = Path(onnx) if onnx is not None else None
    onnx_exporter = None
    if onnx_path is not None:
        if exporters is not None:
            raise ParityRequestError(
                "--onnx checks a file exported earlier; --exporters does not go with it"
            )
        if len(models) > 1:
            raise ParityRequestError(
                f"--onnx checks one file against one model; {len(models)} models given"
            )
        meta = _metadata(onnx_path)
        onnx_exporter = meta.get("nnkit.exporter") or FILE_EXPORTER
        if not models:
            if "nnkit.model" not in meta:
                raise ParityRequestError(
                    f"{onnx_path} does not say which model it is (no nnkit.model metadata); "
                    "give MODEL"
                )
            models = [model_from_metadata(meta, onnx_path, trust=trust_metadata)]
        exporter_list = [onnx_exporter]
    else:
        exporter_list = list(exporters) if exporters is not None else list(EXPORTERS)
        for name in exporter_list:
            if name not in EXPORTERS:
                raise ParityRequestError(
                    f"unknown exporter {name!r}: valid exporters are {', '.join(EXPORTERS)}"
                )
    if not exporter_list:
        raise ParityRequestError("no exporters given")
    if not models:
        from nnkit.models import ZOO

        models = list(ZOO)
    if len(set(models)) != len(models):
        raise ParityRequestError(f"a model is named twice: {', '.join(models)}")
    return _Plan(
        models=list(models),
        exporters=list(dict.fromkeys(exporter_list)),
        backends=select_backends(backends),
        onnx=onnx_path,
        onnx_exporter=onnx_exporter,
    )


def _check_compare_names(policy: Tolerance, models: Sequence[ModelInfo]) -> None:
    """Refuse a ``compare`` rule for an output that no model has, naming the outputs."""
    have = {name for m in models for name in m.outputs}
    unknown = [name for name in policy.compare if name not in have]
    if unknown:
        outputs = "; ".join(f"{m.name}: {', '.join(m.outputs) or 'none'}" for m in models)
        raise ParityRequestError(
            f"--compare names output {unknown[0]!r}, which no model has; the outputs are {outputs}"
        )


def select_backends(names: Sequence[str] | None) -> list[str]:
    """The backends to check: those named (each probed, refused if it cannot run here),
    or every backend that runs here, the reference aside.

    Raises:
        NnkitError: an unknown name, or ``torch`` (the reference).
        BackendUnavailableError: a backend named that cannot run here, with the reason.
    """
    from nnkit.backends import BACKENDS, available, check_name, require

    if names is None:
        found = available([n for n in BACKENDS if n != REFERENCE])
        usable = [n for n, reason in found.items() if reason is None]
        if not usable:
            reasons = "; ".join(r for r in found.values() if r)
            raise BackendUnavailableError(f"no ONNX backend runs on this machine: {reasons}")
        return usable
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise ParityRequestError("no backends given")
    for name in chosen:
        check_name(name)
        if name == REFERENCE:
            raise ParityRequestError(
                f"{REFERENCE!r} is the reference every backend is compared with, not a backend "
                f"to check; choose from {', '.join(n for n in BACKENDS if n != REFERENCE)}"
            )
    for name in chosen:
        require(name)
    return chosen


def model_from_metadata(meta: Mapping[str, str], onnx: Path, *, trust: bool) -> str:
    """The model an ONNX file names in its metadata, as a reference to build.

    A zoo name is nnkit's own code. Anything else is code the file points at: it is
    imported only when the user says so (``trust``), because a file received from
    someone else must never run their code. A file reference is found relative to the
    ONNX file (``nnkit.model_file``, stamped at export), so the check works from any
    folder.

    Raises:
        ParityRequestError: the reference is not trusted, or its file cannot be found.
    """
    from nnkit.models import ZOO

    named = meta["nnkit.model"]
    if named in ZOO:
        return named
    if not trust:
        raise ParityRequestError(
            f"{onnx} names its model as {named!r} in its metadata; nnkit never imports code "
            f"named inside a file it is given: name the model on the command line "
            f"(nnkit parity MODEL --onnx {onnx}), or pass --trust-metadata if you trust the file"
        )
    where, sep, name = named.rpartition(":")
    if not sep or not (where.endswith(".py") or "/" in where):
        return named  # module:name, imported from the Python path
    stamped = meta.get("nnkit.model_file")
    candidates = [onnx.parent / stamped] if stamped else []
    candidates.append(Path(where))
    for candidate in candidates:
        if candidate.is_file():
            return f"{candidate}:{name}"
    looked = " or ".join(repr(str(c)) for c in candidates)
    raise ParityRequestError(
        f"{onnx} names its model as {named!r}, but its source is not at {looked}: "
        "name the model on the command line (nnkit parity MODEL --onnx FILE)"
    )


def _metadata(path: Path) -> dict[str, str]:
    from nnkit.check import load_model_file, metadata

    return metadata(load_model_file(path, external_data=False))


def _metadata_specs(plan: _Plan) -> tuple[TensorSpec, ...]:
    """An ``--onnx`` file's input specs from its metadata, for a model outside the zoo."""
    from nnkit.check import load_model_file, stamped_specs
    from nnkit.models import ZOO

    if plan.onnx is None or plan.models[0] in ZOO:
        return ()
    return stamped_specs(load_model_file(plan.onnx, external_data=False))


@contextlib.contextmanager
def _folder(artifacts: str | Path | None) -> Iterator[Path]:
    if artifacts is None:
        with tempfile.TemporaryDirectory(prefix="nnkit-parity-") as tmp:
            yield Path(tmp)
        return
    folder = Path(artifacts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(
            f"cannot create the artifacts folder {str(folder)!r}: {e.strerror or e}"
        ) from None
    yield folder


def _forget_folder(report: ParityReport, folder: Path) -> None:
    """Messages must not cite a temporary file that is gone: name it, and say how to keep it."""
    prefix = str(folder) + os.sep

    def fix(text: str) -> str:
        return re.sub(
            re.escape(prefix) + r"(\S+?\.onnx)",
            r"\1 (a temporary file; keep it with --artifacts DIR)",
            text,
        ).replace(prefix, "")

    for r in report.results:
        r.message = fix(r.message)
        r.notes = [fix(n) for n in r.notes]
    for e in report.exports:
        e.error = fix(e.error)


# -- the work -----------------------------------------------------------------------


@dataclass
class _CaseRun:
    """A shape case's inputs and PyTorch's outputs on them (or why PyTorch failed)."""

    case: ShapeCase
    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None
    error: str = ""
    #: Outputs left out (``ignore_outputs``): a file's outputs of these names are dropped.
    ignored: tuple[str, ...] = ()


def tensor_infos(specs: Sequence[TensorSpec]) -> tuple[TensorInfo, ...]:
    """Declared inputs for specs: dynamic dims by label."""
    from nnkit.backends.base import TensorInfo

    return tuple(
        TensorInfo(s.name, tuple(d.label if isinstance(d, Dim) else d for d in s.dims), s.dtype)
        for s in specs
    )


def _build(user: Executor, request: ModelRequest, timeout: float | None) -> ModelInfo:
    """Build a model in the user-code worker; a model that cannot be built ends the request."""
    from nnkit.steps import describe_model
    from nnkit.worker import WorkerFailure

    try:
        return user.call(describe_model, request, timeout=timeout)
    except WorkerFailure as e:
        raise ModelSourceError(f"building {request.ref!r}: {e.format_message()}") from None


def _reference_runs(
    user: Executor,
    request: ModelRequest,
    model: ModelInfo,
    cases: Sequence[ShapeCase],
    timeout: float | None,
) -> list[_CaseRun]:
    """Run PyTorch on every case's inputs once; every exporter and backend reuses them."""
    from nnkit.steps import reference_outputs

    runs = []
    for case in cases:
        feeds = case.inputs(model.inputs)
        try:
            ref = user.call(
                reference_outputs, request, feeds, generated=case.feeds is None, timeout=timeout
            )
        except NnkitError as e:
            reason = e.format_message()
            if not reason.startswith("PyTorch"):
                reason = f"PyTorch (the reference) {reason}"
            runs.append(_CaseRun(case, feeds, None, reason))
            continue
        runs.append(_CaseRun(case, feeds, ref, ignored=model.ignored))
    return runs


def _export(
    user: Executor,
    request: ModelRequest,
    model: ModelInfo,
    exporter: str,
    plan: _Plan,
    folder: Path,
    timeout: float | None,
) -> ExportRecord:
    """Export once per model x exporter (or take the ``--onnx`` file); never raises.

    The worker writes into a folder of its own; only a finished file is moved into
    ``folder``, so a worker killed mid-export leaves nothing half-written behind.
    """
    from nnkit.steps import export

    if plan.onnx is not None:
        return ExportRecord(model.name, exporter, str(plan.onnx))
    path = folder / f"{_safe(model.name)}.{exporter}.onnx"
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix=".nnkit-export-", dir=folder) as work:
            result = user.call(
                export,
                request,
                Path(work) / path.name,
                exporter=exporter,
                located_at=path,
                timeout=timeout,
            )
            os.replace(result.path, path)
    except NnkitError as e:
        # Name the artifact's path, not the worker's temporary folder inside it.
        error = re.sub(r"\.nnkit-export-[^/]+/", "", e.format_message())
        return ExportRecord(model.name, exporter, None, time.perf_counter() - start, error=error)
    return ExportRecord(model.name, exporter, str(path), result.seconds, notes=result.notes())


def _run_cell(
    runtimes: Executor,
    cell: Cell,
    record: ExportRecord,
    runs: Sequence[_CaseRun],
    tolerance: Tolerance,
    timeout: float | None,
) -> list[CaseResult]:
    """Load the file on the cell's backend once and run every case; never raises.

    The runtime runs in a worker: one that aborts or hangs makes its case an ``error``
    (the next case runs in a fresh worker). A backend that ran some case of the file
    but fails another does not lack support for the model: the file fails to generalise
    (a ``mismatch``).
    """
    from nnkit.steps import close_backend, load_backend
    from nnkit.worker import WorkerFailure

    def results(status: str, message: str) -> list[CaseResult]:
        return [_result(cell, run, status, message) for run in runs]

    if record.error or record.path is None:
        return results("error", f"export failed: {record.error}")
    path = record.path
    try:
        declared = runtimes.call(load_backend, cell.backend, path, timeout=timeout)
    except WorkerFailure as e:
        return results("error", f"{cell.backend}: loading the file: {e.format_message()}")
    except (BackendError, BackendUnavailableError) as e:
        return results("unsupported", e.format_message())
    except NnkitError as e:
        return results("error", e.format_message())
    try:
        return [_run_case(runtimes, cell, path, declared, run, tolerance, timeout) for run in runs]
    finally:
        with contextlib.suppress(NnkitError):
            runtimes.call(close_backend, cell.backend, path, timeout=timeout)


def judge_row(row: Sequence[Cell], runs: Sequence[_CaseRun]) -> None:
    """Decide whose failure a run that failed is: the runtime's, or the file's.

    ``unsupported`` means a runtime cannot load or run the model at all. A case a runtime
    fails to run although it ran another case of the same file, and a case that no
    runtime of the row (two or more) can run, are failures of the file: a ``mismatch``
    that says so (an export that froze a dynamic dim runs at the example's size only).
    """
    backends = [c.backend for c in row]
    # What ran, before any result changes: a case a runtime ran, it can run.
    ran = {
        c.backend: [x.case for x in c.results if x.status in ("pass", "mismatch")] for c in row
    }
    ran_anywhere = list(dict.fromkeys(case for cases in ran.values() for case in cases))
    for i in range(len(runs)):
        cases = [c.results[i] for c in row if i < len(c.results)]
        everywhere = len(row) > 1 and all(r.status == "unsupported" for r in cases)
        for cell, r in zip(row, cases, strict=False):
            if r.status != "unsupported":
                continue
            if everywhere:
                elsewhere, on = ran_anywhere, f"any runtime ({', '.join(backends)})"
            elif ran[cell.backend]:
                elsewhere, on = ran[cell.backend], cell.backend
            else:
                continue  # this runtime runs no case of the file: its own limit
            r.status = "mismatch"
            r.message = f"the file does not run at {r.case} on {on}" + (
                f", though it runs at {', '.join(elsewhere)}: the export froze a dynamic dim "
                f"or baked in a value; {r.message}"
                if elsewhere
                else f"; {r.message}"
            )


def _result(cell: Cell, run: _CaseRun, status: str, message: str = "") -> CaseResult:
    return CaseResult(
        model=cell.model,
        exporter=cell.exporter,
        backend=cell.backend,
        case=run.case.name,
        status=status,
        shapes={k: tuple(v.shape) for k, v in run.feeds.items()},
        seed=run.case.seed,
        message=message,
    )


def _run_case(
    runtimes: Executor,
    cell: Cell,
    path: str,
    declared: tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]],
    run: _CaseRun,
    tolerance: Tolerance,
    timeout: float | None,
) -> CaseResult:
    from nnkit.backends.base import check_feeds
    from nnkit.steps import run_backend
    from nnkit.worker import WorkerFailure

    if run.reference is None:
        return _result(cell, run, "error", run.error)
    inputs, outputs = declared
    notes: list[str] = []
    feeds = _match_names(run.feeds, [i.name for i in inputs], what="inputs", notes=notes)
    try:
        check_feeds(inputs, feeds)  # here, before the runtime: a mismatch, not a crash
        got, seconds = runtimes.call(run_backend, cell.backend, path, feeds, timeout=timeout)
    except InputError as e:
        result = _result(
            cell,
            run,
            "mismatch",
            f"the file does not take this case's inputs: {e.format_message()}",
        )
        result.notes = notes
        return result
    except WorkerFailure as e:
        return _result(cell, run, "error", f"{cell.backend}: {e.format_message()}")
    except (BackendError, BackendUnavailableError) as e:
        return _result(cell, run, "unsupported", e.format_message())
    except NnkitError as e:
        return _result(cell, run, "error", e.format_message())
    if run.ignored:
        from nnkit.binding import is_ignored

        got = {k: v for k, v in got.items() if not is_ignored(k, run.ignored)}
    notes.extend(declared_shape_notes(outputs, got))
    got = _match_names(got, list(run.reference), what="outputs", notes=notes)
    compared = compare_outputs(run.reference, got, tolerance=tolerance)
    result = _result(cell, run, "pass" if compared else "mismatch", compared.summary())
    result.outputs = compared.outputs
    result.warnings = compared.warnings
    result.notes = notes
    result.seconds = seconds
    return result


def _match_names(
    arrays: dict[str, np.ndarray], names: Sequence[str], *, what: str, notes: list[str]
) -> dict[str, np.ndarray]:
    """``arrays`` under ``names``: by name when they all match, else by position.

    A file exported elsewhere may name its inputs and outputs its own way; when the
    counts agree they are matched by position, and a note says so.
    """
    if set(names) <= set(arrays) or len(names) != len(arrays):
        return arrays
    renamed = dict(zip(names, arrays.values(), strict=True))
    pairs = ", ".join(f"{a!r}={b!r}" for a, b in zip(arrays, names, strict=True) if a != b)
    notes.append(f"{what} matched by position, the names differ ({pairs})")
    return renamed


def declared_shape_notes(
    declared: Sequence[TensorInfo], got: Mapping[str, np.ndarray]
) -> list[str]:
    """Where the file's declared output shape disagrees with what the runtime gave.

    Symbolic and unknown dims agree with any size; a fixed dim must be the size given.
    """
    notes = []
    for info in declared:
        if info.name not in got or not info.ranked or info.kind != "tensor":
            continue
        shape = tuple(np.shape(got[info.name]))
        fixed_wrong = [
            (axis, want, have)
            for axis, (want, have) in enumerate(zip(info.dims, shape, strict=False))
            if isinstance(want, int) and want != have
        ]
        if len(info.dims) != len(shape) or fixed_wrong:
            notes.append(
                f"output {info.name!r} is declared {info.shape_text()} in the file, "
                f"the runtime gave {list(shape)}"
            )
    return notes


def environment(backends: Sequence[str]) -> dict[str, Any]:
    """Versions and machine, for reports: nnkit, Python, numpy, onnx, torch, each runtime."""
    import platform
    import sys

    from nnkit import __version__
    from nnkit.backends import probe
    from nnkit.hardware import cpu_info

    versions: dict[str, str | None] = {
        "nnkit": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for module in ("onnx", "torch", "onnxscript"):
        mod = sys.modules.get(module)
        versions[module] = getattr(mod, "__version__", None) if mod else _dist_version(module)
    backend_versions = {name: probe(name).version for name in backends}
    cpu = cpu_info()
    return {
        "versions": versions,
        "backends": backend_versions,
        "machine": {
            "platform": platform.platform(),
            "architecture": cpu.architecture,
            "cpu": cpu.model,
            "cores": cpu.usable_cores,
        },
    }


def _dist_version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _safe(name: str) -> str:
    """A file-name-safe form of a model reference (``path/net.py:Net`` -> ``path_net.py_Net``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
