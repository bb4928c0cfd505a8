"""PyTorch -> ONNX, with either exporter, written atomically and checked.

``dynamo`` (``torch.export`` based, the default) and ``torchscript`` (the tracer) fail
in different, silent ways, which is why nnkit offers both and parity runs both. The
file is exported to a temporary path beside the target, stamped with provenance
metadata, checked with the full ONNX checker, and only then moved into place: a failed
export leaves no file and never clobbers an existing one.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnkit import __version__
from nnkit.errors import ExportError, ModelSourceError, NnkitError, root_cause
from nnkit.fsutil import atomic_output, check_writable
from nnkit.quiet import captured
from nnkit.resolve import ResolvedModel, example_args
from nnkit.spec import Dim, TensorSpec

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "dynamo"

#: Metadata keys nnkit writes into every file it exports.
META_PREFIX = "nnkit."


@dataclass(frozen=True)
class ExportResult:
    """What an export produced."""

    path: Path
    model: str
    exporter: str
    opset: int
    seconds: float
    size_bytes: int
    #: Output dims the exporter declared fixed although they follow a dynamic input dim,
    #: declared symbolic by nnkit ("output[1]: 7 -> seq").
    fixed_outputs: tuple[str, ...] = ()
    #: Warnings of the exporter that say the file may not be what the model computes
    #: (the tracer's "Converting a tensor to a Python integer ..."), with the user's line.
    warnings: tuple[str, ...] = ()
    #: Symbolic output dims the exporter named after its own nodes, renamed or declared
    #: fixed by nnkit ("output[2]: Reshapeoutput_dim_2 -> 128").
    renamed_outputs: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        """What a user should know about the file, one line each (not failures)."""
        return [
            *(
                f"the {self.exporter} exporter declared a dynamic output dim fixed; nnkit "
                f"declared it symbolic ({fix})"
                for fix in self.fixed_outputs
            ),
            *(
                f"the {self.exporter} exporter named an output dim after its own nodes; "
                f"nnkit declared it by what the model does ({fix})"
                for fix in self.renamed_outputs
            ),
            *(
                f"{w}: the value is a constant in the file (it will not follow other inputs)"
                for w in self.warnings
            ),
        ]


def export_model(
    model: ResolvedModel,
    out: str | Path,
    *,
    exporter: str = DEFAULT_EXPORTER,
    opset: int | None = None,
    verbose: bool = False,
    keep_stack_traces: bool = False,
    located_at: str | Path | None = None,
) -> ExportResult:
    """Export ``model`` to the ONNX file ``out``.

    Args:
        model: the resolved model, its inputs' specs giving example sizes and dynamic dims.
        out: the target file; written only if the export and the check succeed.
        exporter: ``dynamo`` or ``torchscript``.
        opset: the ONNX opset; the exporter's default when None.
        verbose: let the exporter's own console output through.
        keep_stack_traces: keep the dynamo exporter's per-node Python stack traces
            (``pkg.torch.onnx.stack_trace``: absolute local paths, often most of the
            metadata); they are stripped by default.
        located_at: where the file will live when ``out`` is a temporary path: the model's
            source file is stamped relative to it.

    Raises:
        ExportError: the exporter failed, or produced a file the checker rejects.
        OutputPathError: ``out`` cannot be written (checked before exporting).
    """
    import onnx
    import torch

    from nnkit.check import check_file

    if exporter not in EXPORTERS:
        raise ExportError(
            f"unknown exporter {exporter!r}: valid exporters are {', '.join(EXPORTERS)}"
        )
    target = check_writable(out)
    args = example_args(model)
    start = time.perf_counter()
    probed = probe_output_dims(model)
    with atomic_output(target) as tmp:
        with captured(not verbose) as log:
            try:
                # A copy: exporting can mutate a module (an RNN's flat weights), and a
                # second export of the same object then traces differently.
                _EXPORT[exporter](_copied(model), args, tmp, opset, probed.dynamic_axes())
            except Exception as e:
                raise ExportError(
                    _explain(model, exporter, e, opset), detail=_traceback(e)
                ) from None
        proto = onnx.load(str(tmp))
        fixed = _declare_dynamic_outputs(proto, probed)
        renamed = _name_exporter_dims(proto, probed)
        if not keep_stack_traces:
            strip_stack_traces(proto)
        _stamp(proto, model, exporter, torch.__version__, Path(located_at or target))
        onnx.save(proto, str(tmp))
        verdict = check_file(tmp)
        if not verdict:
            raise ExportError(
                f"the {exporter} exporter produced an invalid file for {model.name!r}: "
                f"{verdict.errors[0]}; try --exporter {_other(exporter)}"
            )
        seconds = time.perf_counter() - start
        size = tmp.stat().st_size
    return ExportResult(
        path=target,
        model=model.name,
        exporter=exporter,
        opset=_default_opset(proto),
        seconds=seconds,
        size_bytes=size,
        fixed_outputs=tuple(fixed),
        warnings=exporter_warnings(log.warnings),
        renamed_outputs=tuple(renamed),
    )


def _export_dynamo(
    model: ResolvedModel, args: tuple, tmp: Path, opset: int | None, moving: dict
) -> None:
    import torch

    from nnkit.binding import BoundModule

    dynamic = tuple(s.dynamic_axes or None for s in model.inputs)
    # A BoundModule takes its inputs as *tensors: torch.export sees one argument, a tuple.
    shapes = (dynamic,) if isinstance(model.module, BoundModule) else dynamic
    _clear_rnn_dispatch_cache()
    program = torch.onnx.export(
        model.module,
        args,
        dynamo=True,
        input_names=[s.name for s in model.inputs],
        output_names=list(model.outputs),
        dynamic_shapes=shapes if any(dynamic) else None,
        opset_version=opset,
    )
    program.save(str(tmp), external_data=False)


def _clear_rnn_dispatch_cache() -> None:
    """Work around a torch 2.13 bug that breaks every dynamo export of an RNN but the first.

    With dynamic shapes, torch.onnx swaps in while-loop LSTM/GRU kernels by editing the
    ops' ``py_kernels`` and restores them afterwards, but the ops' dispatch caches keep
    the kernel resolved during the first export: the next export of an LSTM in the same
    process fails with "tracing inferred a static shape of 7". Clearing the caches makes
    each export resolve the kernel afresh.
    """
    import torch

    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _export_torchscript(
    model: ResolvedModel, args: tuple, tmp: Path, opset: int | None, moving: dict
) -> None:
    import torch

    torch.onnx.export(
        model.module,
        args,
        str(tmp),
        dynamo=False,
        input_names=[s.name for s in model.inputs],
        output_names=list(model.outputs),
        dynamic_axes={**_input_axes(model), **moving} or None,
        opset_version=opset,
    )


def _input_axes(model: ResolvedModel) -> dict[str, dict[int, str]]:
    return {s.name: s.dynamic_axes for s in model.inputs if s.dynamic_axes}


@dataclass(frozen=True)
class ProbedDims:
    """What eager runs of the model show about its output dims.

    ``moving``: output name -> axis -> the dynamic input label whose size that axis
    takes. ``derived``: axes that change with a label without taking its size (``2 *
    batch``), named after their output (``y_dim0``). ``sizes``: output name -> its shape
    at the example sizes, None at an axis that changed between runs on inputs of the
    same shape (a data-dependent size, such as the count of a ``nonzero``).
    """

    moving: dict[str, dict[int, str]]
    derived: dict[str, dict[int, str]]
    sizes: dict[str, tuple[int | None, ...]]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Every output axis that changes with an input dim, and its name."""
        names = set(self.moving) | set(self.derived)
        return {n: {**self.derived.get(n, {}), **self.moving.get(n, {})} for n in names}


