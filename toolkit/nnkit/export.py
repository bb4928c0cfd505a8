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
from nnkit.fsutil import atomic_output, check_writable, temporary_folder
from nnkit.quiet import captured
from nnkit.resolve import ResolvedModel, example_args
from nnkit.spec import TensorSpec

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
    from nnkit.onnxfile import strip_stack_traces
    from nnkit.output_dims import declare_dynamic_outputs, name_exporter_dims, probe_output_dims

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
        fixed = declare_dynamic_outputs(proto, probed)
        renamed = name_exporter_dims(proto, probed)
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
    assert program is not None  # dynamo=True always returns the program
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


_EXPORT = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


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
        seen[f"{w.category.__name__} at {_where(w.filename)}:{w.lineno}: {text}"] = None
    return tuple(seen)


def _where(filename: str) -> str:
    """A warning's file as a reader finds it: the user's path as it is; a library's (torch's
    own modules warn too) from its package on, ``torch/nn/modules/rnn.py``."""
    path = Path(filename)
    for index in range(len(path.parts) - 1, 0, -1):
        if path.parts[index - 1] in ("site-packages", "dist-packages"):
            return "/".join(path.parts[index:])
    return filename


def _stamp(
    proto, model: ResolvedModel, exporter: str, torch_version: str, located_at: Path
) -> None:
    """Write provenance into the file's metadata, replacing nnkit's keys from before."""
    from nnkit.onnxfile import set_metadata

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
    set_metadata(proto, meta, replace_prefix=META_PREFIX)


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

    fixed = tuple(TensorSpec(s.name, s.example_shape, s.dtype, s.value_range) for s in model.inputs)
    static = dataclasses.replace(model, inputs=fixed)
    with temporary_folder("nnkit-export-") as tmp, captured():
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
            temporary_folder(".nnkit-export-", dir=tmp.parent) as work,
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
