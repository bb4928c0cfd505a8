"""tract (package ``tract``, Sonos' Rust inference engine): the ``tract`` backend.

tract types the whole graph before it runs it, and some exports type only one way:
the dynamo export of ``CombinedNN`` only with its symbolic batch, the torchscript
export of a 2-layer LSTM only with concrete shapes. So the model is first made runnable
with the shapes the file declares (symbolic where symbolic), and where that cannot be
typed or cannot run, again with the feeds' concrete shapes: one runnable per shape
signature, cached. Timed runs (:meth:`TractBackend.prepare`) use the concrete-shape
runnable, which tract optimizes best, wherever tract can type the model that way. ``into_model().into_runnable()`` optimizes (tract 0.23 has no
separate ``into_optimized``).

tract names outputs after the nodes that produce them, so outputs are mapped back to
the names the ONNX file declares, by position. Its errors come as ``TractError`` with a
Rust backtrace: only the error and its innermost cause are kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, contiguous
from nnkit.errors import BackendError
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


class TractBackend(Backend):
    """tract on the CPU; ``threads`` is ignored (tract runs on the calling thread)."""

    name: ClassVar[str] = "tract"
    requirement: ClassVar[str] = REQUIREMENTS["tract"]

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self._symbolic: Any = None
        self._symbolic_error: str | None = None
        self._concrete: dict[Signature, Any] = {}
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._untyped: Path | None = None

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _tract().version())

    def load_impl(self) -> None:
        tract = _tract()
        self._concrete = {}
        self._symbolic = None
        self._symbolic_error = None
        try:
            model = tract.onnx().load(str(self.path))
        except tract.TractError as e:
            raise self._error(f"cannot load {self.path}", e) from e
        try:
            self._symbolic = model.into_model().into_runnable()
        except tract.TractError as e:  # maybe typed with concrete shapes, at run time
            self._symbolic_error = tract_reason(e)

    def _error(self, what: str, cause: BaseException, extra: str = "") -> BackendError:
        return BackendError(
            f"tract: {what}: {tract_reason(cause)}{extra}",
            backend=self.name,
            model_path=str(self.path),
        )

    def _concrete_runnable(self, feeds: dict[str, np.ndarray]) -> Any:
        """The runnable typed with the feeds' shapes, built once per shape signature."""
        tract = _tract()
        signature = tuple(tuple(feeds[i.name].shape) for i in self.inputs)
        runnable = self._concrete.get(signature)
        if runnable is None:
            try:
                model = tract.onnx().load(str(self._untyped_copy()))
                for index, info in enumerate(self.inputs):
                    dims = ",".join(str(d) for d in feeds[info.name].shape)
                    datum = _DATUM.get(info.dtype, info.dtype)
                    model.set_input_fact(index, f"{dims},{datum}" if dims else datum)
                for index in range(model.output_count()):
                    model.set_output_fact(index, None)  # let tract infer them from the inputs
                runnable = model.into_model().into_runnable()
            except tract.TractError as e:
                extra = (
                    f" (with its declared shapes: {self._symbolic_error})"
                    if self._symbolic_error
                    else ""
                )
                what = f"cannot load {self.path} at input shapes {list(signature)}"
                raise self._error(what, e, extra) from e
            self._concrete[signature] = runnable
        return runnable

    def _untyped_copy(self) -> Path:
        """The file without its intermediate shape annotations (``value_info``).

        tract reads them as facts, and a symbolic one (``[2, batch, 20]`` on the dynamo
        LSTM's initial state) clashes with concrete input shapes ("Impossible to unify
        Sym(batch) with Val(64)"). They are hints only: dropping them changes no value.
        A model with external data keeps them (a copy elsewhere would lose its weights).
        """
        if self._untyped is None:
            import onnx

            proto = onnx.load(str(self.path), load_external_data=False)
            if not proto.graph.value_info or any(
                t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
            ):
                self._untyped = self.path
            else:
                del proto.graph.value_info[:]
                self._workdir = tempfile.TemporaryDirectory(prefix="nnkit-tract-")
                self._untyped = Path(self._workdir.name) / self.path.name
                onnx.save(proto, str(self._untyped))
        return self._untyped

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        """The runnable typed with the feeds' concrete shapes, as tract runs fastest;
        the symbolic one where tract cannot type the model with concrete shapes."""
        arrays = self._arrays(feeds)
        try:
            return self._concrete_runnable(feeds), arrays
        except BackendError:
            if self._symbolic is None:
                raise
            return self._symbolic, arrays

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
            arrays.append(contiguous(value))
        return arrays

    def run_prepared(self, prepared: Any) -> Any:
        runnable, arrays = prepared
        return runnable.run(arrays)

    def fetch(self, result: Any) -> dict[str, np.ndarray]:
        return self._named(result)

    def run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tract = _tract()
        arrays = self._arrays(feeds)
        if self._symbolic is not None and not self._concrete:
            try:
                return self._named(self._symbolic.run(arrays))
            except tract.TractError as e:  # typed, but cannot run symbolic: go concrete
                self._symbolic, self._symbolic_error = None, tract_reason(e)
        runnable = self._concrete_runnable(feeds)
        try:
            return self._named(runnable.run(arrays))
        except tract.TractError as e:
            raise self._error(f"cannot run {self.path}", e) from e

    def _named(self, values: list[Any]) -> dict[str, np.ndarray]:
        if len(values) != len(self.outputs):
            raise BackendError(
                f"tract: {self.path} gives {len(values)} outputs, the file declares "
                f"{len(self.outputs)}",
                backend=self.name,
                model_path=str(self.path),
            )
        return {o.name: v.to_numpy() for o, v in zip(self.outputs, values, strict=True)}

    def close_impl(self) -> None:
        self._symbolic = None
        self._concrete = {}
        self._untyped = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