def probe_output_dims(model: ResolvedModel) -> ProbedDims:
    """Which output axes follow which dynamic input dim, found by running the model.

    Exporters declare output dims they cannot name after their own nodes
    (``Concath_n_dim_1``, ``Reshapeoutput_dim_2``) or fixed at the example's size (the
    dynamo LSTM's sequence axis). Running eagerly once more per label, with that dim
    one larger, shows which output axes take the label's size; one more run on other
    values at the example sizes shows which dims depend on the values, not the shapes.
    """
    import torch

    from nnkit.inputs import generate
    from nnkit.reference import to_torch
    from nnkit.resolve import flatten_outputs

    def shapes(sizes: dict[str, int], seed: int = 0) -> list[tuple[int, ...]] | None:
        arrays = generate(model.inputs, sizes=sizes, seed=seed)
        try:
            with torch.inference_mode():
                result = model.module(*(to_torch(arrays[s.name]) for s in model.inputs))
        except Exception:
            return None
        return [tuple(t.shape) for t in flatten_outputs(result)]

    labels = {d.label: d.example for s in model.inputs for d in s.dims if isinstance(d, Dim)}
    base = shapes({})
    axes: dict[str, dict[int, str]] = {}
    derived: dict[str, dict[int, str]] = {}
    for label, example in labels.items():
        moved = shapes({label: example + 1})
        if base is None or moved is None or len(moved) != len(base):
            continue
        for name, before, after in zip(model.outputs, base, moved, strict=True):
            for axis, (b, a) in enumerate(zip(before, after, strict=False)):
                if (b, a) == (example, example + 1):
                    axes.setdefault(name, {})[axis] = label
                elif a != b:
                    derived.setdefault(name, {})[axis] = f"{name}_dim{axis}"
    for name, found in axes.items():
        for axis in found:
            derived.get(name, {}).pop(axis, None)
    other = shapes({}, seed=1)
    sizes: dict[str, tuple[int | None, ...]] = {}
    if base is not None and other is not None and len(other) == len(base):
        for name, a, b in zip(model.outputs, base, other, strict=True):
            sizes[name] = tuple(x if x == y else None for x, y in zip(a, b, strict=False))
    return ProbedDims(axes, derived, sizes)


