"""Activation, as in the seed: ``nn.ReLU()`` sets all negative values to zero."""

from torch import nn

from nnkit.models._activation import Activation


class ReLUNN(Activation):
    layer = nn.ReLU
