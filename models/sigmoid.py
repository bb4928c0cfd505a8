"""Activation, as in the seed: ``nn.Sigmoid()`` squashes its input into (0, 1)."""

from torch import nn

from nnkit.models._activation import Activation


class SigmoidNN(Activation):
    layer = nn.Sigmoid