_EXPORT = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _declare_dynamic_outputs(proto, probed: ProbedDims) -> list[str]:
    """Declare output dims that follow a dynamic input dim as symbolic.

    An axis that takes a label's size is declared under that label; one that changes
    with it otherwise (``2 * batch``) keeps the exporter's symbolic name, or is named
    after its output where the exporter declared it fixed. The dynamo exporter declares
    an LSTM's sequence axis as the example's length (pytorch#191855) while computing
    correct values at other lengths, and the tracer names dynamic axes after internal
    nodes. Returns the fixed dims that were wrong.
    """
    wrong = []
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        for axes, exact in ((probed.moving, True), (probed.derived, False)):
            for axis, name in axes.get(out.name, {}).items():
                if axis >= len(dims):
                    continue
                d = dims[axis]
                if d.HasField("dim_value"):
                    wrong.append(f"{out.name}[{axis}]: {d.dim_value} -> {name}")
                    d.dim_param = name  # clears dim_value: the two are a oneof
                elif exact and d.dim_param != name:
                    d.dim_param = name
    return wrong


def _name_exporter_dims(proto, probed: ProbedDims) -> list[str]:
    """Symbolic output dims named after the exporter's own nodes, made meaningful.

    A dim no input label moves and that keeps one size over runs on other values is
    declared fixed at that size; one whose size depends on the values is named after its
    output (``boxes_dim0``). Labels of the model's inputs are left as they are.
    """
    labels = {label for axes in probed.moving.values() for label in axes.values()}
    changed = []
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        sizes = probed.sizes.get(out.name)
        for axis, d in enumerate(dims):
            if not d.HasField("dim_param") or d.dim_param in labels:
                continue
            if axis in probed.dynamic_axes().get(out.name, {}):
                continue
            old = d.dim_param
            size = sizes[axis] if sizes is not None and axis < len(sizes) else None
            if sizes is not None and size is not None:
                d.dim_value = size  # clears dim_param: the two are a oneof
                changed.append(f"{out.name}[{axis}]: {old} -> {size}")
            elif sizes is not None and not old.startswith(f"{out.name}_dim"):
                d.dim_param = f"{out.name}_dim{axis}"
                changed.append(f"{out.name}[{axis}]: {old} -> {d.dim_param}")
    return changed


#: Node metadata the dynamo exporter writes that holds absolute local paths.
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def strip_stack_traces(proto) -> int:
    """Drop the dynamo exporter's per-node Python stack traces; the count dropped.

    They name files by absolute local paths (a machine's layout, in a file that is
    shipped) and are most of the file's metadata (1.1 MB on swin_t). The module scopes
    (``pkg.torch.onnx.name_scopes``) stay: they map nodes to modules.
    """
    from nnkit.check import _graphs

    dropped = 0
    for graph in _graphs(proto.graph):
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
            if len(kept) != len(node.metadata_props):
                dropped += len(node.metadata_props) - len(kept)
                pairs = [(p.key, p.value) for p in kept]
                del node.metadata_props[:]
                for key, value in pairs:
                    entry = node.metadata_props.add()
                    entry.key, entry.value = key, value
    return dropped


