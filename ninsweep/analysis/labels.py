"""How the tables name a configuration: the report's "ELU+BN+WI", or a factory's factors.

The labels come from the registry (``ninsweep/registry.py``: "ReLU", "+BN", "+WI"), other grid
keys are appended as ``key=value`` with the one value formatter (``fmt.value_text``). A label
is a configuration's identity in every table: two configurations never share one.
"""

from __future__ import annotations

from typing import Any, Optional

from ninsweep.analysis.results import TrialRecord
from ninsweep.fmt import value_text
from ninsweep.registry import ACTIVATIONS, INITS, NORMS
from ninsweep.space.schema import MODEL_AXES, SEED

NORM_KEY = "model.norm"  # a grid key whose levels label as "+GN", "+LN" (NORMS' labels)
# Each registry name -> its label: "relu" -> "ReLU", "batch" -> "+BN", "he" -> "+WI".
ACTIVATION_LABELS = {name: entry.label for name, entry in ACTIVATIONS.items()}
NORM_LABELS = {name: entry.label for name, entry in NORMS.items()}
INIT_LABELS = {name: entry.label for name, entry in INITS.items()}


def base_params(trial: TrialRecord) -> dict[str, Any]:
    """activation, batchnorm, init: the params' (a factory's trial has none: its config's)."""
    return {key: trial.params.get(key, getattr(trial.config.model, key)) for key in MODEL_AXES}


def extra_params(trial: TrialRecord) -> dict[str, Any]:
    return {k: v for k, v in trial.params.items() if k not in MODEL_AXES and k != SEED}


def seed_of(trial: TrialRecord) -> Any:
    return trial.config.train.seed


def config_label(activation: str, batchnorm: bool, init: str, extra: Optional[dict[str, Any]] = None) -> str:
    """The report's naming: "ELU+BN+WI", "ReLU", "LeakyReLU+BN+WI"; other params appended.

    A ``model.norm`` grid key labels as its norm ("ReLU+GN", "ReLU+BN"), not as a key=value.
    """
    extra = dict(extra or {})
    label = ACTIVATION_LABELS.get(str(activation), str(activation))
    if NORM_KEY in extra:
        norm = str(extra.pop(NORM_KEY))
        label += NORM_LABELS.get(norm, f"+{norm}")
    elif batchnorm:
        label += NORM_LABELS["batch"]
    label += INIT_LABELS.get(str(init), f"+{init}")
    for key, value in sorted(extra.items()):
        label += f" {key}={value_text(value)}"
    return label


def factor_label(extra: dict[str, Any], model: str = "") -> str:
    """A label from the factors alone: "width=16 depth=20 norm=batch" (model keys bare,
    other sections dotted: "train.lr=0.01"); ``model`` (a factory's name) when none vary."""
    parts = [f"{key.removeprefix('model.')}={value_text(value)}" for key, value in extra.items()]
    return " ".join(parts) or model or "default"


def trial_label(trial: TrialRecord, base: dict[str, Any], extra: dict[str, Any]) -> str:
    """The NIN's trials: the report's naming (ELU+BN+WI); a model factory's: its factors."""
    factory = trial.config.model.factory
    if factory:
        return factor_label(extra, str(factory).rpartition(":")[2])
    return config_label(base["activation"], base["batchnorm"], base["init"], extra)

