"""Every name a config may use for a building block, and how it is built: one table per kind.

Activations, normalisations, weight-init schemes and data sources live here once, with
their report label ("ReLU", "+BN", "+WI") and the settings they read. ``config`` validates
names against these tables, the analysis takes its labels from them, and layers / model /
data build from them. A builder is an import path (``"torch.nn:LeakyReLU"``) resolved on
first use, so reading a name or a label imports no torch (``ninsweep status``, ``export``
and ``--dry-run`` never need it).

Adding an activation is one ``ACTIVATIONS`` entry (and its module in layers.py if PyTorch
has none); a new setting it reads is a ``ModelConfig`` field named in ``options``.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


def resolve(path: str) -> Callable[..., Any]:
    """What an import path names, imported now: "torch.nn:ReLU" -> torch.nn.ReLU."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Entry:
    """One name: its label and how to build it (``build(settings)``)."""

    label: str  # how reports name it: "ReLU"; a suffix for norms and inits: "+BN"; "" for none
    builder: Optional[str]  # "module:attribute"; None: nothing is built (no norm, torch's init)
    # The settings it reads -> the keyword each is passed as. For activations and norms
    # these are ModelConfig fields (grid keys); for inits, fields of the conv's layer spec.
    options: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)  # keywords passed as they are

    def build(self, settings: Any) -> Optional[Callable[..., Any]]:
        """The builder with its keywords bound from ``settings`` (None if it builds nothing):
        ``functools.partial(nn.LeakyReLU, negative_slope=0.01, inplace=True)``."""
        if self.builder is None:
            return None
        keywords = {keyword: getattr(settings, key) for key, keyword in self.options.items()}
        return functools.partial(resolve(self.builder), **keywords, **self.fixed)


@dataclass(frozen=True)
class Activation(Entry):
    # The ModelConfig field counting the conv channels that feed one output channel
    # (Maxout's k: the conv before it is k times wider); None: one.
    pieces: Optional[str] = None


INPLACE = {"inplace": True}

ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("ReLU", "torch.nn:ReLU", fixed=INPLACE),
    "leaky_relu": Activation("LeakyReLU", "torch.nn:LeakyReLU",
                             {"leaky_relu_slope": "negative_slope"}, INPLACE),
    "elu": Activation("ELU", "torch.nn:ELU", {"elu_alpha": "alpha"}, INPLACE),
    "maxout": Activation("Maxout", "ninsweep.core.layers:Maxout", {"maxout_pieces": "pieces"},
                         pieces="maxout_pieces"),
    "gelu": Activation("GELU", "torch.nn:GELU"),
    "silu": Activation("SiLU", "torch.nn:SiLU", fixed=INPLACE),
    "mish": Activation("Mish", "torch.nn:Mish", fixed=INPLACE),
    "selu": Activation("SELU", "torch.nn:SELU", fixed=INPLACE),
    "tanh": Activation("Tanh", "torch.nn:Tanh"),
    # One learned slope per layer (PyTorch's default), starting at prelu_init.
    "prelu": Activation("PReLU", "torch.nn:PReLU", {"prelu_init": "init"}),
    "hardswish": Activation("Hardswish", "torch.nn:Hardswish", fixed=INPLACE),
}

# A norm's builder takes the conv's output width as its first argument.
NORMS: dict[str, Entry] = {
    "none": Entry("", None),
    # Keras BatchNormalization defaults (bn_momentum, bn_eps): the reference's BN.
    "batch": Entry("+BN", "torch.nn:BatchNorm2d", {"bn_eps": "eps", "bn_momentum": "momentum"}),
    "group": Entry("+GN", "ninsweep.core.layers:group_norm", {"norm_groups": "groups", "bn_eps": "eps"}),
    # Layer norm of a conv net: one group over (C, H, W) per image, as ConvNeXt-style
    # GroupNorm(1, C) does; a per-channel affine like BN's.
    "layer": Entry("+LN", "ninsweep.core.layers:group_norm", {"bn_eps": "eps"}, {"groups": 1}),
}

# An init's builder takes a conv's weight (torch.nn.init's convention); biases become zero.
# The schemes are described in ninsweep/model.py.
RELU_GAIN = {"nonlinearity": "relu"}

INITS: dict[str, Entry] = {
    "keras": Entry("", "ninsweep.core.model:keras_init_", {"keras_std": "std"}),
    "he": Entry("+WI", "ninsweep.core.model:he_init_"),
    "torch": Entry("+torchinit", None),  # PyTorch's defaults, biases included
    "orthogonal": Entry("+orthogonal", "torch.nn.init:orthogonal_"),
    "xavier_uniform": Entry("+xavier_uniform", "torch.nn.init:xavier_uniform_"),
    "xavier_normal": Entry("+xavier_normal", "torch.nn.init:xavier_normal_"),
    "kaiming_fan_in": Entry("+kaiming_fan_in", "torch.nn.init:kaiming_normal_",
                            fixed={"mode": "fan_in", **RELU_GAIN}),
    "kaiming_fan_out": Entry("+kaiming_fan_out", "torch.nn.init:kaiming_normal_",
                             fixed={"mode": "fan_out", **RELU_GAIN}),
}

# Data sources: name -> the decoder (cfg, imagefolder scan, log) -> decoded splits.
SOURCES: dict[str, str] = {
    "cifar10": "ninsweep.core.data:_decode_cifar10",
    "imagefolder": "ninsweep.core.data:_decode_imagefolder",
    "synthetic": "ninsweep.core.data:_generate_synthetic",
    "factory": "ninsweep.core.data:_load_factory",
}