def exporter_warnings(caught: list) -> tuple[str, ...]:
    """The exporter's warnings that say the file may not compute what the model does.

    The tracer warns when it turns a tensor into a Python value (``int(x.shape[0])``,
    ``float(x.sum())``): that value is a constant in the file. Each is kept once, with
    the line of the user's code that caused it.
    """
    seen: dict[str, None] = {}
    for w in caught:
        if w.category.__name__ != "TracerWarning":
            continue
        text = str(w.message).split(". ")[0].strip().rstrip(".")
        seen[f"{w.category.__name__} at {w.filename}:{w.lineno}: {text}"] = None
    return tuple(seen)


def _stamp(
    proto, model: ResolvedModel, exporter: str, torch_version: str, located_at: Path
) -> None:
    """Write provenance into the file's metadata, replacing nnkit's keys from before."""
    meta = {
        "nnkit.version": __version__,
        "nnkit.torch_version": torch_version,
        "nnkit.exporter": exporter,
        "nnkit.model": model.name,
        "nnkit.inputs": " ".join(str(s) for s in model.inputs),
        "nnkit.outputs": " ".join(model.outputs),
    }
    source = model_source_file(model.name)
    if source is not None:
        # Relative to the ONNX file: the check works from any folder, on any machine.
        meta["nnkit.model_file"] = os.path.relpath(source, located_at.resolve().parent)
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *meta.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def model_source_file(ref: str) -> Path | None:
    """The Python file a ``path/to/file.py:Name`` reference names (absolute), else None."""
    where, sep, _ = ref.rpartition(":")
    if not sep or not (where.endswith(".py") or "/" in where):
        return None
    path = Path(where)
    return path.resolve() if path.is_file() else None


def _default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _copied(model: ResolvedModel) -> ResolvedModel:
    import copy
    import dataclasses

    return dataclasses.replace(model, module=copy.deepcopy(model.module))


def _other(exporter: str) -> str:
    return "torchscript" if exporter == "dynamo" else "dynamo"


#: Longest exporter message kept in the one line (symbolic expressions run to pages).
MESSAGE_CAP = 400


def _explain(model: ResolvedModel, exporter: str, e: BaseException, opset: int | None) -> str:
    """One line: the root cause, where in the user's code, torch's hint, what to try.

    The "fixed shapes" suggestion is made only when an export with fixed shapes gets
    further: it is tried (once, quietly) to know.
    """
    cause = cap(root_cause(e), MESSAGE_CAP)
    text = _chain_text(e)
    parts = [f"the {exporter} exporter failed on {model.name!r}: {cause}"]
    where = user_code_location(text)
    if where:
        parts.append(f"at {where}")
    hint = torch_hint(text)
    if hint:
        parts.append(f"torch suggests: {cap(hint, 200).rstrip('.')}")
    tries = [f"--exporter {_other(exporter)}"]
    if any(s.dynamic_axes for s in model.inputs) and _exports_with_fixed_shapes(
        model, exporter, opset
    ):
        tries.append("fixed shapes (no label= in --input): the export succeeds without them")
    parts.append(f"try {' or '.join(tries)}, or --verbose for the exporter's log")
    return "; ".join(parts)


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}... ({len(text):,} characters; --debug shows all)"


def _chain_text(e: BaseException) -> str:
    parts = []
    seen: BaseException | None = e
    while seen is not None:
        parts.append(str(seen))
        seen = seen.__cause__
    return "\n".join(parts)


_CALL_SITE = re.compile(
    r'The following call raised this error:\s*\n\s*File "(?P<file>[^"]+)", line (?P<line>\d+), '
    r"in (?P<func>\S+)\n\s*(?P<code>[^\n]*)"
)
_CAUSED_BY = re.compile(r"Caused by: \((?P<where>[^)]+)\)")
_HINTS = re.compile(
    r"^\s*(?P<hint>(?:consider|Suggested fixes|Possible fixes|You can|Try|To fix|Please)[^\n]*"
    r"(?:\n\s{2,}\S[^\n]*)*)",
    re.MULTILINE,
)


