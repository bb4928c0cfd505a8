"""What a parity run found: results per case, cells, artifacts, the report and its JSON.

A result's status is one of:

``pass``
    ran, and every output matched by its rule (:mod:`nnkit.compare`).
``mismatch``
    ran, and the numbers, shapes or dtypes differ; or the file does not run at a case
    although a runtime ran another case of it, or no runtime of two or more runs it.
``unsupported``
    this runtime cannot load or run the model at all (a
    :class:`~nnkit.errors.BackendError`), while others can.
``timeout``
    the cell ran past ``--max-seconds-per-cell``: the case was stopped or not run (like
    ``unsupported``, a failure only with ``strict``).
``error``
    the export failed, PyTorch failed on the case, the model's code or a runtime's
    process ended or hung, or nnkit failed.

A result also carries the warnings of its outputs: a reference that is a weak judge.
A :class:`ParityReport` is true when nothing is a mismatch or an error (and, with
``strict``, nothing is unsupported and nothing has a warning). The report reads back
from its own JSON (:meth:`ParityReport.from_dict`), so reports of shards can be merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nnkit.compare import OutputCompareResult
from nnkit.errors import EXIT_FAILED, EXIT_OK
from nnkit.localize.result import Localization
from nnkit.matrix.cases import ShapeCase, case_from_dict, case_to_dict

#: Result statuses, best first; a cell's status is the worst of its cases'.
STATUSES = ("pass", "unsupported", "timeout", "mismatch", "error")
#: The order reports list statuses in.
REPORT_ORDER = ("pass", "mismatch", "unsupported", "timeout", "error")
#: Version of the JSON report's layout.
SCHEMA = "nnkit.parity/1"


def worst(statuses: Any) -> str:
    """The worst of ``statuses`` (``pass`` for none)."""
    return max(statuses, key=STATUSES.index, default="pass")


@dataclass
class CaseResult:
    """One model x artifact x backend x case; true when it passed."""

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
    #: The artifact (the file under test) of the result's column: ``dynamo``, ``file``.
    artifact: str = ""
    #: The traceback of a bug in nnkit that made this result an ``error``.
    traceback: str = ""
    #: The rewrite of the artifact (``base``, ``fp16``, ...: :mod:`nnkit.rewrites`).
    variant: str = "base"

    def __post_init__(self) -> None:
        self.artifact = self.artifact or self.exporter

    def __bool__(self) -> bool:
        return self.status == "pass"

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.model, self.artifact, self.backend)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "exporter": self.exporter,
            "artifact": self.artifact,
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
            "traceback": self.traceback,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        return cls(
            model=data["model"],
            exporter=data["exporter"],
            artifact=data.get("artifact") or data["exporter"],
            backend=data["backend"],
            case=data["case"],
            status=data["status"],
            shapes={k: tuple(v) for k, v in data["shapes"].items()},
            seed=data["seed"],
            message=data["message"],
            notes=list(data["notes"]),
            warnings=list(data.get("warnings", [])),
            seconds=data["seconds"],
            outputs=[output_from_dict(o) for o in data["outputs"]],
            traceback=data.get("traceback", ""),
            variant=data.get("variant", "base"),
        )


def output_from_dict(data: Mapping[str, Any]) -> OutputCompareResult:
    """An output's comparison read back from its JSON (non-finite numbers come back None)."""
    names = {f.name for f in dataclasses.fields(OutputCompareResult)}
    values = {k: v for k, v in data.items() if k in names}
    for key in ("ref_shape", "got_shape"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    result = OutputCompareResult(**values)
    result.compared = result.got_shape == result.ref_shape and result.got_shape is not None
    return result


@dataclass
class Cell:
    """One model x artifact x backend: its cases' results; true when all passed."""

    model: str
    exporter: str
    backend: str
    results: list[CaseResult] = field(default_factory=list)
    #: Wall-clock seconds of the cell: loading the file and running every case.
    seconds: float = 0.0
    artifact: str = ""
    #: Where the cell first departs from PyTorch (``parity --localize``), if localized.
    localization: Localization | None = None
    #: The rewrite of the artifact (``base``, ``fp16``, ...).
    variant: str = "base"

    def __post_init__(self) -> None:
        self.artifact = self.artifact or self.exporter

    @property
    def id(self) -> str:
        return cell_id(self.model, self.artifact, self.backend)

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "exporter": self.exporter,
            "artifact": self.artifact,
            "backend": self.backend,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            "warnings": self.warnings,
            **({"localization": self.localization.to_dict()} if self.localization else {}),
            "variant": self.variant,
        }


