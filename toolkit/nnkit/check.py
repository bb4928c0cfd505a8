"""Validate an ONNX file and summarise it.

``onnx.checker`` with ``full_check`` (which runs strict shape inference), then a summary
a person can read: IR version, opsets, inputs and outputs, operator counts, parameters,
size, metadata. Only onnx is imported: no torch, no runtime. Reading the file and its
external data is :mod:`nnkit.onnxfile`'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnkit.errors import describe, first_line
from nnkit.onnxfile import (
    external_data_problems,
    graph_inputs,
    graphs,
    load_model_file,
    metadata,
    value_info,
)

if TYPE_CHECKING:
    import onnx

__all__ = ["CheckResult", "ModelSummary", "check_file", "summarize"]


@dataclass
class ModelSummary:
    """What is in an ONNX file."""

    path: str
    size_bytes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    operators: dict[str, int]
    node_count: int
    parameter_count: int
    metadata: dict[str, str]


@dataclass
class CheckResult:
    """The checker's verdict on a file; true when valid."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    summary: ModelSummary | None = None

    def __bool__(self) -> bool:
        return self.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors,
            "summary": asdict(self.summary) if self.summary else None,
        }


def check_file(path: str | Path) -> CheckResult:
    """Run the full checker on ``path`` and summarise the model.

    Returns:
        The verdict; ``errors`` holds the checker's message when invalid.

    Raises:
        ModelFileError: the file cannot be read at all (exit status 2, not a verdict).
    """
    import onnx

    p = Path(path)
    model = load_model_file(p, external_data=False)  # external data: checked, never read
    problems = external_data_problems(model, p)
    try:
        summary = summarize(model, p)
    except Exception as e:  # a model too broken to summarise is still an invalid model
        return CheckResult(False, [*problems, f"cannot summarise: {first_line(e)}"])
    if problems:
        return CheckResult(False, problems, summary)
    try:
        # The path form handles models over 2 GB and external data.
        onnx.checker.check_model(str(p), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return CheckResult(False, [first_line(e)], summary)
    except Exception as e:  # the checker raises other types on malformed fields
        return CheckResult(False, [describe(e)], summary)
    return CheckResult(True, [], summary)


def summarize(model: onnx.ModelProto, path: Path) -> ModelSummary:
    """A :class:`ModelSummary` of ``model``, read from ``path``."""
    import numpy as np
    import onnx

    ops: Counter[str] = Counter()
    nodes = 0
    for g in graphs(model.graph):
        for n in g.node:
            ops[f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type] += 1
            nodes += 1
    # Parameters are the floating-point initializers; int64 ones are shapes and indices.
    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
    params = sum(int(np.prod(t.dims)) for t in _all_initializers(model) if t.data_type in floats)
    return ModelSummary(
        path=str(path),
        size_bytes=path.stat().st_size,
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        inputs=[_info_dict(v) for v in graph_inputs(model.graph)],
        outputs=[_info_dict(v) for v in model.graph.output],
        operators=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        node_count=nodes,
        parameter_count=params,
        metadata=metadata(model),
    )


def _all_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for g in graphs(model.graph) for t in g.initializer]


def _info_dict(value: onnx.ValueInfoProto) -> dict[str, Any]:
    info = value_info(value)
    return {
        "name": info.name,
        "shape": list(info.dims) if info.ranked else None,
        "dtype": info.dtype,
        "kind": info.kind,
        "type": info.type_text(),
    }
