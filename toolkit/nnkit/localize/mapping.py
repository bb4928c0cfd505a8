"""Which PyTorch module each ONNX node belongs to, and which values enter and leave it.

Both exporters say where a node came from:

- **dynamo** writes the module scope into each node's metadata:
  ``pkg.torch.onnx.name_scopes`` is ``['', 'layer1', 'layer1.0', 'layer1.0.conv1',
  'conv2d']``: the qualified names of the enclosing modules, outermost first, then the
  FX node's own name (nnkit strips the stack traces, never the scopes);
- **torchscript** names each node after its scope: ``/layer1/layer1.0/conv1/Conv``, the
  second call of a module ``relu`` being ``/relu_1/Relu``.

A node with neither (a node an optimizer added) belongs to the root. A node's module is
the innermost scope that names a module the model has. A module's *outputs* are the
values its nodes produce that a node outside it reads (or that the graph outputs), its
*inputs* the values its nodes read that are made outside it (initializers and constants
aside), both in graph order. A module without nodes of its own (fused into a neighbour,
inlined, or called as a function) has neither: the nearest enclosing module stands for
it. Only onnx is used, imported by the caller.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

#: The dynamo exporter's node metadata holding the module scope.
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
#: The dynamo exporter's node metadata holding the classes of the scopes.
CLASS_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
_CALL = re.compile(r"^(?P<base>.+)_(?P<n>\d+)$")


@dataclass
class Scopes:
    """The module of each node of a graph (main graph only), and what enters and leaves each.

    Attributes:
        modules: the module of each node (``""``: the root), by node index.
        source: where the scopes came from: ``dynamo`` (node metadata), ``torchscript``
            (node names) or ``none`` (every node is the root's).
    """

    graph: onnx.GraphProto
    modules: list[str]
    source: str
    #: Nodes the exporter gave no scope at all (an optimizer's, dynamo's shape code
    #: outside any module stack): counted as the root's, but they place nothing.
    unscoped: set[int] = field(default_factory=set)
    _produced: dict[str, int] = field(default_factory=dict)
    _readers: dict[str, list[int]] = field(default_factory=dict)
    _constants: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        g = self.graph
        self._produced = {o: i for i, n in enumerate(g.node) for o in n.output if o}
        for i, node in enumerate(g.node):
            for name in node.input:
                if name:
                    self._readers.setdefault(name, []).append(i)
        self._constants = {t.name for t in g.initializer}
        self._constants |= {o for n in g.node if not any(n.input) for o in n.output}

    def nodes(self, module: str) -> list[int]:
        """The indices of the nodes inside ``module`` (its submodules' too), in graph order."""
        return [i for i, m in enumerate(self.modules) if within(m, module)]

    def outputs(self, module: str) -> list[str]:
        """The values ``module`` computes that are read outside it, in graph order."""
        inside = set(self.nodes(module))
        graph_outputs = {o.name for o in self.graph.output}
        return [
            o
            for i in sorted(inside)
            for o in self.graph.node[i].output
            if o and (o in graph_outputs or any(r not in inside for r in self._readers.get(o, ())))
        ]

    def inputs(self, module: str) -> list[str]:
        """The values ``module`` reads that are made outside it (not weights or constants)."""
        inside = set(self.nodes(module))
        found = [
            name
            for i in sorted(inside)
            for name in self.graph.node[i].input
            if name and name not in self._constants and self._produced.get(name) not in inside
        ]
        return list(dict.fromkeys(found))

    def cut(self, value: str, known: Collection[str]) -> tuple[list[int], list[str]]:
        """The nodes that compute ``value`` from the ``known`` values (graph order), and the
        known values they read (the cut's inputs, in graph order of first use)."""
        keep: set[int] = set()
        todo = [value]
        seen: set[str] = set()
        boundary: list[str] = []
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in known and name != value:
                boundary.append(name)
                continue
            index = self._produced.get(name)
            if index is None or index in keep:
                continue
            keep.add(index)
            todo += [n for n in self.graph.node[index].input if n]
        nodes = sorted(keep)
        order = [n for i in nodes for n in self.graph.node[i].input if n in boundary]
        return nodes, list(dict.fromkeys(order))


def within(module: str, scope: str) -> bool:
    """Whether ``module`` is ``scope`` or inside it (``""`` holds everything)."""
    return not scope or module == scope or module.startswith(scope + ".")


def enclosing(modules: Iterable[str]) -> str:
    """The innermost module that holds every one of ``modules``."""
    parts = [m.split(".") if m else [] for m in modules]
    if not parts:
        return ""
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if any(c != column[0] for c in column):
            break
        common.append(column[0])
    return ".".join(common)


def node_scopes(model: onnx.ModelProto, modules: Collection[str]) -> Scopes:
    """Each main-graph node's module, among the qualified names ``modules`` (the model's
    ``named_modules()``; ``""`` is the root)."""
    known = set(modules)
    graph = model.graph
    dynamo = any(p.key == NAME_SCOPES_KEY for n in graph.node for p in n.metadata_props)
    torchscript = not dynamo and any(n.name.startswith("/") for n in graph.node)
    found: list[str] = []
    unscoped: set[int] = set()
    for index, node in enumerate(graph.node):
        if dynamo:
            module = _dynamo_module(node, known)
        elif torchscript:
            module = _torchscript_module(node.name, known) if node.name.startswith("/") else None
        else:
            module = ""
        if module is None:
            unscoped.add(index)
        found.append(module or "")
    source = "dynamo" if dynamo else "torchscript" if torchscript else "none"
    return Scopes(graph, found, source, unscoped)


def _dynamo_module(node: onnx.NodeProto, known: Collection[str]) -> str | None:
    """The node's module; None for a node without a module stack (``['', ...]`` is the
    root's own code)."""
    raw = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES_KEY), "")
    try:
        scopes = ast.literal_eval(raw) if raw else []
    except (ValueError, SyntaxError):
        scopes = []
    if not isinstance(scopes, list) or not scopes or scopes[0] != "":
        return None
    # the last entry is the FX node's own name; the innermost known module wins
    for name in reversed(scopes[:-1]):
        if isinstance(name, str) and name in known:
            return name
    return ""


def _torchscript_module(name: str, known: Collection[str]) -> str:
    parts = name.split("/")[1:-1]  # "/fc1/Gemm" -> ["fc1"]
    path = ""
    for part in parts:
        resolved = _resolve(part, path, known)
        if resolved is None:
            break
        path = resolved
    return path


def _resolve(part: str, path: str, known: Collection[str]) -> str | None:
    """A torchscript scope component as a qualified name: relative to ``path`` or
    absolute; ``relu_1`` is the second call of ``relu``."""
    for candidate in (f"{path}.{part}" if path else part, part):
        if candidate in known:
            return candidate
    call = _CALL.match(part)
    if call:
        return _resolve(call["base"], path, known)
    return None


def module_keys(keys: Sequence[str]) -> dict[str, list[str]]:
    """Captured keys (:attr:`nnkit.reference.Reference.captured`) grouped by module, in
    order: ``relu``, ``relu#2``, ``fc(in)[0]`` ... all under their module's name."""
    grouped: dict[str, list[str]] = {}
    for key in keys:
        grouped.setdefault(key_module(key), []).append(key)
    return grouped


def key_module(key: str) -> str:
    """The module a captured key belongs to (``layer1.0#2(in)[1]`` -> ``layer1.0``)."""
    return re.split(r"[#(\[]", key, maxsplit=1)[0]


def is_input_key(key: str) -> bool:
    """Whether a captured key is a module's argument (``(in)``) rather than its result."""
    return "(in)" in key
