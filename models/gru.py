"""GRU, named by the seed beside the LSTM, with the same shape: 10 -> 20, 2 layers."""

import torch
from torch import nn


class GRUNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_size=10, hidden_size=20, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, h_n = self.rnn(x)
        return output, h_n
