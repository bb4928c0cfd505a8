"""Fully connected layer, as in the seed: ``nn.Linear(in_features=10, out_features=50)``."""

import torch
from torch import nn


class LinearNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features=10, out_features=50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