def cell_id(model: str, artifact: str, backend: str) -> str:
    """A cell's stable id: the same request gives the same ids on every machine."""
    return f"{model}|{artifact}|{backend}"


@dataclass
class ArtifactRecord:
    """The ONNX file under test for one model and one column, and how it came to be.

    ``source`` is ``export`` (exported here by ``exporter``) or ``file`` (given with
    ``--onnx``; ``exporter`` is then what the file's metadata says made it, as
    provenance, or ``file``). ``artifact`` is the column's id.
    """

    model: str
    exporter: str
    path: str | None
    seconds: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)
    artifact: str = ""
    source: str = "export"
    #: The file came from the export cache (:mod:`nnkit.cache`), verified, not exported.
    cached: bool = False
    # -- variants (nnkit.rewrites): ``source`` is ``rewrite`` for a variant --
    #: The rewrite (``base`` for an exported or given file).
    variant: str = "base"
    #: The artifact a variant was rewritten from (``dynamo``), else "".
    base: str = ""
    #: The file's size in bytes (0 where there is no file).
    size_bytes: int = 0
    #: The rewrite's tool and version, and its settings (a variant's provenance).
    tool: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.artifact = self.artifact or self.exporter

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "exporter": self.exporter,
            "artifact": self.artifact,
            "source": self.source,
            "path": self.path,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": list(self.notes),
            "cached": self.cached,
            "variant": self.variant,
            "base": self.base,
            "size_bytes": self.size_bytes,
            "tool": self.tool,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactRecord:
        return cls(
            model=data["model"],
            exporter=data["exporter"],
            path=data["path"],
            seconds=data["seconds"],
            error=data["error"],
            notes=list(data["notes"]),
            artifact=data.get("artifact") or data["exporter"],
            source=data.get("source", "export"),
            cached=bool(data.get("cached", False)),
            variant=data.get("variant", "base"),
            base=data.get("base", ""),
            size_bytes=data.get("size_bytes", 0),
            tool=data.get("tool", ""),
            settings=dict(data.get("settings", {})),
        )


#: The name the first round gave an artifact record.
ExportRecord = ArtifactRecord


