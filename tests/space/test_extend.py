"""``ninsweep extend``'s plan, without Ray: which trials a finished experiment gains, and the
refusals (a changed recipe, a dropped trial, stages that decide their own trials)."""

from __future__ import annotations

import pytest

from ninsweep.errors import ConfigError
from ninsweep.space import parse_space
from ninsweep.space.extend import from_space, more_seeds

GRID = """\
grid:
  - activation: [relu, elu]
    batchnorm: [true]
    init: [he]
data: {source: synthetic}
train: {epochs: 2}
"""


def test_more_seeds_copies_each_configuration_with_only_its_seed_changed():
    spec = parse_space(GRID, "exp")
    added = more_seeds(spec, 3, "exp")
    assert [t.name for t in added] == ["relu-bn-he-s1", "elu-bn-he-s1", "relu-bn-he-s2",
                                       "elu-bn-he-s2"]
    for trial in added:
        old = next(t for t in spec.trials if t.params["activation"] == trial.params["activation"])
        assert trial.config == old.config.replace(train={"seed": trial.params["seed"]})
        assert {k: v for k, v in trial.params.items() if k != "seed"} == \
               {k: v for k, v in old.params.items() if k != "seed"}
    with pytest.raises(ConfigError, match="has seeds 0..0 already"):
        more_seeds(spec, 1, "exp")


def test_a_space_that_adds_a_cell_is_taken_and_one_that_changes_a_recipe_is_refused():
    spec = parse_space(GRID, "exp")
    wider = parse_space(GRID.replace("[relu, elu]", "[relu, elu, leaky_relu]"), "wider.yaml")
    assert [t.name for t in from_space(spec, wider, "exp")] == ["leaky_relu-bn-he-s0"]
    longer = parse_space(GRID.replace("[relu, elu]", "[relu, elu, leaky_relu]")
                         .replace("epochs: 2", "epochs: 3"), "longer.yaml")
    with pytest.raises(ConfigError) as caught:
        from_space(spec, longer, "exp")
    assert str(caught.value) == ("longer.yaml: trial relu-bn-he-s0 would run a different recipe "
                                 "than it did (train.epochs); a new cell must share the old "
                                 "cells' recipe")
    narrower = parse_space(GRID.replace("[relu, elu]", "[relu]"), "narrow.yaml")
    with pytest.raises(ConfigError, match="narrow.yaml: has no trial elu-bn-he-s0"):
        from_space(spec, narrower, "exp")
    with pytest.raises(ConfigError, match="adds no trial"):
        from_space(spec, spec, "exp")


def test_stages_that_decide_their_own_trials_are_refused():
    tuned = parse_space(GRID.replace("data: {source: synthetic}",
                                     "data: {source: synthetic, val_size: 32}")
                        + "tune: {budget: 2, keys: {train.lr: {uniform: [0.01, 0.1]}}}\n", "t")
    with pytest.raises(ConfigError, match="an experiment with tune: decides its own trials"):
        more_seeds(tuned, 3, "t")
