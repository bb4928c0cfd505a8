"""Plan a parity run: a request becomes an ordered list of cells, before anything runs.

A :class:`ParityRequest` carries every option of a run: the models, each with its own
inputs, cases and tolerances (:class:`ModelSpec`), and the exporters, backends and
limits they share. :func:`plan` checks it (refusing in one line what cannot be done:
an unknown exporter or backend, a backend that does not run here, a file that names
code it would run) and turns it into a :class:`Plan`: models x artifacts x backends,
each cell with a stable id, every model's cases worked out. Nothing is built,
exported or run; :func:`nnkit.matrix.execute.execute` does that.

The second axis is an *artifact*: the ONNX file under test, and how it came to be
(exported here by an exporter, or given with ``--onnx``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.compare import Rule, Tolerance
from nnkit.compare.budget import Budget
from nnkit.errors import SpecError
from nnkit.matrix.cases import ParityRequestError, ShapeCase, case_to_dict, load_data, model_cases
from nnkit.matrix.results import cell_id
from nnkit.matrix.sources import model_from_metadata, select_backends
from nnkit.spec import TensorSpec

if TYPE_CHECKING:
    from nnkit.matrix.shard import Shard

#: The id of the artifact an ``--onnx`` file is.
FILE_ARTIFACT = "file"
#: Exporter label of an ``--onnx`` file whose metadata does not name its exporter.
FILE_EXPORTER = "file"
#: Seconds one step of a run may take by default (see :class:`ParityRequest`).
DEFAULT_TIMEOUT = 600.0


@dataclass
class ModelSpec:
    """One model of a request and the settings that are its own.

    ``ref`` is a zoo name, ``file.py:Name`` or ``module:name``; ``obj`` an
    ``nn.Module`` or :class:`~nnkit.resolve.ResolvedModel` given from Python instead
    (``ref`` then names it). ``exporters`` replaces the request's for this model.
    """

    ref: str = ""
    obj: Any = None
    #: The model's name in reports and cell ids (default: ``ref``): a manifest names a
    #: model as written, while ``ref`` is where it is found from here.
    name: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    ignore_outputs: tuple[str, ...] = ()
    cases: tuple[Mapping[str, int], ...] = ()
    data: str | Path | Mapping[str, Mapping[str, Any]] | None = None
    generated_cases: bool = True
    atol: float | None = None
    rtol: float | None = None
    compare: Mapping[str, Rule | str] = field(default_factory=dict)
    exporters: tuple[str, ...] | None = None

    def tolerance(self) -> Tolerance:
        """The comparison policy of this model (checked: NaN or negative is refused)."""
        return Tolerance(atol=self.atol, rtol=self.rtol, compare=dict(self.compare))


@dataclass
class ParityRequest:
    """Everything a parity run is asked to do (the CLI, the manifest and the Python API
    all build one).

    ``models`` empty means the whole zoo (with ``onnx``: the model the file names).
    """

    models: list[ModelSpec] = field(default_factory=list)
    exporters: list[str] | None = None
    backends: list[str] | None = None
    onnx: Path | None = None
    artifacts: Path | None = None
    strict: bool = False
    timeout: float | None = DEFAULT_TIMEOUT
    trust_metadata: bool = False
    #: The manifest the request was read from, if any.
    config: Path | None = None
    #: Localize each mismatching cell's first divergence (:mod:`nnkit.localize`): on its
    #: first mismatching case, or on the case of this name.
    localize: bool = False
    localize_case: str | None = None
    # -- scale: shards, the export cache, parallel cells, the cap per cell ----------------
    #: Run only this share of the plan's cells (``--shard I/N``, :mod:`nnkit.matrix.shard`).
    shard: Shard | None = None
    #: The export cache's folder (:mod:`nnkit.cache`); None: export afresh every time.
    cache: Path | None = None
    #: Runtime worker processes that run cells side by side.
    jobs: int = 1
    #: Seconds one cell (loading the file, every case) may take; its cases not done by
    #: then are ``timeout`` results. None: no cap.
    max_seconds_per_cell: float | None = None
    #: Rewrites of every artifact to check too (:mod:`nnkit.rewrites`; ``base`` always
    #: runs), and ``--budget`` overrides: (variant, metric -> value), later ones win.
    variants: list[str] | None = None
    budgets: Sequence[tuple[str, Mapping[str, float]]] = ()

    @classmethod
    def from_options(
        cls,
        models: Sequence[Any] = (),
        *,
        inputs: Sequence[TensorSpec] = (),
        cases: Sequence[str | Mapping[str, int]] = (),
        data: str | Path | Mapping[str, Mapping[str, Any]] | None = None,
        generated_cases: bool = True,
        ignore_outputs: Sequence[str] = (),
        atol: float | None = None,
        rtol: float | None = None,
        compare: Mapping[str, Rule | str] | None = None,
        **request: Any,
    ) -> ParityRequest:
        """A request whose models all share one set of model options (the command line).

        ``models`` are references or objects; ``request`` are the request-level fields.
        """
        from nnkit.spec import parse_sizes

        chosen = tuple(parse_sizes(c) if isinstance(c, str) else dict(c) for c in cases)
        shared: dict[str, Any] = {
            "inputs": tuple(inputs),
            "ignore_outputs": tuple(ignore_outputs),
            "cases": chosen,
            "data": data,
            "generated_cases": generated_cases,
            "atol": atol,
            "rtol": rtol,
            "compare": dict(compare or {}),
        }
        specs = [
            ModelSpec(ref=m, **shared) if isinstance(m, str) else ModelSpec(obj=m, **shared)
            for m in models
        ]
        if not specs:  # the zoo, or the model an --onnx file names: options still apply
            specs = [ModelSpec(**shared)]
        return cls(models=specs, **request)


@dataclass
class ArtifactPlan:
    """One model's file under test: exported here by ``exporter``, or an ``--onnx`` file."""

    id: str
    source: str
    exporter: str
    path: Path | None = None
    #: A variant's rewrite (``fp16``; source ``rewrite``) and the artifact it rewrites.
    variant: str = "base"
    base: str = ""

    def to_dict(self) -> dict[str, Any]:
        body = {
            "id": self.id,
            "source": self.source,
            "exporter": self.exporter,
            "path": None if self.path is None else str(self.path),
        }
        if self.variant != "base":
            body.update(variant=self.variant, base=self.base)
        return body


