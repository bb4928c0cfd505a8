"""Localize a divergence: the first PyTorch module and ONNX node(s) that differ, whom to
blame, and a minimal repro.

:func:`localize_case` takes a mismatching case (a model, its file, a backend, the case's
inputs) and:

1. runs PyTorch with forward hooks on every submodule, in the user-code worker
   (:mod:`nnkit.localize.capture`);
2. maps ONNX values to modules by the exporters' scopes (:mod:`nnkit.localize.mapping`);
3. runs the file on the backend with those values exposed as outputs, in the runtimes'
   worker, and compares each with PyTorch's in execution order, with the cell's
   tolerance (:mod:`nnkit.localize.divergence`);
4. runs the divergent nodes alone on every CPU backend to blame the file or the runtime,
   and writes them as a standalone repro (:mod:`nnkit.localize.repro`).

Exposing values can change what a runtime fuses: a divergence that only a fusion makes
is reported as ``not_found``, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnkit.errors import NnkitError
from nnkit.localize.result import BLAMES, STATUSES, Localization, Repro, TracePoint

if TYPE_CHECKING:
    from nnkit.compare import Tolerance
    from nnkit.matrix.cell import Executor
    from nnkit.steps import ModelRequest

__all__ = ["BLAMES", "STATUSES", "Localization", "Repro", "TracePoint", "localize_case"]


def localize_case(
    *,
    user: Executor,
    runtimes: Executor,
    request: ModelRequest,
    path: str | Path,
    backend: str,
    case: str,
    feeds: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    out: Path | None = None,
    timeout: float | None = None,
) -> Localization:
    """Localize where ``path`` on ``backend`` first departs from the model on ``feeds``.

    Args:
        user: the worker that runs the model's code.
        runtimes: the worker that runs the runtimes.
        request: the model.
        path: its ONNX file.
        backend: the backend under test.
        case: the case's name (reported).
        feeds: the case's inputs, by the file's input names.
        tolerance: the cell's comparison policy.
        out: where to write the repro; none is written when None.
        timeout: seconds each step may take.

    Returns:
        ``found`` with the module, nodes, blame and repro; ``not_found`` saying why.

    Raises:
        NnkitError: PyTorch fails on the inputs, the file cannot be read or edited, or the
            backend cannot run it.
    """
    from nnkit.fsutil import temporary_folder
    from nnkit.localize.capture import capture_run
    from nnkit.localize.divergence import candidates, first_divergence, trace
    from nnkit.localize.mapping import node_scopes
    from nnkit.localize.repro import blame_cut, cut_model
    from nnkit.onnxfile import load_model_file
    from nnkit.onnxfile.edits import expose

    captured = user.call(capture_run, request, dict(feeds), timeout=timeout)
    model = load_model_file(path)
    notes: list[str] = []
    feeds = _by_file_names(model, feeds, notes)
    scopes = node_scopes(model, captured.types)
    exposed = expose(model, candidates(scopes, list(captured.captured)), where=str(path))
    with temporary_folder("nnkit-localize-") as work:
        exposed_path = str(Path(work) / "exposed.onnx")
        _save(exposed, exposed_path)
        got = _run_once(runtimes, backend, exposed_path, dict(feeds), timeout)
    points, unmapped = trace(scopes, captured.captured, captured.outputs, got, feeds, tolerance)
    if scopes.source == "none":
        notes.append("the file names no module scopes: every node is the model's")
    if unmapped:
        notes.append(
            f"{len(unmapped)} of {len(captured.types) - 1} modules have no value of their own "
            "in the file (fused into a neighbour or inlined): their nearest mapped "
            "neighbour stands for them"
        )
    divergence = first_divergence(scopes, points, feeds)
    outputs_only = [p for p in points if not p.is_input]
    if divergence is None:
        return Localization(
            case,
            "not_found",
            f"with every mapped value exposed, {backend} agrees with PyTorch at every one "
            "and at the outputs: the difference needs the graph as it was (exposing values "
            "changes what the runtime fuses)",
            trace=[_trace_point(p) for p in outputs_only],
            notes=notes,
        )
    point = divergence.point
    before = outputs_only[: outputs_only.index(point) + 1]
    nodes = [model.graph.node[i] for i in divergence.nodes]
    result = Localization(
        case,
        "found",
        module=divergence.module,
        module_type=captured.types.get(divergence.module),
        onnx_nodes=[
            n.name or f"{n.op_type}_{i}" for n, i in zip(nodes, divergence.nodes, strict=True)
        ],
        op_types=list(dict.fromkeys(n.op_type for n in nodes)),
        input_max_abs_diff=divergence.input_max_abs_diff,
        max_abs_diff=point.result.max_abs_diff,
        nonfinite_mismatches=point.result.nonfinite_mismatches,
        trace=[_trace_point(p) for p in before],
        notes=[*notes, *divergence.notes],
    )
    if point.folded:
        result.notes.append(
            f"{point.folded} has no node of its own: the file folds it into {point.key}, "
            f"so {point.key}'s value is compared with {point.folded}'s output"
        )
    suspects = _unmapped_between(list(captured.captured), before, unmapped)
    if suspects:
        result.notes.append(
            f"{', '.join(suspects)} ran between the last agreeing value and "
            f"{point.key if point.module else 'the output'} and {'has' if len(suspects) == 1 else 'have'} "
            "no value of its own in the file (fused into it?): the divergence may be there"
        )
    torch_values = _torch_values(points, captured.captured, captured.outputs, feeds)
    sub, names = cut_model(model, divergence.inputs, point.value)
    blamed = blame_cut(
        runtimes,
        sub,
        {names[v]: torch_values[v] for v in divergence.inputs},
        {names[point.value]: torch_values[point.value]},
        backend=backend,
        tolerance=tolerance,
        out=out,
        timeout=timeout,
    )
    result.blame, result.agreeing_backends = blamed.blame, blamed.agreeing
    result.repro = blamed.repro
    result.notes += blamed.notes
    if blamed.blame == "unknown" and blamed.notes:
        result.message = blamed.notes[-1]
    return result


def _by_file_names(
    model: object, feeds: Mapping[str, np.ndarray], notes: list[str]
) -> dict[str, np.ndarray]:
    """The feeds under the file's input names: by name, else (a file exported elsewhere,
    as many inputs) by position, with a note, as the cell matched them."""
    import onnx

    assert isinstance(model, onnx.ModelProto)
    weights = {t.name for t in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in weights]
    if set(names) <= set(feeds) or len(names) != len(feeds):
        return dict(feeds)
    notes.append(
        "inputs matched by position, the names differ ("
        + ", ".join(f"{a!r}={b!r}" for a, b in zip(feeds, names, strict=True) if a != b)
        + ")"
    )
    return dict(zip(names, feeds.values(), strict=True))


def _unmapped_between(keys: list[str], before: list, unmapped: list[str]) -> list[str]:
    """The unmapped modules that finished after the last agreeing output point of
    ``before`` and before its last (failing) point."""
    from nnkit.localize.mapping import is_input_key, key_module

    def index(point: object) -> int:
        key = getattr(point, "key", "")
        return keys.index(key) if key in keys else len(keys)

    start = index(before[-2]) + 1 if len(before) > 1 else 0
    between = keys[start : index(before[-1])]
    found = [key_module(k) for k in between if not is_input_key(k) and key_module(k) in unmapped]
    return list(dict.fromkeys(found))


def _trace_point(point: object) -> TracePoint:
    from nnkit.localize.divergence import Point

    assert isinstance(point, Point)
    label = point.label if point.module else f"(output {point.key})"
    return TracePoint(label, point.value, point.result.max_abs_diff, point.result.passed)


def _torch_values(
    points: list,
    captured: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """PyTorch's value of every matched ONNX value (the feeds for the graph's inputs)."""
    values = {k: np.asarray(v) for k, v in feeds.items()}
    for p in points:
        key = p.folded or p.key
        values.setdefault(p.value, captured[key] if p.module else outputs[key])
    return values


def _save(model: object, path: str) -> None:
    import onnx

    assert isinstance(model, onnx.ModelProto)
    if model.ByteSize() > 1_800_000_000:  # over protobuf's 2 GB: the weights beside it
        onnx.save(model, path, save_as_external_data=True, location="exposed.onnx.data")
    else:
        onnx.save(model, path)


def _run_once(
    runtimes: Executor, backend: str, path: str, feeds: dict, timeout: float | None
) -> dict[str, np.ndarray]:
    from nnkit.localize.repro import _run

    try:
        return _run(runtimes, backend, path, feeds, timeout)
    except NnkitError as e:
        raise NnkitError(
            f"{backend} cannot run the file with its intermediate values exposed: "
            f"{e.format_message()}"
        ) from None
