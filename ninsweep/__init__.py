"""ninsweep: architecture ablation studies of a Network-in-Network CNN as Ray Tune sweeps.

The public API for use without Ray: ``build_model`` (one cell of the study as an nn.Module),
``TrialConfig`` (the whole recipe, typed) and ``Trainer`` (the training loop).
"""

__version__ = "0.1.0"

__all__ = ["build_model", "TrialConfig", "Trainer", "__version__"]


def __getattr__(name):
    # Lazy, so `ninsweep --help` and the YAML validation don't pay for importing torch.
    if name == "build_model":
        from ninsweep.core.model import build_model

        return build_model
    if name == "TrialConfig":
        from ninsweep.config import TrialConfig

        return TrialConfig
    if name == "Trainer":
        from ninsweep.core.train import Trainer

        return Trainer
    raise AttributeError(f"module 'ninsweep' has no attribute {name!r}")
