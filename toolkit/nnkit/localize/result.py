"""What localizing a divergence found: :class:`Localization`, its JSON and its one line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nnkit.compare.text import finite, fmt

#: A localization's statuses: a first divergence found, none found (with why), or an
#: error that stopped it.
STATUSES = ("found", "not_found", "error")
#: Who is to blame: the file (every runtime computes the nodes as the file says), one
#: runtime (another computes them as PyTorch does), or nobody can tell.
BLAMES = ("export", "runtime", "unknown")


@dataclass
class TracePoint:
    """One mapped module output (or graph output), compared with PyTorch's."""

    module: str
    onnx_value: str
    max_abs_diff: float | None
    passed: bool


@dataclass
class Repro:
    """A standalone file of the divergent nodes, its inputs, PyTorch's outputs, and the
    command that shows the difference."""

    onnx: str
    inputs: str
    expected: str
    command: str


@dataclass
class Localization:
    """Where a mismatching case first departs from PyTorch, whose fault it is, a repro.

    ``module`` is the qualified name of the first module whose output differs while its
    inputs agree (``""``: the model itself, for code outside any submodule);
    ``onnx_nodes``/``op_types`` the nodes that compute it from those inputs;
    ``input_max_abs_diff``/``max_abs_diff`` the largest differences at its inputs and
    at its output; ``trace`` every mapped output before it and it, in execution order.
    """

    case: str
    status: str
    message: str = ""
    module: str | None = None
    module_type: str | None = None
    onnx_nodes: list[str] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)
    input_max_abs_diff: float | None = None
    max_abs_diff: float | None = None
    #: Positions of the output where PyTorch and the runtime put NaN/Inf differently
    #: (``max_abs_diff`` is over the others).
    nonfinite_mismatches: int = 0
    blame: str | None = None
    agreeing_backends: list[str] = field(default_factory=list)
    repro: Repro | None = None
    trace: list[TracePoint] = field(default_factory=list)
    #: What the mapping had to approximate (fused or unmapped modules, a cut that spans
    #: several modules), and how a repro was checked.
    notes: list[str] = field(default_factory=list)
    #: Wall-clock seconds the localization took (PyTorch, the exposed run, the blame runs).
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return self.status == "found"

    def summary(self) -> str:
        """The one line: ``first divergence: fc1 (Linear) -> node_Gemm_4 [Gemm]; ...``."""
        if self.status != "found":
            return f"localization: {self.status.replace('_', ' ')}: {self.message}"
        nodes = ", ".join(self.onnx_nodes[:4]) + (
            f", ... ({len(self.onnx_nodes)} nodes)" if len(self.onnx_nodes) > 4 else ""
        )
        inputs = (
            f"inputs agree (max diff {fmt(self.input_max_abs_diff)})"
            if self.input_max_abs_diff is not None
            else "inputs are the model's"
        )
        agreeing = ", ".join(self.agreeing_backends) or "no backend"
        why = {
            "export": f"{agreeing} compute the node(s) as the file says",
            "runtime": f"{agreeing} compute the node(s) as PyTorch does",
            "unknown": self.message or "the runtimes disagree with each other",
        }.get(self.blame or "", "")
        repro = self.repro.onnx if self.repro else "none"
        nonfinite = (
            f" and {self.nonfinite_mismatches} NaN/Inf in different places"
            if self.nonfinite_mismatches
            else ""
        )
        return (
            f"first divergence: {self.module or '(the model)'} ({self.module_type}) -> "
            f"{nodes} [{', '.join(self.op_types)}]; {inputs}, output max diff "
            f"{fmt(self.max_abs_diff)}{nonfinite}; blame: {self.blame} ({why}); repro: {repro}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; non-finite numbers as None (the report is strict JSON)."""
        data = asdict(self)
        for key in ("input_max_abs_diff", "max_abs_diff"):
            data[key] = finite(data[key])
        for point in data["trace"]:
            point["max_abs_diff"] = finite(point["max_abs_diff"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Localization:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("repro"):
            values["repro"] = Repro(**values["repro"])
        values["trace"] = [TracePoint(**t) for t in values.get("trace") or []]
        return cls(**values)
