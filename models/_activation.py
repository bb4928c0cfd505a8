"""The shared shape of the activation models: one parameter-free layer, applied."""

import torch
from torch import nn


class Activation(nn.Module):
    """Applies ``layer()``; each activation model names its layer."""

    layer: type[nn.Module]

    def __init__(self) -> None:
        super().__init__()
        self.act = self.layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)
