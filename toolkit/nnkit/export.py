"""PyTorch -> ONNX, with either exporter, written atomically and checked.

``dynamo`` (``torch.export`` based, the default) and ``torchscript`` (the tracer) fail
in different, silent ways, which is why nnkit offers both and parity runs both. The
file is exported to a temporary path beside the target, stamped with provenance
metadata, checked with the full ONNX checker, and only then moved into place: a failed
export leaves no file and never clobbers an existing one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nnkit import __version__
from nnkit.errors import ExportError, root_cause
from nnkit.fsutil import atomic_output, check_writable
from nnkit.quiet import captured
from nnkit.resolve import ResolvedModel, example_args
from nnkit.spec import Dim

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


def export_model(
    model: ResolvedModel,
    out: str | Path,
    *,
    exporter: str = DEFAULT_EXPORTER,
    opset: int | None = None,
    verbose: bool = False,
) -> ExportResult:
    """Export ``model`` to the ONNX file ``out``.

    Args:
        model: the resolved model, its inputs' specs giving example sizes and dynamic dims.
        out: the target file; written only if the export and the check succeed.
        exporter: ``dynamo`` or ``torchscript``.
        opset: the ONNX opset; the exporter's default when None.
        verbose: let the exporter's own console output through.

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
    moving = output_axes(model)
    with atomic_output(target) as tmp:
        with captured(not verbose):
            try:
                # A copy: exporting can mutate a module (an RNN's flat weights), and a
                # second export of the same object then traces differently.
                _EXPORT[exporter](_copied(model), args, tmp, opset, moving)
            except Exception as e:
                raise ExportError(_explain(model, exporter, e)) from None
        proto = onnx.load(str(tmp))
        fixed = _declare_dynamic_outputs(proto, moving)
        _stamp(proto, model, exporter, torch.__version__)
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
    )


def _export_dynamo(
    model: ResolvedModel, args: tuple, tmp: Path, opset: int | None, moving: dict
) -> None:
    import torch

    dynamic = tuple(s.dynamic_axes or None for s in model.inputs)
    _clear_rnn_dispatch_cache()
    program = torch.onnx.export(
        model.module,
        args,
        dynamo=True,
        input_names=[s.name for s in model.inputs],
        output_names=list(model.outputs),
        dynamic_shapes=dynamic if any(dynamic) else None,
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


def output_axes(model: ResolvedModel) -> dict[str, dict[int, str]]:
    """Which output axes follow which dynamic input dim, found by running the model.

    The tracer names dynamic output axes after internal nodes (``Concath_n_dim_1``);
    running eagerly once more per label, with that dim one larger, shows which output
    axes move with it, so they can carry the input's label.
    """
    import torch

    from nnkit.backends.torch import to_torch
    from nnkit.inputs import generate
    from nnkit.resolve import flatten_outputs

    def shapes(sizes: dict[str, int]) -> list[tuple[int, ...]] | None:
        arrays = generate(model.inputs, sizes=sizes)
        try:
            with torch.inference_mode():
                result = model.module(*(to_torch(arrays[s.name]) for s in model.inputs))
        except Exception:
            return None
        return [tuple(t.shape) for t in flatten_outputs(result)]

    labels = {d.label: d.example for s in model.inputs for d in s.dims if isinstance(d, Dim)}
    base = shapes({})
    axes: dict[str, dict[int, str]] = {}
    for label, example in labels.items():
        moved = shapes({label: example + 1})
        if base is None or moved is None or len(moved) != len(base):
            continue
        for name, before, after in zip(model.outputs, base, moved, strict=True):
            for axis, (b, a) in enumerate(zip(before, after, strict=False)):
                if a != b:
                    axes.setdefault(name, {})[axis] = label
    return axes


_EXPORT = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _declare_dynamic_outputs(proto, moving: dict[str, dict[int, str]]) -> list[str]:
    """Declare output dims that follow a dynamic input dim under that dim's label.

    The dynamo exporter declares an LSTM's sequence axis as the example's length
    (pytorch#191855) while computing correct values at other lengths, and the tracer
    names dynamic axes after internal nodes. Returns the fixed dims that were wrong.
    """
    wrong = []
    for out in proto.graph.output:
        axes = moving.get(out.name, {})
        dims = out.type.tensor_type.shape.dim
        for axis, label in axes.items():
            if axis >= len(dims):
                continue
            d = dims[axis]
            if d.HasField("dim_value"):
                wrong.append(f"{out.name}[{axis}]: {d.dim_value} -> {label}")
            if d.dim_param != label:
                d.dim_param = label  # clears dim_value: the two are a oneof
    return wrong


def _stamp(proto, model: ResolvedModel, exporter: str, torch_version: str) -> None:
    """Write provenance into the file's metadata, replacing nnkit's keys from before."""
    meta = {
        "nnkit.version": __version__,
        "nnkit.torch_version": torch_version,
        "nnkit.exporter": exporter,
        "nnkit.model": model.name,
        "nnkit.inputs": " ".join(str(s) for s in model.inputs),
        "nnkit.outputs": " ".join(model.outputs),
    }
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *meta.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _copied(model: ResolvedModel) -> ResolvedModel:
    import copy
    import dataclasses

    return dataclasses.replace(model, module=copy.deepcopy(model.module))


def _other(exporter: str) -> str:
    return "torchscript" if exporter == "dynamo" else "dynamo"


def _explain(model: ResolvedModel, exporter: str, e: BaseException) -> str:
    hints = [f"--exporter {_other(exporter)}"]
    if any(s.dynamic_axes for s in model.inputs):
        hints.append("fixed shapes (no label= in --input)")
    return (
        f"the {exporter} exporter failed on {model.name!r}: {root_cause(e)}; "
        f"try {' or '.join(hints)}, or --verbose for the exporter's log"
    )
