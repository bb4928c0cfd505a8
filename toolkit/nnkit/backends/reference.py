"""``onnx.reference.ReferenceEvaluator``: the ``reference`` backend.

Slow, pure Python and numpy, with the exact semantics of the ONNX specification: the
judge when two optimized runtimes disagree.
"""

from __future__ import annotations

from typing import Any, ClassVar

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, fetched


def _onnx() -> Any:
    return import_runtime("reference", "onnx")


class ReferenceBackend(Backend[dict[str, Any], list[Any]]):
    """The ONNX reference evaluator; ``threads`` is ignored (it runs in one Python thread)."""

    name: ClassVar[str] = "reference"
    requirement: ClassVar[str] = REQUIREMENTS["reference"]

    #: The evaluator, while loaded.
    evaluator: Any = None

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _onnx().__version__)

    def load_impl(self) -> None:
        from onnx.reference import ReferenceEvaluator

        from nnkit.onnxfile import load_model_file

        self.evaluator = ReferenceEvaluator(load_model_file(self.runtime_path))

    def run_prepared(self, prepared: dict[str, Any]) -> list[Any]:
        return self.evaluator.run([o.name for o in self.outputs], prepared)

    def fetch(self, result: list[Any]) -> dict[str, Any]:
        return {o.name: fetched(v) for o, v in zip(self.outputs, result, strict=True)}

    def close_impl(self) -> None:
        self.evaluator = None
