"""Convolutional layer, as in the seed: ``nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1)``."""

import torch
from torch import nn


class Conv2dNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
