"""The PyTorch side of localizing: every submodule's inputs and outputs on one case.

:func:`capture_run` is a step (:mod:`nnkit.steps`): it runs in the user-code worker, as
the reference does, and returns plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnkit.errors import describe
from nnkit.steps import ReferenceFailed, resolved

if TYPE_CHECKING:
    import numpy as np

    from nnkit.steps import ModelRequest


@dataclass(frozen=True)
class Captured:
    """PyTorch on one case: its outputs, what every submodule was called with and gave
    (:attr:`nnkit.reference.Reference.captured`'s keys, in execution order), and the
    class name of every module by qualified name (``""``: the model)."""

    outputs: dict[str, np.ndarray]
    captured: dict[str, np.ndarray]
    types: dict[str, str]


def capture_run(request: ModelRequest, feeds: dict[str, np.ndarray]) -> Captured:
    """Run the model on ``feeds`` with every submodule's inputs and outputs kept.

    Raises:
        ReferenceFailed: the model's forward failed on these inputs.
    """
    from nnkit.reference import Reference

    m = resolved(request)
    reference = Reference.from_model(m, capture="all", capture_inputs=True)
    with reference:
        try:
            outputs = reference.run({k: v.copy() for k, v in feeds.items()})
        except Exception as e:
            raise ReferenceFailed(f"PyTorch (the reference) failed: {describe(e)}") from None
        captured = dict(reference.captured)
    types = {name: type(module).__name__ for name, module in m.module.named_modules()}
    return Captured(outputs, captured, types)
