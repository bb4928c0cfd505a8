"""Shards of a plan: a deterministic, balanced share of the cells for one CI job.

``--shard I/N`` runs the I-th of N shares of a plan (1-based). The unit of a share is a
*model*: all its cells stay together, so each model is built, run by PyTorch and exported
once, by one shard. Models are dealt by their expected cost (:func:`model_cost`), the
costliest first, each to the shard with the least cost so far (ties: the lower index):
the same plan gives the same shares on every machine, the shares are disjoint and
together they are the plan. A shard of more shards than models may be empty (its report
has no results; the merge still needs it).

A shard's report records its place (:func:`shard_record`); :mod:`nnkit.matrix.merge`
checks those records before merging reports back into the report of the whole plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnkit.matrix.cases import ParityRequestError
from nnkit.matrix.plan import ModelPlan, Plan

#: Expected seconds to make one artifact, per source (``export``: per exporter).
EXPORT_COST = {"dynamo": 2.0, "torchscript": 0.6}
#: Expected cost of one case on a backend, relative to onnxruntime's: the onnx reference
#: evaluator is pure Python (it dominates big models' matrices).
BACKEND_WEIGHT = {
    "cpu": 1.0,
    "cuda": 1.0,
    "tensorrt": 4.0,
    "openvino": 1.5,
    "tract": 1.5,
    "reference": 8.0,
}
#: Expected seconds of one case on a weight-1 backend for the smallest model.
CASE_COST = 0.01


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` shares of a plan (1-based)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> ``Shard(2, 3)``.

    Raises:
        ParityRequestError: not ``I/N`` with ``1 <= I <= N``.
    """
    m = _SHARD.fullmatch(text)
    if not m:
        raise ParityRequestError(f"--shard {text!r} is not I/N (e.g. 2/3: the second of three)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ParityRequestError(
            f"--shard {text!r}: I must be 1 to N and N at least 1 (e.g. 1/{max(count, 1)})"
        )
    return Shard(index, count)


def size_hint(model: ModelPlan) -> float:
    """How big a model's runs are, from its input specs alone (nothing is built): 1 plus
    the base-10 logarithm of the elements its example inputs hold."""
    elements = sum(math.prod(s.example_shape) for s in model.inputs)
    return 1.0 + math.log10(max(elements, 1))


def model_cost(model: ModelPlan, backends: list[str]) -> float:
    """A model's expected cost: making each artifact, plus each case on each backend
    (the backend's weight times the model's size hint)."""
    make = sum(
        EXPORT_COST.get(a.exporter, 1.0) if a.source == "export" else 0.0 for a in model.artifacts
    )
    per_case = CASE_COST * size_hint(model) * sum(BACKEND_WEIGHT.get(b, 2.0) for b in backends)
    return make + per_case * len(model.cases) * len(model.artifacts)


def assign(plan: Plan, count: int) -> list[list[str]]:
    """The model names of each of ``count`` shards, each in plan order."""
    costs = {m.name: model_cost(m, plan.backends) for m in plan.models}
    order = sorted(plan.models, key=lambda m: (-costs[m.name], m.name))
    loads = [0.0] * count
    shares: list[set[str]] = [set() for _ in range(count)]
    for m in order:
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += costs[m.name]
        shares[lightest].add(m.name)
    return [[m.name for m in plan.models if m.name in share] for share in shares]


def shard_cells(plan: Plan, shard: Shard) -> list[str]:
    """The ids of the cells of ``shard``, in plan order."""
    models = set(assign(plan, shard.count)[shard.index - 1])
    return [c.id for c in plan.cells if c.model in models]


def settings(plan: Plan) -> str:
    """A hash of what judges the cells besides the plan: strictness, the cap per cell,
    each model's tolerances, rules and ignored outputs (shards run with other settings must not merge)."""
    from nnkit.matrix.plan import fingerprint

    request = plan.request
    return fingerprint(
        {
            "strict": request.strict,
            "max_seconds_per_cell": request.max_seconds_per_cell,
            "models": {
                m.name: [
                    m.spec.atol,
                    m.spec.rtol,
                    sorted(map(str, m.spec.compare.items())),
                    list(m.spec.ignore_outputs),
                ]
                for m in plan.models
            },
        }
    )


def plan_record(plan: Plan, shard: Shard | None) -> dict[str, Any]:
    """What a report says of its plan: the fingerprint, the settings' hash, every cell id
    of the whole plan, and (sharded) which shard it is and the cells it ran."""
    record: dict[str, Any] = {
        "fingerprint": plan.to_dict()["fingerprint"],
        "settings": settings(plan),
        "cells": [c.id for c in plan.cells],
    }
    if shard is not None:
        record["shard"] = {
            "index": shard.index,
            "count": shard.count,
            "cells": shard_cells(plan, shard),
        }
    return record


def listing(plan: Plan, shard: Shard | None = None) -> dict[str, Any]:
    """``--list --json``: the plan (its cells, or the shard's), with expected costs."""
    body = plan.to_dict()
    costs = {m.name: round(model_cost(m, plan.backends), 3) for m in plan.models}
    body["costs"] = costs
    if shard is not None:
        chosen = set(shard_cells(plan, shard))
        body["shard"] = {"index": shard.index, "count": shard.count}
        body["cells"] = [c for c in body["cells"] if c["id"] in chosen]
    return body


def render_listing(data: Mapping[str, Any]) -> str:
    """``--list``: one line per cell (its id, then model, artifact, backend), a count."""
    from nnkit.render import table

    rows = [[c["id"], c["model"], c["artifact"], c["backend"]] for c in data["cells"]]
    models = list(dict.fromkeys(c["model"] for c in data["cells"]))
    where = ""
    if "shard" in data:
        where = f" (shard {data['shard']['index']}/{data['shard']['count']})"
    cost = sum(data["costs"][m] for m in models)
    lines = [
        f"nnkit parity plan {data['fingerprint']}{where}: {len(rows)} cells, "
        f"{len(models)} models, expected cost {cost:.1f}",
    ]
    if rows:
        lines += ["", table(["id", "model", "artifact", "backend"], rows)]
    return "\n".join(lines)
