"""Activation, as in the seed: ``nn.Tanh()`` squashes its input into (-1, 1)."""

from torch import nn

from nnkit.models._activation import Activation


class TanhNN(Activation):
    layer = nn.Tanh
