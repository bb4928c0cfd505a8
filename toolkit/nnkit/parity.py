"""The parity matrix: models x exporters x backends x shape cases -> results.

Every cell of the matrix is one model, one exporter and one backend. The model is
exported once per exporter (the file is shared by all backends), each backend loads
that file once and runs every shape case, and every output is compared with PyTorch's
on the same inputs. Shape cases change every dynamic dim (the example size, 1, and an
odd larger size) and draw their inputs from seeds of their own, never the export's, so
an exporter that froze a dim or baked an input-dependent value into a constant shows
up as a mismatch.

A result's status is one of:

``pass``
    ran, and every output matched within tolerance.
``mismatch``
    ran, and the numbers, shapes or dtypes differ (or the file refuses the case's
    input shapes).
``unsupported``
    the runtime cannot load or run the model (a :class:`~nnkit.errors.BackendError`).
``error``
    the export failed, PyTorch itself failed on the case, or nnkit failed.

A :class:`ParityReport` is true when nothing is a mismatch or an error (and, with
``strict``, nothing is unsupported); :attr:`ParityReport.exit_code` is the CLI's.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.compare import OutputCompareResult, Tolerance, compare_outputs
from nnkit.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BackendError,
    BackendUnavailableError,
    InputError,
    NnkitError,
    OutputPathError,
    describe,
)
from nnkit.spec import Dim, TensorSpec

if TYPE_CHECKING:
    from nnkit.backends.base import Backend, TensorInfo
    from nnkit.resolve import ResolvedModel

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


class ParityRequestError(NnkitError):
    """A parity request that cannot be carried out (exit status 2)."""


@dataclass(frozen=True)
class ShapeCase:
    """One set of input shapes to run: dynamic dim label -> size, and the inputs' seed."""

    name: str
    sizes: Mapping[str, int]
    seed: int

    def shapes(self, specs: Sequence[TensorSpec]) -> dict[str, tuple[int, ...]]:
        return {s.name: s.shape_with(dict(self.sizes)) for s in specs}


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
        ShapeCase(",".join(f"{k}={v}" for k, v in s.items()), s, seed)
        for s, seed in zip(sizes, CASE_SEEDS, strict=True)
    )


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

    @property
    def passed(self) -> bool:
        bad = self.failing_statuses()
        return not any(r.status in bad for r in self.results)

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
    models: Sequence[str] = (),
    *,
    exporters: Sequence[str] | None = None,
    backends: Sequence[str] | None = None,
    inputs: Sequence[TensorSpec] = (),
    onnx: str | Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    artifacts: str | Path | None = None,
    strict: bool = False,
    progress: ProgressCallback | None = None,
) -> ParityReport:
    """Run the parity matrix and return every result.

    Args:
        models: zoo names, ``file.py:Name`` or ``module:name``; the whole zoo when empty
            (with ``onnx``: the model named in the file's metadata).
        exporters: ``dynamo`` and/or ``torchscript``; both when None.
        backends: backends to check; every one that runs here (``torch`` aside) when None.
            One asked for by name that cannot run here is refused, never dropped.
        inputs: input specs, for models outside the zoo (or to replace a zoo model's).
        onnx: check this ONNX file against the (one) model instead of exporting.
        atol: absolute tolerance for every output; per model and dtype when None.
        rtol: relative tolerance for every output; per model and dtype when None.
        artifacts: keep the exported files in this folder (created if missing);
            a temporary folder, removed afterwards, when None.
        strict: count ``unsupported`` as a failure.
        progress: called when each cell starts and when it is done.

    Raises:
        NnkitError: the request cannot be carried out (unknown model, exporter or backend,
            a backend that does not run here, a bad spec, a missing ``onnx`` file).
    """
    start = time.perf_counter()
    plan = _plan(models, exporters=exporters, backends=backends, onnx=onnx, inputs=inputs)
    from nnkit.resolve import resolve_model

    specs = tuple(inputs) or _metadata_specs(plan)
    resolved = [resolve_model(ref, inputs=specs) for ref in plan.models]
    report = ParityReport(
        models=[m.name for m in resolved],
        exporters=plan.exporters,
        backends=plan.backends,
        strict=strict,
        atol=atol,
        rtol=rtol,
        onnx=str(plan.onnx) if plan.onnx else None,
    )
    total = len(resolved) * len(plan.exporters) * len(plan.backends)
    counter = iter(range(1, total + 1))
    with _folder(artifacts) as folder:
        for model in resolved:
            tolerance = Tolerance(
                atol=atol, rtol=rtol, model_atol=model.atol, model_rtol=model.rtol
            )
            cases = list(shape_cases(model.inputs))
            report.cases[model.name] = cases
            runs = _reference_runs(model, cases)
            for exporter in plan.exporters:
                record = _export(model, exporter, plan, folder)
                report.exports.append(record)
                for backend in plan.backends:
                    index = next(counter)
                    if progress:
                        progress(ProgressEvent(index, total, model.name, exporter, backend))
                    cell = Cell(model.name, exporter, backend)
                    began = time.perf_counter()
                    cell.results = _run_cell(cell, record, runs, tolerance)
                    cell.seconds = time.perf_counter() - began
                    report.cells_run.append(cell)
                    report.results.extend(cell.results)
                    if progress:
                        progress(ProgressEvent(index, total, model.name, exporter, backend, cell))
    if artifacts is None and plan.onnx is None:  # the temporary folder is gone
        for record in report.exports:
            record.path = None
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
            models = [meta["nnkit.model"]]
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