@dataclass
class ModelPlan:
    """One model of the plan: what to build, its cases and its artifacts."""

    name: str
    spec: ModelSpec
    inputs: tuple[TensorSpec, ...]
    cases: list[ShapeCase]
    artifacts: list[ArtifactPlan]
    #: The object given from Python, resolved (it runs in the caller's process).
    resolved: Any = None

    @property
    def ref(self) -> str:
        """Where the model is built from (an object is registered under its name)."""
        return self.spec.ref if self.resolved is None else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": [str(s) for s in self.inputs],
            "cases": [case_to_dict(c) for c in self.cases],
            "artifacts": [a.to_dict() for a in self.artifacts],
        }


@dataclass(frozen=True)
class CellPlan:
    """One cell to run: a model, one of its artifacts, a backend; ``id`` is stable."""

    model: str
    artifact: str
    backend: str

    @property
    def id(self) -> str:
        return cell_id(self.model, self.artifact, self.backend)


@dataclass
class Plan:
    """A request worked out: models (with cases and artifacts) x backends, in order."""

    request: ParityRequest
    models: list[ModelPlan]
    backends: list[str]
    exporters: list[str]
    #: The variants (``base`` first) and every rewrite's budget (:mod:`nnkit.compare.budget`).
    variants: list[str] = field(default_factory=lambda: ["base"])
    budgets: dict[str, Budget] = field(default_factory=dict)

    @property
    def cells(self) -> list[CellPlan]:
        """Every cell, grouped by model then artifact (a model is exported once)."""
        return [
            CellPlan(m.name, a.id, b)
            for m in self.models
            for a in m.artifacts
            for b in self.backends
        ]

    @property
    def artifacts(self) -> list[str]:
        """The artifact columns, each once, in order."""
        return list(dict.fromkeys(a.id for m in self.models for a in m.artifacts))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON: what ``--list`` prints, what shards agree on."""
        body = {
            "models": [m.to_dict() for m in self.models],
            "backends": list(self.backends),
            "cells": [
                {"id": c.id, "model": c.model, "artifact": c.artifact, "backend": c.backend}
                for c in self.cells
            ],
        }
        if len(self.variants) > 1:
            body["variants"] = list(self.variants)
            body["budgets"] = {v: b.text() for v, b in self.budgets.items() if v in self.variants}
        return {"fingerprint": fingerprint(body), **body}


def fingerprint(body: Mapping[str, Any]) -> str:
    """A short hash of a plan's JSON: two runs of the same plan share it."""
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- planning ---------------------------------------------------------------------------------


