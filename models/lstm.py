"""Recurrent layer, as in the seed: ``nn.LSTM(10, 20, num_layers=2, batch_first=True)``.

All three results are outputs: the sequence output and the final hidden and cell states.
"""

import torch
from torch import nn


class LSTMNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size=10, hidden_size=20, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output, (h_n, c_n) = self.rnn(x)
        return output, h_n, c_n
