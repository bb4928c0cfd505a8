"""tract (package ``tract``, Sonos' Rust inference engine): the ``tract`` backend.

tract types the whole graph before it runs it, and exports type one way or the other:
the 2-layer LSTM runs only typed with concrete shapes (typed with its symbolic batch it
fails at run time: "Clashing resolution for expression. batch=3 != 1"), the dynamo
``CombinedNN`` types with concrete shapes only without the file's intermediate shape
hints (``value_info``). So :meth:`TractBackend.prepare` types the model with the feeds'
concrete shapes, on a copy of the file without those hints (one runnable per shape
signature, cached), as tract also runs fastest; where tract cannot type it that way it
takes the shapes the file declares (symbolic where symbolic). ``run`` and the timed
``run_prepared`` run that one runnable: parity verifies what bench times.
``into_model().into_runnable()`` optimizes (tract 0.23 has no separate
``into_optimized``).

tract names outputs after the nodes that produce them, so outputs are mapped back to
the names the ONNX file declares, by position. Its errors come as ``TractError`` with a
Rust backtrace: only the error and its innermost cause are kept.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, contiguous
from nnkit.errors import BackendError
from nnkit.onnxfile import strip_value_info
from nnkit.values import dtype_name

#: numpy dtype name -> tract's datum type mnemonic in a fact ("2,3,f32").
_DATUM = {
    "float32": "f32",
    "float64": "f64",
    "float16": "f16",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "bool": "bool",
}

Signature = tuple[tuple[int, ...], ...]


def _tract() -> Any:
    return import_runtime("tract", "tract")


def tract_reason(error: BaseException) -> str:
    """A TractError's message in one line: the error and its innermost cause, no backtrace.

    ``Failed analyse for node #10 "conv" ConvHir / Caused by: 0: ... 3: Impossible to
    unify Sym(batch) with Val(2). / Stack backtrace: ...`` becomes
    ``Failed analyse for node #10 "conv" ConvHir: Impossible to unify Sym(batch) with Val(2).``
    """
    text = str(error).split("Stack backtrace:", 1)[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    head, causes = lines[0], [ln for ln in lines[1:] if ln != "Caused by:"]
    if not causes:
        return head
    innermost = causes[-1].split(":", 1)[1].strip() if causes[-1][:1].isdigit() else causes[-1]
    return f"{head}: {innermost}"


@dataclass(frozen=True, slots=True)
class TractRun:
    """The runnable typed for the feeds' shapes, and the feeds in input order."""

    runnable: Any
    arrays: list[np.ndarray]


