"""The first divergence: PyTorch's module values against the same values in the file.

Each captured PyTorch tensor (a module's result, or an argument it was called with) is
matched to one ONNX value of its module (:mod:`nnkit.localize.mapping`): among the
module's outputs (inputs) of the same shape, the one closest to it, so the items of a
tuple (an LSTM's ``output, (h_n, c_n)``) and the calls of a module used twice each find
their own value. The runtime runs the file once with every candidate value exposed; each
module output is then judged with the cell's tolerance, in execution order.

The first divergence is the first module output that fails. Its *cut* is the nodes that
compute it from values that agree (module outputs and arguments that passed, the graph's
inputs): the divergent nodes, whose inputs agree by construction. When the cut holds
nodes of other modules (functional code between modules, a module fused into its
neighbour), the divergence is put at the nearest module that encloses them all, and a
note says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nnkit.compare import OutputCompareResult, Tolerance
from nnkit.compare.metrics import compare_with
from nnkit.localize.mapping import (
    Scopes,
    enclosing,
    is_input_key,
    key_module,
    module_keys,
    within,
)


@dataclass
class Point:
    """A PyTorch tensor matched to an ONNX value, and how they compare.

    ``key`` is the captured key (``fc1``, ``rnn[1]``, ``relu#2``, ``fc1(in)[0]``) or, for
    the graph's outputs, the output's name (``module`` is then ``""``).
    """

    key: str
    module: str
    value: str
    result: OutputCompareResult
    is_input: bool = False
    #: The captured key of a module without nodes of its own that the exporter folded
    #: into this one (a batch norm into the conv before it): the value holds its output,
    #: and is compared with it.
    folded: str = ""

    @property
    def label(self) -> str:
        """How the trace names it: ``fc1``, ``conv1+bn1`` (folded), the output's name."""
        return f"{self.key}+{self.folded}" if self.folded else self.key


@dataclass
class Divergence:
    """The first module output that differs, and the nodes that compute it from values
    that agree."""

    point: Point
    module: str
    nodes: list[int]
    #: The cut's inputs: values that agree with PyTorch, in the order the cut reads them.
    inputs: list[str]
    input_max_abs_diff: float | None
    notes: list[str] = field(default_factory=list)


def candidates(scopes: Scopes, keys: Sequence[str]) -> list[str]:
    """Every ONNX value a captured key may be matched to: the outputs and inputs of the
    modules that have nodes, then the graph's outputs; each once, in that order."""
    found: list[str] = []
    for module, module_keys_ in module_keys(keys).items():
        if any(within(m, module) for m in scopes.modules):
            if any(not is_input_key(k) for k in module_keys_):
                found += scopes.outputs(module)
            if any(is_input_key(k) for k in module_keys_):
                found += scopes.inputs(module)
    graph_inputs = {v.name for v in scopes.graph.input}
    found += [o.name for o in scopes.graph.output]
    return [v for v in dict.fromkeys(found) if v not in graph_inputs]


def trace(
    scopes: Scopes,
    captured: Mapping[str, np.ndarray],
    reference_outputs: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    tolerance: Tolerance,
) -> tuple[list[Point], list[str]]:
    """Match every captured tensor to a value and compare; the points in execution order
    (the graph's outputs last) and the modules left unmapped.

    ``got`` holds the runtime's values by ONNX name (the graph's inputs are the feeds).
    """
    values = {**{k: np.asarray(v) for k, v in feeds.items()}, **got}
    points: list[Point] = []
    unmapped: list[str] = []
    for module, keys in module_keys(list(captured)).items():
        mapped = False
        for want_input in (False, True):
            group = [k for k in keys if is_input_key(k) == want_input]
            if not group:
                continue
            names = scopes.inputs(module) if want_input else scopes.outputs(module)
            pairs = _match(group, captured, [n for n in names if n in values], values)
            for key, value in pairs.items():
                result = _compare(key, captured[key], values[value], tolerance)
                points.append(Point(key, module, value, result, is_input=want_input))
                mapped = mapped or not want_input
        if not mapped:
            unmapped.append(module)
    order = {k: i for i, k in enumerate(captured)}
    points.sort(key=lambda p: order[p.key])
    unmapped = _fold(points, unmapped, captured, values, order, tolerance)
    for name, ref in reference_outputs.items():
        found: str | None = name if name in values else None
        if found is None:  # a file exported elsewhere: its outputs by position
            position = list(reference_outputs).index(name)
            outputs = [o.name for o in scopes.graph.output]
            found = outputs[position] if position < len(outputs) else None
        if found is not None and found in values:
            points.append(Point(name, "", found, _compare(name, ref, values[found], tolerance)))
    return points, unmapped


def first_divergence(
    scopes: Scopes, points: Sequence[Point], feeds: Mapping[str, np.ndarray]
) -> Divergence | None:
    """The first module output (or graph output) that fails, and its cut; None when every
    one passes."""
    failing = next((p for p in points if not p.is_input and not p.result.passed), None)
    if failing is None:
        return None
    # Values known to agree: passed before or after (a cut only reads values upstream).
    agree: dict[str, float] = {name: 0.0 for name in feeds}
    for p in points:
        if p.result.passed and p.value != failing.value:
            agree.setdefault(p.value, p.result.max_abs_diff)
    nodes, inputs = scopes.cut(failing.value, agree)
    notes = []
    where = {scopes.modules[i] for i in nodes if i not in scopes.unscoped}
    module = failing.module
    if any(not within(m, module) for m in where):
        module = enclosing([*where, failing.module])
        outside = sorted(m or "(the model)" for m in where if not within(m, failing.module))
        label = failing.module or "the model's outputs"
        notes.append(
            f"{label} diverges, and the nodes that compute it from agreeing values include "
            f"nodes of {', '.join(outside)} (functional, fused or inlined code): put at the "
            f"nearest enclosing module, {module or '(the model)'}"
        )
    diffs = [agree[v] for v in inputs if v in agree]
    return Divergence(failing, module, nodes, inputs, max(diffs) if diffs else None, notes=notes)


def _fold(
    points: list[Point],
    unmapped: list[str],
    captured: Mapping[str, np.ndarray],
    values: Mapping[str, np.ndarray],
    order: Mapping[str, int],
    tolerance: Tolerance,
) -> list[str]:
    """Find the modules the exporter folded into the one run just before them.

    The torchscript exporter folds a batch norm into the conv before it and names the
    node after the conv: the conv's value in the file is the batch norm's output. A
    module without nodes whose output is closer to the value of the mapped module that
    ran just before it takes that value (the point is compared with its output); the
    modules still unmapped are returned.
    """
    outputs = [p for p in points if not p.is_input]
    still = []
    for module in unmapped:
        keys = [k for k in captured if not is_input_key(k) and key_module(k) == module]
        folded = False
        for key in keys:
            before = [p for p in outputs if order[p.key] < order[key]]
            if not before or before[-1].folded:
                continue
            prev = before[-1]
            ref, got = np.asarray(captured[key]), np.asarray(values[prev.value])
            if ref.shape != got.shape:
                continue
            if _distance(ref, got) < _distance(np.asarray(captured[prev.key]), got):
                prev.folded = key
                prev.result = _compare(key, ref, got, tolerance)
                folded = True
        if not folded:
            still.append(module)
    return still


def _match(
    keys: Sequence[str],
    captured: Mapping[str, np.ndarray],
    names: Sequence[str],
    values: Mapping[str, np.ndarray],
) -> dict[str, str]:
    """Each key's value: of the same shape, not taken yet, the closest (the later one on
    a tie: a module's result is the last value it computes)."""
    taken: set[str] = set()
    pairs: dict[str, str] = {}
    for key in keys:
        ref = np.asarray(captured[key])
        options = [
            n for n in reversed(names) if n not in taken and np.shape(values[n]) == ref.shape
        ]
        if not options:
            continue
        best = min(options, key=lambda n: _distance(ref, np.asarray(values[n])))
        taken.add(best)
        pairs[key] = best
    return pairs


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    try:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    except (TypeError, ValueError):
        return float("inf")
    if diff.size == 0:
        return 0.0
    return float(np.nan_to_num(diff, nan=np.inf).max())


def _compare(
    name: str, ref: np.ndarray, got: np.ndarray, tolerance: Tolerance
) -> OutputCompareResult:
    ref = np.asarray(ref)
    return compare_with(name, ref, np.asarray(got), tolerance.check(name, ref.dtype))
