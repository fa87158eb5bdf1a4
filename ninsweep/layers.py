"""Building blocks: the activation registry, Maxout, and one conv -> norm -> act block.

Activations are looked up by name in ``ACTIVATIONS`` (timm's create_act style): adding one
is one table entry, not a new class or branch in the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .config import ModelConfig


class Maxout(nn.Module):
    """Maxout over groups of ``pieces`` adjacent channels (Goodfellow et al. 2013).

    The conv feeding it produces ``pieces * C`` channels; channel ``c`` of the output is the
    max over input channels ``c*pieces .. c*pieces + pieces - 1``.
    """

    def __init__(self, pieces: int = 2):
        super().__init__()
        if pieces < 2:
            raise ValueError("Maxout needs at least 2 pieces")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        grouped = x.view(batch, channels // self.pieces, self.pieces, height, width)
        # amax keeps the memory format of the input for NCHW and channels_last alike.
        return grouped.amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@dataclass(frozen=True)
class ActivationSpec:
    """How to build an activation from the model settings, and how wide its input must be."""

    make: Callable[[ModelConfig], nn.Module]
    # Channels the preceding conv must produce per output channel (Maxout's k, else 1).
    pieces: Callable[[ModelConfig], int] = lambda cfg: 1


ACTIVATIONS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec(lambda cfg: nn.ReLU(inplace=True)),
    "leaky_relu": ActivationSpec(lambda cfg: nn.LeakyReLU(cfg.leaky_relu_slope, inplace=True)),
    "elu": ActivationSpec(lambda cfg: nn.ELU(cfg.elu_alpha, inplace=True)),
    "maxout": ActivationSpec(lambda cfg: Maxout(cfg.maxout_pieces),
                             pieces=lambda cfg: cfg.maxout_pieces),
}


class ConvNormAct(nn.Sequential):
    """conv -> [BatchNorm] -> activation: z = f(BN(Wx + b)), the reference's every layer.

    The conv keeps its bias even with BN, as Keras did (the parameter count of the reference
    includes it); BN then makes it redundant but harmless.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, cfg: ModelConfig):
        activation = ACTIVATIONS[cfg.activation]
        conv_channels = out_channels * activation.pieces(cfg)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_channels, kernel_size, padding=kernel_size // 2, bias=True)
        ]
        if cfg.batchnorm:
            layers.append(nn.BatchNorm2d(conv_channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        layers.append(activation.make(cfg))
        super().__init__(*layers)
        self.out_channels = out_channels

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]
