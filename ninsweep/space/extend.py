"""``ninsweep extend``: the trials a finished experiment gains, checked against what it ran.

``--seeds N`` brings every configuration to seeds 0..N-1: each new trial is an existing
trial of its configuration with only its seed (and the seed in its name) changed, so
pairing by seed holds across old and new trials. ``--space FILE`` takes a space whose trials
include every trial the experiment has, each with the same config: a trial of the same name
whose recipe differs is refused, naming the keys, and so is a space that drops a trial.
pydantic only: no Ray, no storage.
"""

from __future__ import annotations

from typing import Any, Optional

from ninsweep.errors import ConfigError
from ninsweep.space.schema import SEED, SweepSpec, TrialSpec


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def differing_keys(old: TrialSpec, new: TrialSpec) -> list[str]:
    """The config keys (``train.epochs``) on which two trials' recipes differ."""
    a, b = _flat(old.config.to_dict()), _flat(new.config.to_dict())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def check_extensible(spec: SweepSpec, where: str) -> None:
    for key in ("tune", "replication"):
        if getattr(spec, key) is not None:
            raise ConfigError(f"{where}: an experiment with {key}: decides its own trials as "
                              "it runs; extend works on grids and random searches")


def more_seeds(spec: SweepSpec, seeds: int, where: str) -> list[TrialSpec]:
    """Every configuration's trials for the seeds 0..seeds-1 it does not have yet."""
    check_extensible(spec, where)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds!r}")
    names = {t.name for t in spec.trials}
    configs: dict[str, list[TrialSpec]] = {}
    for trial in spec.trials:
        cell = repr(sorted((k, repr(v)) for k, v in trial.params.items() if k != SEED))
        configs.setdefault(cell, []).append(trial)
    added = []
    for seed in range(seeds):
        for trials in configs.values():
            if any(t.params[SEED] == seed for t in trials):
                continue
            template = trials[0]
            suffix = f"-s{template.params[SEED]}"
            if not template.name.endswith(suffix):
                raise ConfigError(f"{where}: trial {template.name} is not named by its seed; "
                                  "extend it with --space")
            name = f"{template.name[:-len(suffix)]}-s{seed}"
            if name in names:
                raise ConfigError(f"{where}: a trial named {name} exists with other params")
            added.append(TrialSpec(name=name, params={**template.params, SEED: seed},
                                   config=template.config.replace(train={"seed": seed}),
                                   stage=template.stage, tuned=template.tuned))
    if not added:
        raise ConfigError(f"--seeds {seeds}: every configuration of {where} has seeds "
                          f"0..{seeds - 1} already; give a larger number")
    return added


def from_space(spec: SweepSpec, space: SweepSpec, where: str) -> list[TrialSpec]:
    """The trials of ``space`` that the experiment does not have, after checking that it has
    every old trial with the recipe that trial ran with."""
    check_extensible(spec, where)
    new_by_name = {t.name: t for t in space.trials}
    for trial in spec.trials:
        other: Optional[TrialSpec] = new_by_name.get(trial.name)
        if other is None:
            raise ConfigError(f"{space.source or '--space'}: has no trial {trial.name} (the "
                              "experiment ran it): extend with a space that contains its grid")
        keys = differing_keys(trial, other)
        if keys:
            raise ConfigError(f"{space.source or '--space'}: trial {trial.name} would run a "
                              f"different recipe than it did ({', '.join(keys)}); a new cell "
                              "must share the old cells' recipe")
    old = {t.name for t in spec.trials}
    added = [t for t in space.trials if t.name not in old]
    if not added:
        raise ConfigError(f"{space.source or '--space'}: adds no trial to {where}")
    return added