def user_code_location(text: str) -> str:
    """Where in the user's code torch.export failed (``net.py:10 in forward: if x.sum()
    > 0:``), else the library location it names (``Caused by: (boxes.py:86 in nms)``)."""
    m = _CALL_SITE.search(text)
    if m:
        code = f": {m.group('code').strip()}" if m.group("code").strip() else ""
        return f"{m.group('file')}:{m.group('line')} in {m.group('func')}{code}"
    m = _CAUSED_BY.search(text)
    return m.group("where") if m else ""


def torch_hint(text: str) -> str:
    """torch's own next step, when its message has one ("Suggested fixes: ...")."""
    m = _HINTS.search(_ANSI.sub("", text))
    return " ".join(m.group("hint").split()) if m else ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _traceback(e: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(e))


def _exports_with_fixed_shapes(model: ResolvedModel, exporter: str, opset: int | None) -> bool:
    """Whether the model exports when its dynamic dims are fixed (tried quietly)."""
    import dataclasses
    import tempfile

    fixed = tuple(TensorSpec(s.name, s.example_shape, s.dtype, s.value_range) for s in model.inputs)
    static = dataclasses.replace(model, inputs=fixed)
    with tempfile.TemporaryDirectory(prefix="nnkit-export-") as tmp, captured():
        try:
            _EXPORT[exporter](
                _copied(static), example_args(static), Path(tmp) / "m.onnx", opset, {}
            )
        except Exception:
            return False
    return True


def export_reference(
    ref: str,
    out: str | Path,
    *,
    inputs: tuple[TensorSpec, ...] = (),
    ignore_outputs: tuple[str, ...] = (),
    timeout: float | None = None,
    verbose: bool = False,
    **options: Any,
) -> ExportResult:
    """Build the model ``ref`` names and export it, in a worker process.

    The model's code runs under nnkit's control (:mod:`nnkit.worker`): a model that
    exits, crashes or hangs past ``timeout`` seconds is an :class:`ExportError`, and what
    it prints never reaches nnkit's stdout. The worker writes into a folder of its own;
    only a checked file is moved onto ``out``, atomically.

    Args:
        ref: a zoo name, ``file.py:Name`` or ``module:name``.
        out: the ONNX file to write.
        inputs: input specs (required outside the zoo).
        ignore_outputs: outputs to leave out of the file.
        timeout: seconds building and exporting may take (None or 0: no limit).
        verbose: show what the exporter prints (on stderr).
        options: :func:`export_model`'s ``exporter``, ``opset``, ``keep_stack_traces``.

    Raises:
        ModelSourceError, SpecError: the model cannot be built from ``ref`` and ``inputs``.
        ExportError: the export failed, or the model's code ended, crashed or hung.
        OutputPathError: ``out`` cannot be written.
    """
    import dataclasses
    import tempfile

    from nnkit.steps import ModelRequest, describe_model, export
    from nnkit.worker import Worker, WorkerFailure, preload

    target = check_writable(out)
    request = ModelRequest(ref, tuple(inputs), tuple(ignore_outputs))
    with Worker("PyTorch", show_output=verbose) as worker:
        worker.call(preload, ["torch", "onnx"])  # not timed: not the model's time
        try:
            worker.call(describe_model, request, timeout=timeout)
        except WorkerFailure as e:
            raise ModelSourceError(f"building {ref!r}: {e.format_message()}") from None
        with (
            atomic_output(target) as tmp,
            tempfile.TemporaryDirectory(prefix=".nnkit-export-", dir=tmp.parent) as work,
        ):
            try:
                result = worker.call(
                    export,
                    request,
                    Path(work) / target.name,
                    located_at=target,
                    verbose=verbose,
                    timeout=timeout,
                    **options,
                )
            except WorkerFailure as e:
                raise ExportError(
                    f"exporting {ref!r}: {e.format_message()}", detail=e.detail
                ) from None
            except NnkitError as e:  # name the user's path, not the worker's temporary one
                e.message = e.message.replace(str(Path(work) / target.name), str(target))
                raise
            os.replace(result.path, tmp)
    return dataclasses.replace(result, path=target)
