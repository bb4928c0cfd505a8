"""Pooling layer, as in the seed's CombinedNN: ``nn.MaxPool2d(kernel_size=2, stride=2)``."""

import torch
from torch import nn


class MaxPool2dNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)