class TractBackend(Backend[TractRun, list[Any]]):
    """tract on the CPU; ``threads`` is ignored (tract runs on the calling thread)."""

    name: ClassVar[str] = "tract"
    requirement: ClassVar[str] = REQUIREMENTS["tract"]

    #: Shape signature -> the runnable that runs it (set by ``load``).
    _runnables: dict[Signature, Any]
    #: The model typed with its declared shapes, or why tract cannot type it so.
    _symbolic: Any = None
    _symbolic_error: str | None = None
    #: The copy of the file without its shape hints, and its folder.
    _untyped: Path | None = None
    _untyped_dir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _tract().version())

    def load_impl(self) -> None:
        """Parse the file (typing it waits for the feeds' shapes)."""
        tract = _tract()
        self._runnables = {}
        self._symbolic = self._symbolic_error = None
        try:
            tract.onnx().load(str(self.runtime_path))
        except tract.TractError as e:
            raise self.error(f"cannot load {self.path}", e) from e

    def error(self, what: str, cause: BaseException, extra: str = "") -> BackendError:
        """A TractError in one line (:func:`tract_reason`); others as every backend's."""
        if type(cause).__name__ != "TractError":
            return super().error(what, cause)
        return BackendError(
            f"tract: {what}: {tract_reason(cause)}{extra}",
            backend=self.name,
            model_path=str(self.path),
        )

    def prepare_impl(self, feeds: dict[str, Any]) -> TractRun:
        arrays = self._arrays(feeds)
        return TractRun(self._runnable(feeds), arrays)

    def run_prepared(self, prepared: TractRun) -> list[Any]:
        return prepared.runnable.run(prepared.arrays)

    def fetch(self, result: list[Any]) -> dict[str, np.ndarray]:
        if len(result) != len(self.outputs):
            raise BackendError(
                f"tract: {self.path} gives {len(result)} outputs, the file declares "
                f"{len(self.outputs)}",
                backend=self.name,
                model_path=str(self.path),
            )
        return {o.name: v.to_numpy() for o, v in zip(self.outputs, result, strict=True)}

    def _runnable(self, feeds: dict[str, np.ndarray]) -> Any:
        """The runnable for the feeds' shapes: typed with them (built once per shape
        signature), else with the file's declared shapes."""
        tract = _tract()
        signature = tuple(tuple(feeds[i.name].shape) for i in self.inputs)
        runnable = self._runnables.get(signature)
        if runnable is not None:
            return runnable
        try:
            runnable = self._concrete(feeds)
        except tract.TractError as e:
            runnable = self._declared()
            if runnable is None:
                what = f"cannot load {self.path} at input shapes {list(signature)}"
                extra = f" (with its declared shapes: {self._symbolic_error})"
                raise self.error(what, e, extra) from e
        self._runnables[signature] = runnable
        return runnable

    def _concrete(self, feeds: dict[str, np.ndarray]) -> Any:
        """The model typed with the feeds' shapes (the file without its shape hints)."""
        model = _tract().onnx().load(str(self._untyped_copy()))
        for index, info in enumerate(self.inputs):
            dims = ",".join(str(d) for d in feeds[info.name].shape)
            datum = _DATUM.get(info.dtype, info.dtype)
            model.set_input_fact(index, f"{dims},{datum}" if dims else datum)
        for index in range(model.output_count()):
            model.set_output_fact(index, None)  # let tract infer them from the inputs
        return model.into_model().into_runnable()

    def _declared(self) -> Any:
        """The model typed with the shapes the file declares, built once; None (the
        reason kept) where tract cannot type it so."""
        tract = _tract()
        if self._symbolic is None and self._symbolic_error is None:
            try:
                model = tract.onnx().load(str(self.runtime_path))
                self._symbolic = model.into_model().into_runnable()
            except tract.TractError as e:
                self._symbolic_error = tract_reason(e)
        return self._symbolic

    def _untyped_copy(self) -> Path:
        """The file without its intermediate shape annotations (``value_info``).

        tract reads them as facts, and a symbolic one (``[2, batch, 20]`` on the dynamo
        LSTM's initial state) clashes with concrete input shapes ("Impossible to unify
        Sym(batch) with Val(64)"). They are hints only: dropping them changes no value.
        A model with external data keeps them (a copy elsewhere would lose its weights).
        """
        if self._untyped is None:
            import onnx

            proto = onnx.load(str(self.runtime_path), load_external_data=False)
            external = any(
                t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
            )
            if external or not strip_value_info(proto):
                self._untyped = self.runtime_path
            else:
                self._untyped_dir = tempfile.TemporaryDirectory(prefix="nnkit-tract-")
                self._untyped = Path(self._untyped_dir.name) / self.path.name
                onnx.save(proto, str(self._untyped))
        return self._untyped

    def _arrays(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """The feeds in input order, C-contiguous with their rank kept (a scalar ``If``
        condition stays a scalar); what tract's Python API cannot take is refused here,
        before tract sees it (it reads a float8 array's bytes as a datum it has not)."""
        arrays = []
        for info in self.inputs:
            value = feeds.get(info.name)
            what = (
                "an empty optional"
                if value is None
                else "a sequence"
                if isinstance(value, list)
                else None
                if value.dtype.kind in "biuf" and str(value.dtype) in _DATUM
                else f"a {dtype_name(value)} tensor"
            )
            if what:
                raise BackendError(
                    f"tract: input {info.name!r} is {what}; tract's Python API takes "
                    f"tensors of {', '.join(_DATUM)} only",
                    backend=self.name,
                    model_path=str(self.path),
                )
            arrays.append(contiguous(cast(np.ndarray, value)))
        return arrays

    def close_impl(self) -> None:
        self._runnables = {}
        self._symbolic = self._symbolic_error = None
        self._untyped = None
        if self._untyped_dir is not None:
            self._untyped_dir.cleanup()
            self._untyped_dir = None
