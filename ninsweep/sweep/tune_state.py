"""The few callables that Tune stores inside an experiment, written to load without ninsweep.

Tune pickles its trials (``experiment_state-*.json``) and the tuner (``tuner.pkl``) with
cloudpickle, and with them the trial-name function and the run's callbacks. Pickled by
reference, they would make the experiment unreadable for a colleague who has Ray but not
ninsweep (``ExperimentAnalysis``, ``Tuner.restore`` and ``ResultGrid`` would fail with "No
module named 'ninsweep'"). So this module is registered with cloudpickle's public
``register_pickle_by_value`` (see ``register``): its functions travel as code, and it imports
nothing from ninsweep but a string constant (which travels as its value). Keep it that way: a
reference to a function or class of another ninsweep module would be pickled by reference.
"""

from __future__ import annotations

import importlib
import sys

import ray.cloudpickle

from ninsweep.space.schema import TRIAL_KEY

TRIAL_NAME = "trial_name"  # the grid Tune expands: one trial name per trial, in order


class TrialNamed:
    """``tune.sample_from`` of a trial's ``TRIAL_KEY`` entry: the trial of the variant's name.

    Tune deep-copies the whole unresolved param space for every trial it creates: a grid
    over the trial dicts themselves made that quadratic (21.8 s of driver CPU for 1,000
    trials, bench/bench_search.py). A grid over names with this resolver copies one string
    per trial; the dict of trials is shared (``__deepcopy__``).
    """

    def __init__(self, trials: dict):
        self.trials = trials

    def __call__(self, config) -> dict:  # Tune passes the config resolved so far
        return self.trials[config[TRIAL_NAME]]

    def __deepcopy__(self, memo) -> "TrialNamed":
        return self


def trial_dirname(trial) -> str:
    """Tune's trial name and directory name: the ninsweep trial name (``elu-bn-he-s0``).

    Tune names a trial before it resolves ``sample_from`` values (they are placeholders
    then), so the name comes from the grid's own value when there is one.
    """
    if TRIAL_NAME in trial.config:
        return trial.config[TRIAL_NAME]
    return trial.config[TRIAL_KEY]["name"]  # an experiment made before the name grid


def load_or_fallback(module: str, factory: str, args: tuple, fallback_module: str,
                     fallback: str):
    """What a ninsweep callback becomes when an experiment's tuner state is loaded.

    With ninsweep importable: ``module.factory(*args)``, the callback of the run being
    resumed. Without it: ``fallback_module.fallback()``, a Ray class that does the same job,
    or nothing.
    """
    try:
        target = importlib.import_module(module)
    except ImportError:
        return getattr(importlib.import_module(fallback_module), fallback)()
    return getattr(target, factory)(*args)


def register() -> None:
    """Pickle this module's functions by value from now on, in this process."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
