"""``onnx.reference.ReferenceEvaluator``: the ``reference`` backend.

Slow, pure Python and numpy, with the exact semantics of the ONNX specification: the
judge when two optimized runtimes disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, fetched


def _onnx() -> Any:
    return import_runtime("reference", "onnx")


class ReferenceBackend(Backend):
    """The ONNX reference evaluator; ``threads`` is ignored (it runs in one Python thread)."""

    name: ClassVar[str] = "reference"
    requirement: ClassVar[str] = REQUIREMENTS["reference"]

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self.evaluator: Any = None

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _onnx().__version__)

    def load_impl(self) -> None:
        from onnx.reference import ReferenceEvaluator

        from nnkit.check import load_model_file

        self.evaluator = ReferenceEvaluator(load_model_file(self.path))

    def run_impl(self, feeds: dict[str, Any]) -> dict[str, Any]:
        names = [o.name for o in self.outputs]
        values = self.evaluator.run(names, feeds)
        return {n: fetched(v) for n, v in zip(names, values, strict=True)}

    def close_impl(self) -> None:
        self.evaluator = None