@dataclass
class ParityReport:
    """Everything a parity run found; true when the verdict is a pass."""

    models: list[str]
    exporters: list[str]
    backends: list[str]
    results: list[CaseResult] = field(default_factory=list)
    #: The cells in run order, each holding its cases' results.
    cells_run: list[Cell] = field(default_factory=list)
    exports: list[ArtifactRecord] = field(default_factory=list)
    cases: dict[str, list[ShapeCase]] = field(default_factory=dict)
    strict: bool = False
    atol: float | None = None
    rtol: float | None = None
    #: ``--compare``: output name -> rule, as text (``cosine:min=0.999``).
    compare: dict[str, str] = field(default_factory=dict)
    onnx: str | None = None
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    #: The artifact columns, in order (``dynamo``, ``torchscript``; ``file`` with --onnx).
    artifacts: list[str] = field(default_factory=list)
    #: The plan this report ran (its fingerprint and shard), for merging.
    plan: dict[str, Any] = field(default_factory=dict)
    #: The variants run (``base`` first) and each rewrite's budget, as text.
    variants: list[str] = field(default_factory=lambda: ["base"])
    budgets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.artifacts = self.artifacts or list(self.exporters)

    def summary(self) -> dict[str, int]:
        """Count of results per status (every status present), and ``total``."""
        counts = dict.fromkeys(REPORT_ORDER, 0)
        for r in self.results:
            counts[r.status] += 1
        return {**counts, "total": len(self.results)}

    def cells(self) -> list[Cell]:
        """The results grouped per model x artifact x backend, in run order."""
        return list(self.cells_run)

    def artifact_title(self, artifact: str) -> str:
        """A column's heading: ``exporter: dynamo``, or the file and its provenance."""
        record = next((e for e in self.exports if e.artifact == artifact), None)
        if record is not None and record.source == "rewrite":
            from nnkit.render import human_bytes

            made = f" by {record.tool}" if record.tool else ""
            size = f", {human_bytes(record.size_bytes)}" if record.size_bytes else ""
            budget = self.budgets.get(record.variant, "")
            judged = f"; budget {budget}" if budget else ""
            return f"variant: {artifact} ({record.variant} of {record.base}{made}{size}{judged})"
        if record is None or record.source == "export":
            return f"exporter: {artifact}"
        made = f", made by {record.exporter} per its metadata" if record.exporter != "file" else ""
        if record.variant != "base":  # a variant nnkit wrote: judged by its budget
            budget = self.budgets.get(record.variant, "")
            made += f", its {record.variant} variant per its metadata; budget {budget}"
        return f"artifact: {artifact} ({record.path}{made})"

    def failing_statuses(self) -> tuple[str, ...]:
        if self.strict:
            return ("mismatch", "error", "unsupported", "timeout")
        return ("mismatch", "error")

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

    # -- JSON in and out ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON report (its keys are documented in the README)."""
        return {
            "schema": SCHEMA,
            "verdict": "pass" if self else "fail",
            "exit_code": self.exit_code,
            "strict": self.strict,
            "summary": self.summary(),
            "request": {
                "models": self.models,
                "exporters": self.exporters,
                "artifacts": self.artifacts,
                "backends": self.backends,
                "atol": self.atol,
                "rtol": self.rtol,
                "compare": dict(self.compare),
                "onnx": self.onnx,
                "variants": list(self.variants),
                "budgets": dict(self.budgets),
            },
            "plan": dict(self.plan),
            "warned": self.warned,
            "cases": {
                model: [case_to_dict(c) for c in cases] for model, cases in self.cases.items()
            },
            "cells": [c.to_dict() for c in self.cells()],
            "exports": [e.to_dict() for e in self.exports],
            "results": [r.to_dict() for r in self.results],
            "environment": self.environment,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityReport:
        """A report read back from :meth:`to_dict` (JSON), e.g. a shard's, to merge."""
        request = data["request"]
        results = [CaseResult.from_dict(r) for r in data["results"]]
        cells: dict[str, Cell] = {}
        seconds = {
            c.get("id") or cell_id(c["model"], c["artifact"], c["backend"]): c["seconds"]
            for c in data["cells"]
        }
        localizations = {
            c.get("id") or cell_id(c["model"], c["artifact"], c["backend"]): c["localization"]
            for c in data["cells"]
            if c.get("localization")
        }
        for r in results:
            key = cell_id(r.model, r.artifact, r.backend)
            if key not in cells:
                cells[key] = Cell(
                    r.model, r.exporter, r.backend, artifact=r.artifact, variant=r.variant
                )
                cells[key].seconds = seconds.get(key, 0.0)
                if key in localizations:
                    cells[key].localization = Localization.from_dict(localizations[key])
            cells[key].results.append(r)
        return cls(
            models=list(request["models"]),
            exporters=list(request["exporters"]),
            backends=list(request["backends"]),
            results=results,
            cells_run=list(cells.values()),
            exports=[ArtifactRecord.from_dict(e) for e in data["exports"]],
            cases={m: [case_from_dict(c) for c in cs] for m, cs in data["cases"].items()},
            strict=data["strict"],
            atol=request["atol"],
            rtol=request["rtol"],
            compare=dict(request.get("compare", {})),
            onnx=request["onnx"],
            seconds=data["seconds"],
            environment=dict(data["environment"]),
            artifacts=list(request.get("artifacts") or request["exporters"]),
            plan=dict(data.get("plan", {})),
            variants=list(request.get("variants", ["base"])),
            budgets=dict(request.get("budgets", {})),
        )


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