def plan(request: ParityRequest) -> Plan:
    """Check ``request`` and work it out into a :class:`Plan`; nothing is built or run.

    Raises:
        NnkitError: the request cannot be carried out (unknown model, exporter or
            backend, a backend that does not run here, a bad spec or tolerance, a
            missing or untrusted ``onnx`` file, real inputs that do not fit a model).
    """
    from nnkit.export import EXPORTERS

    for spec in request.models:
        spec.tolerance()  # a NaN, infinite or negative tolerance: refused before any work
    from nnkit.matrix.variants import file_variant, plan_variants

    variants, budgets = plan_variants(request.variants, request.budgets or ())
    from nnkit.onnxfile import load_model_file, metadata, stamped_specs

    onnx_meta: dict[str, str] = {}
    made = "base"  # what an --onnx file is: a variant made by nnkit says so in its metadata
    stamped: tuple[TensorSpec, ...] = ()
    specs = list(request.models)
    if request.onnx is not None:
        if request.exporters is not None:
            raise ParityRequestError(
                "--onnx checks a file exported earlier; --exporters does not go with it"
            )
        if len(specs) > 1:
            raise ParityRequestError(
                f"--onnx checks one file against one model; {len(specs)} models given"
            )
        proto = load_model_file(request.onnx, external_data=False)
        onnx_meta = metadata(proto)
        stamped = stamped_specs(proto)
        if not specs or not (specs[0].ref or specs[0].obj is not None):
            if "nnkit.model" not in onnx_meta:
                raise ParityRequestError(
                    f"{request.onnx} does not say which model it is (no nnkit.model metadata); "
                    "give MODEL"
                )
            base = specs[0] if specs else ModelSpec()
            ref = model_from_metadata(onnx_meta, request.onnx, trust=request.trust_metadata)
            specs = [_with(base, ref=ref)]
        exporters = [onnx_meta.get("nnkit.exporter") or FILE_EXPORTER]
        made = file_variant(onnx_meta, request.onnx)
    else:
        exporters = list(request.exporters) if request.exporters is not None else list(EXPORTERS)
        for spec in specs:
            for name in [*exporters, *(spec.exporters or ())]:
                if name not in EXPORTERS:
                    raise ParityRequestError(
                        f"unknown exporter {name!r}: valid exporters are {', '.join(EXPORTERS)}"
                    )
        if not exporters:
            raise ParityRequestError("no exporters given")
    if not specs or not any(s.ref or s.obj is not None for s in specs):
        from nnkit.models import ZOO

        base = specs[0] if specs else ModelSpec()
        specs = [_with(base, ref=name) for name in ZOO]
    models = [_model_plan(spec, request, exporters, stamped, variants, made) for spec in specs]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ParityRequestError(f"a model is named twice: {', '.join(names)}")
    return Plan(
        request=request,
        models=models,
        backends=select_backends(request.backends),
        exporters=list(dict.fromkeys(exporters)),
        variants=list(dict.fromkeys([*variants, made])),
        budgets=budgets,
    )


def _with(spec: ModelSpec, **changes: Any) -> ModelSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


def _model_plan(
    spec: ModelSpec,
    request: ParityRequest,
    exporters: list[str],
    stamped: tuple[TensorSpec, ...],
    variants: Sequence[str] = ("base",),
    made: str = "base",
) -> ModelPlan:
    """One model's name, input specs, cases and artifacts."""
    resolved = None
    if spec.obj is not None:
        from nnkit.resolve import ResolvedModel, resolve_object

        resolved = (
            spec.obj
            if isinstance(spec.obj, ResolvedModel)
            else resolve_object(spec.obj, inputs=spec.inputs, ignore_outputs=spec.ignore_outputs)
        )
        name, inputs, examples = resolved.name, tuple(resolved.inputs), resolved.examples
    else:
        name, examples = spec.name or spec.ref, None
        inputs = model_inputs(spec, stamped)
    if request.onnx is not None:
        artifacts = [ArtifactPlan(FILE_ARTIFACT, "file", exporters[0], request.onnx, variant=made)]
    else:
        artifacts = [ArtifactPlan(e, "export", e) for e in (spec.exporters or exporters)]
    artifacts = [
        a
        if v == "base"
        else ArtifactPlan(f"{a.id}+{v}", "rewrite", a.exporter, variant=v, base=a.id)
        for a in artifacts
        for v in variants
    ]
    real = load_data(spec.data) if spec.data is not None else None
    cases = model_cases(
        _Shape(name, inputs, examples), chosen=spec.cases, data=real, generated=spec.generated_cases
    )
    return ModelPlan(name, spec, inputs, cases, artifacts, resolved)


@dataclass
class _Shape:
    name: str
    inputs: tuple[TensorSpec, ...]
    examples: dict[str, Any] | None


def model_inputs(spec: ModelSpec, stamped: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """A referenced model's input specs, known without building it: given, the zoo's, or
    stamped in the ``--onnx`` file.

    Raises:
        ModelSourceError: an unknown zoo name.
        SpecError: a model outside the zoo without specs, or specs that do not fit a
            zoo model's count.
    """
    from nnkit import models

    if spec.ref in models.ZOO:
        entry = models.ZOO[spec.ref]
        if spec.inputs and len(spec.inputs) != len(entry.inputs):
            raise SpecError(
                f"model {spec.ref!r} takes {len(entry.inputs)} input(s) "
                f"({', '.join(map(str, entry.inputs))}); {len(spec.inputs)} given"
            )
        return tuple(spec.inputs) or entry.inputs
    if ":" not in spec.ref:
        models.get(spec.ref)  # raises the unknown-model error, listing the zoo
    found = tuple(spec.inputs) or stamped
    if not found:
        raise SpecError(
            f"model {spec.ref!r} is not in the zoo: give its inputs with --input "
            "name:dims[:dtype], e.g. --input x:batch=2x3x32x32"
        )
    return found