# -- the work -----------------------------------------------------------------------


@dataclass
class _CaseRun:
    """A shape case's inputs and PyTorch's outputs on them (or why PyTorch failed)."""

    case: ShapeCase
    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None
    error: str = ""


def tensor_infos(specs: Sequence[TensorSpec]) -> tuple[TensorInfo, ...]:
    """Declared inputs for specs: dynamic dims by label."""
    from nnkit.backends.base import TensorInfo

    return tuple(
        TensorInfo(s.name, tuple(d.label if isinstance(d, Dim) else d for d in s.dims), s.dtype)
        for s in specs
    )


def _reference_runs(model: ResolvedModel, cases: Sequence[ShapeCase]) -> list[_CaseRun]:
    """Run PyTorch on every case's inputs once; every exporter and backend reuses them."""
    from nnkit.backends.torch import TorchBackend
    from nnkit.inputs import generate

    runs = []
    torch_backend = TorchBackend.from_module(
        model.module, tensor_infos(model.inputs), model.outputs
    )
    with torch_backend:
        for case in cases:
            feeds = generate(model.inputs, sizes=case.sizes, seed=case.seed)
            try:
                # A copy: torch shares the arrays' memory, and a model may write its input.
                ref = torch_backend.run({k: v.copy() for k, v in feeds.items()})
            except Exception as e:
                runs.append(
                    _CaseRun(case, feeds, None, f"PyTorch (the reference) failed: {describe(e)}")
                )
                continue
            runs.append(_CaseRun(case, feeds, ref))
    return runs


def _export(model: ResolvedModel, exporter: str, plan: _Plan, folder: Path) -> ExportRecord:
    """Export once per model x exporter (or take the ``--onnx`` file); never raises."""
    from nnkit.export import export_model

    if plan.onnx is not None:
        return ExportRecord(model.name, exporter, str(plan.onnx))
    path = folder / f"{_safe(model.name)}.{exporter}.onnx"
    start = time.perf_counter()
    try:
        result = export_model(model, path, exporter=exporter)
    except Exception as e:
        return ExportRecord(
            model.name, exporter, None, time.perf_counter() - start, error=describe(e)
        )
    notes = [
        f"the {exporter} exporter declared a dynamic output dim fixed; nnkit declared it "
        f"symbolic ({fix})"
        for fix in result.fixed_outputs
    ]
    return ExportRecord(model.name, exporter, str(path), result.seconds, notes=notes)


def _run_cell(
    cell: Cell, record: ExportRecord, runs: Sequence[_CaseRun], tolerance: Tolerance
) -> list[CaseResult]:
    """Load the file on the cell's backend once and run every case; never raises."""
    from nnkit.backends import backend_class

    def results(status: str, message: str) -> list[CaseResult]:
        return [_result(cell, run, status, message) for run in runs]

    if record.error or record.path is None:
        return results("error", f"export failed: {record.error}")
    try:
        backend = backend_class(cell.backend)(record.path)
        backend.load()
    except (BackendError, BackendUnavailableError) as e:
        return results("unsupported", e.format_message())
    except Exception as e:
        return results("error", describe(e))
    try:
        return [_run_case(cell, backend, run, tolerance) for run in runs]
    finally:
        with contextlib.suppress(Exception):
            backend.close()


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


def _run_case(cell: Cell, backend: Backend, run: _CaseRun, tolerance: Tolerance) -> CaseResult:
    if run.reference is None:
        return _result(cell, run, "error", run.error)
    notes: list[str] = []
    feeds = _match_names(run.feeds, [i.name for i in backend.inputs], what="inputs", notes=notes)
    start = time.perf_counter()
    try:
        got = backend.run(feeds)
    except (BackendError, BackendUnavailableError) as e:
        return _result(cell, run, "unsupported", e.format_message())
    except InputError as e:
        result = _result(
            cell,
            run,
            "mismatch",
            f"the file does not take this case's inputs: {e.format_message()}",
        )
        result.notes = notes
        return result
    except Exception as e:
        return _result(cell, run, "error", describe(e))
    seconds = time.perf_counter() - start
    notes.extend(declared_shape_notes(backend.outputs, got))
    got = _match_names(got, list(run.reference), what="outputs", notes=notes)
    compared = compare_outputs(run.reference, got, tolerance=tolerance)
    result = _result(cell, run, "pass" if compared else "mismatch", compared.summary())
    result.outputs = compared.outputs
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
