"""The reference zoo: the layers of the seed document, one file per model.

The registry below is explicit and holds only metadata, so listing the zoo never
imports torch; a model's module (which does) is imported when the model is built.
Weights are drawn from a fixed seed, so a file exported yesterday still matches the
model built today.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnkit.spec import Dim, TensorSpec

if TYPE_CHECKING:
    import torch

#: Seed of every zoo model's weights.
WEIGHT_SEED = 0

BATCH = Dim("batch", 2)
SEQ = Dim("seq", 7)


@dataclass(frozen=True)
class ZooEntry:
    """One reference model: where it lives, what it takes and gives, how close is close.

    ``atol``/``rtol`` replace the dtype's in nnkit's default, scale-aware comparison, in
    its relative units: ``atol`` is a fraction of each output's RMS (and the bound of the
    relative error norm). See :mod:`nnkit.compare`.
    """

    name: str
    summary: str
    module: str
    attr: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    atol: float = 1e-5
    rtol: float = 1e-4

    def build(self) -> torch.nn.Module:
        """The model in eval mode, with its seeded weights."""
        import torch

        cls = getattr(importlib.import_module(f"nnkit.models.{self.module}"), self.attr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(WEIGHT_SEED)
            model = cls()
        return model.eval()


def _x(*dims: int | Dim) -> tuple[TensorSpec, ...]:
    return (TensorSpec("x", (BATCH, *dims)),)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("linear", "nn.Linear(10, 50)", "linear", "LinearNN", _x(10), ("y",)),
        ZooEntry(
            "conv2d",
            "nn.Conv2d(3, 16, 3, stride=1, padding=1)",
            "conv2d",
            "Conv2dNN",
            _x(3, 32, 32),
            ("y",),
        ),
        ZooEntry(
            "lstm",
            "nn.LSTM(10, 20, num_layers=2, batch_first=True)",
            "lstm",
            "LSTMNN",
            _x(SEQ, 10),
            ("output", "h_n", "c_n"),
            rtol=1e-3,
        ),
        ZooEntry(
            "gru",
            "nn.GRU(10, 20, num_layers=2, batch_first=True)",
            "gru",
            "GRUNN",
            _x(SEQ, 10),
            ("output", "h_n"),
            rtol=1e-3,
        ),
        ZooEntry("relu", "nn.ReLU()", "relu", "ReLUNN", _x(50), ("y",)),
        ZooEntry("sigmoid", "nn.Sigmoid()", "sigmoid", "SigmoidNN", _x(50), ("y",)),
        ZooEntry("tanh", "nn.Tanh()", "tanh", "TanhNN", _x(50), ("y",)),
        ZooEntry(
            "maxpool2d",
            "nn.MaxPool2d(2, 2)",
            "maxpool2d",
            "MaxPool2dNN",
            _x(16, 32, 32),
            ("y",),
        ),
        ZooEntry(
            "combinednn",
            "the seed's CombinedNN: conv 16, pool, fc 4096->120->84->10",
            "combinednn",
            "CombinedNN",
            _x(3, 32, 32),
            ("logits",),
            atol=1e-4,
            rtol=1e-3,
        ),
    )
}


def get(name: str) -> ZooEntry:
    """The zoo entry called ``name``.

    Raises:
        ModelSourceError: no such entry; the message lists the zoo.
    """
    from nnkit.errors import ModelSourceError

    try:
        return ZOO[name]
    except KeyError:
        raise ModelSourceError(
            f"unknown model {name!r}: the zoo has {', '.join(ZOO)}; "
            "or give path/to/file.py:Class or package.module:factory"
        ) from None
