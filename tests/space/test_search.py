"""``search:`` and ``scheduler:`` in a space: distributions, seeded draws, and every mistake
as one line before Ray (which is never imported here)."""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys

import pytest

from ninsweep.errors import ConfigError
from ninsweep.space import SweepSpec, format_dry_run, parse_space
from ninsweep.space.search import Distribution, Search

GRID = """\
grid:
  - activation: [relu, elu]
    batchnorm: [true]
    init: [he]
data: {source: synthetic, val_size: 32, synthetic_train_size: 128, synthetic_test_size: 32,
       synthetic_image_size: 16}
train: {epochs: 4, batch_size: 32}
"""
SEARCH = GRID + """\
seeds: [0, 1]
search:
  samples: 3
  seed: 7
  keys:
    train.lr: {loguniform: [0.003, 0.3]}
    train.weight_decay: {choice: [0.0, 0.0001, 0.0005]}
"""


def space(text: str) -> SweepSpec:
    return parse_space(text, "space.yaml")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        space(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_draw_crosses_every_cell_and_seed_with_the_same_values():
    spec = space(SEARCH)
    assert len(spec.trials) == 2 * 3 * 2  # cells x draws x seeds
    by_draw: dict[str, set] = {}
    for trial in spec.trials:
        draw = trial.name.split("-")[-2]
        values = (trial.params["train.lr"], trial.params["train.weight_decay"])
        assert (trial.config.train.lr, trial.config.train.weight_decay) == values
        by_draw.setdefault(draw, set()).add(values)
    # Common random numbers: a draw is one set of values, shared by every cell and seed.
    assert sorted(by_draw) == ["draw0", "draw1", "draw2"]
    assert all(len(values) == 1 for values in by_draw.values())
    assert len({v for values in by_draw.values() for v in values}) == 3
    assert [t.name for t in spec.trials[:3]] == [
        "relu-bn-he-draw0-s0", "relu-bn-he-draw1-s0", "relu-bn-he-draw2-s0"]


def test_a_seeded_search_draws_the_same_values_every_time_and_in_a_new_process():
    code = ("import json, sys; from ninsweep.space import parse_space; "
            "print(json.dumps([t.params for t in parse_space(sys.stdin.read()).trials]))")
    elsewhere = subprocess.run([sys.executable, "-c", code], input=SEARCH, capture_output=True,
                               text=True, check=True).stdout
    import json
    assert json.loads(elsewhere) == [t.params for t in space(SEARCH).trials]
    other = space(SEARCH.replace("seed: 7", "seed: 8"))
    assert [t.params for t in other.trials] != [t.params for t in space(SEARCH).trials]


def test_the_manifest_keeps_the_search_and_reads_back_the_same_trials():
    spec = space(SEARCH)
    manifest = spec.to_manifest()
    assert manifest["search"]["samples"] == 3 and "scheduler" not in manifest
    again = SweepSpec.from_manifest(manifest)
    assert again.trials == spec.trials and again.search == spec.search
    assert "search" not in space(GRID).to_manifest()  # a plain grid's manifest is as before


@pytest.mark.parametrize("kind, args, check", [
    ("uniform", [-1.0, 3.0], lambda v: -1 <= v <= 3),
    ("loguniform", [1e-4, 1e-1], lambda v: 1e-4 <= v <= 1e-1),
    ("quniform", [0.0, 1.0, 0.25], lambda v: v in (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("qloguniform", [8, 256, 8], lambda v: isinstance(v, int) and v % 8 == 0 and 8 <= v <= 256),
    ("randint", [2, 5], lambda v: v in (2, 3, 4)),
    ("choice", ["a", "b"], lambda v: v in ("a", "b")),
])
def test_each_distribution_draws_inside_its_bounds(kind, args, check):
    distribution = Distribution.from_dict({kind: args})
    rng = random.Random(0)
    values = [distribution.draw(rng) for _ in range(2000)]
    assert all(check(v) for v in values), kind
    assert len(set(values)) > 1


def test_loguniform_is_even_in_log_space_and_uniform_in_linear_space():
    rng = random.Random(1)
    logs = [math.log10(Distribution.from_dict({"loguniform": [1e-4, 1.0]}).draw(rng))
            for _ in range(20000)]
    assert statistics.median(logs) == pytest.approx(-2.0, abs=0.05)
    # A quarter of the draws in each decade pair: not piled up near the top as uniform would.
    assert sum(v < -3 for v in logs) / len(logs) == pytest.approx(0.25, abs=0.02)
    linear = [Distribution.from_dict({"uniform": [0.0, 1.0]}).draw(rng) for _ in range(20000)]
    assert statistics.mean(linear) == pytest.approx(0.5, abs=0.01)


def test_random_search_finds_a_known_optimum_within_its_budget():
    """f(lr) peaks at lr = 0.02 (in log space). A loguniform draw over two decades lands within
    10% of the peak (+-0.041 decades) with probability 4.1%, so 200 draws all miss it with
    probability 0.959^200 = 2e-4; the seed is fixed, so the test is also deterministic."""
    search = Search.from_dict({"samples": 200, "seed": 3,
                               "keys": {"train.lr": {"loguniform": [0.001, 0.1]}}})
    def objective(lr: float) -> float:
        return -(math.log10(lr) - math.log10(0.02)) ** 2
    best = max((d["train.lr"] for d in search.draws()), key=objective)
    assert abs(math.log10(best / 0.02)) < math.log10(1.1)


def test_draws_are_distinct_and_too_few_distinct_values_is_one_line():
    spec = space(GRID + "search: {samples: 3, keys: {train.momentum: {choice: [0.5, 0.8, 0.9]}}}\n")
    assert sorted({t.params["train.momentum"] for t in spec.trials}) == [0.5, 0.8, 0.9]
    message = error_of(GRID + "search: {samples: 4, keys: {train.momentum: {choice: [0.5, 0.9]}}}\n")
    assert message.startswith("space.yaml: search.samples: the searched keys gave only 2 distinct")


@pytest.mark.parametrize("block, problem", [
    ("search: {samples: 2, keys: {train.lr: {uniform: [0.3, 0.1]}}}",
     "search.keys.train.lr.uniform: empty range [0.3, 0.1] (low must be below high)"),
    ("search: {samples: 2, keys: {train.lr: {loguniform: [0, 0.1]}}}",
     "search.keys.train.lr.loguniform: loguniform needs bounds > 0 (log space), got low 0"),
    ("search: {samples: 2, keys: {train.lr: {loguniform: [0.1]}}}",
     "search.keys.train.lr.loguniform: loguniform takes [low, high], both > 0"),
    ("search: {samples: 2, keys: {train.lr: {gaussian: [0, 1]}}}",
     "search.keys.train.lr: unknown distribution 'gaussian' (choose from uniform, loguniform"),
    ("search: {samples: 2, keys: {train.lr: [0.1, 0.01]}}",
     "search.keys.train.lr: expected a distribution, e.g. {loguniform: [0.003, 0.3]}"),
    ("search: {samples: 2, keys: {train.lr: {choice: []}}}",
     "search.keys.train.lr.choice: choice: empty list of values"),
    ("search: {algorithm: bayes, samples: 2, keys: {train.lr: {uniform: [0.1, 0.2]}}}",
     "search.algorithm: unknown algorithm 'bayes' (choose from random)"),
    ("search: {samples: 0, keys: {train.lr: {uniform: [0.1, 0.2]}}}", "search.samples:"),
    ("search: {samples: 2, keys: {}}", "search.keys: no keys to search"),
    ("search: {samples: 2, keys: {activation: {choice: [relu, elu]}}}",
     "search.keys.activation: also a grid key (grid[0].activation): a key is either a factor "
     "of the grid or searched, not both"),
    ("search: {samples: 2, keys: {train.epochs: {randint: [1, 3]}}}",
     "search.keys.train.epochs: also set in the train section; search it or fix it there"),
    ("search: {samples: 2, keys: {train.speed: {uniform: [0.1, 0.2]}}}",
     "search.keys.train.speed: not a config field (train fields:"),
    ("search: {samples: 2, keys: {train.lr: {uniform: [-1.0, -0.5]}}}",
     "search.keys.train.lr: drew -"),
    ("scheduler: {algorithm: asha, metric: test_acc}",
     "scheduler.metric: test_acc is measured on the test set: stopping on it would tune to the "
     "test set"),
    ("scheduler: {algorithm: pbt}", "scheduler.algorithm: unknown scheduler 'pbt' (choose from "
     "asha, median)"),
    ("scheduler: {algorithm: hyperband}", "scheduler.algorithm: hyperband: Tune's synchronous"),
    ("scheduler: {algorithm: asha, grace_period: 0}", "scheduler.grace_period:"),
], ids=lambda v: v[:40] if isinstance(v, str) else v)
def test_bad_search_and_scheduler_keys_are_one_line_naming_file_and_key(block, problem):
    message = error_of(GRID + block + "\n")
    assert message.startswith(f"space.yaml: {problem}"), message


def test_a_scheduler_without_a_validation_split_is_refused():
    text = GRID.replace("val_size: 32, ", "") + "scheduler: {algorithm: asha}\n"
    assert error_of(text) == ("space.yaml: scheduler: val_acc needs a validation split "
                              "(data.val_size > 0 in every trial)")


def test_the_dry_run_lists_the_drawn_values_and_says_what_the_scheduler_does():
    text = format_dry_run(space(SEARCH + "scheduler: {algorithm: asha, grace_period: 2}\n"))
    lr = space(SEARCH).trials[0].params["train.lr"]
    assert f"relu-bn-he-draw0-s0  activation=relu batchnorm=true init=he seed=0 train.lr={lr:g}" in text
    assert ("random search: 3 draws (seed 7) of train.lr ~ loguniform[0.003, 0.3], "
            "train.weight_decay ~ choice[0.0, 0.0001, 0.0005]") in text
    assert ("scheduler ASHA: stops trials early on val_acc (max, the validation split) after at "
            "least 2 epochs") in text


def test_the_shipped_search_spaces_load_and_draw_from_a_validation_split():
    from ninsweep.space import load_space, resolve_space_path

    for name in ("smoke-search", "lab4-lr-search", "smoke-tuned", "lab4-tuned"):
        spec = load_space(resolve_space_path(name))
        tuned = spec.tune is not None
        assert tuned or (spec.search is not None and spec.scheduler is not None), name
        assert all(t.config.data.val_size > 0 for t in spec.trials), name
    assert len(load_space(resolve_space_path("lab4-tuned")).trials) == 10 * 8 + 10 * 3 * 2


# -- tune: every cell tuned the same way -------------------------------------------------

TUNED = GRID + """\
seeds: [0, 1]
tune:
  budget: 3
  seed: 5
  epochs: 2
  keys:
    train.lr: {loguniform: [0.003, 0.1]}
"""


def test_tune_plans_every_cell_at_the_same_draws_then_its_seeds_at_the_chosen_values():
    spec = space(TUNED)
    tuning = [t for t in spec.trials if t.stage == "tune"]
    final = [t for t in spec.trials if t.stage == "final"]
    assert [t.name for t in tuning] == [f"{a}-bn-he-tune{i}-s0" for a in ("relu", "elu")
                                        for i in range(3)]
    assert [t.name for t in final] == ["relu-bn-he-s0", "elu-bn-he-s0", "relu-bn-he-s1",
                                       "elu-bn-he-s1"]
    relu, elu = ([t.tuned["train.lr"] for t in tuning if t.params["activation"] == a]
                 for a in ("relu", "elu"))
    assert relu == elu and len(set(relu)) == 3  # the same draws for every cell
    assert all(t.config.train.lr == t.tuned["train.lr"] for t in tuning)
    assert all(t.config.train.epochs == 2 and t.config.train.seed == 0 for t in tuning)
    assert all(t.config.train.epochs == 4 and not t.tuned for t in final)
    # Params stay the grid's: the drawn values are not factors of the comparison.
    assert all("train.lr" not in t.params for t in spec.trials)
    assert SweepSpec.from_manifest(spec.to_manifest()).trials == spec.trials
    assert "stage" not in space(GRID).trials[0].to_dict()  # a grid's trials read as before


@pytest.mark.parametrize("block, problem", [
    ("tune: {budget: 3, select_on: test_acc, keys: {train.lr: {uniform: [0.1, 0.2]}}}",
     "tune.select_on: test_acc is measured on the test set"),
    ("tune: {budget: 1, keys: {train.lr: {uniform: [0.1, 0.2]}}}", "tune.budget:"),
    ("tune: {budget: 3, keys: {activation: {choice: [relu, elu]}}}",
     "tune.keys.activation: also a grid key (grid[0].activation)"),
    ("tune: {budget: 3, keys: {train.lr: {uniform: [0.1, 0.2]}}}\n"
     "search: {samples: 2, keys: {train.momentum: {uniform: [0.5, 0.9]}}}",
     "tune: search: and tune: together"),
    ("tune: {budget: 3, keys: {train.lr: {uniform: [0.1, 0.2]}}}\nscheduler: {algorithm: asha}",
     "tune: scheduler: with tune: would stop the final stage's trials too"),
    ("tune: {budget: 4, keys: {train.momentum: {choice: [0.5, 0.9]}}}",
     "tune.budget: the searched keys gave only 2 distinct values"),
])
def test_bad_tune_keys_are_one_line_naming_file_and_key(block, problem):
    message = error_of(GRID + block + "\n")
    assert message.startswith(f"space.yaml: {problem}"), message


def test_tuning_without_a_validation_split_is_refused():
    assert error_of(TUNED.replace("val_size: 32, ", "")) == (
        "space.yaml: tune.select_on: val_acc needs a validation split (data.val_size > 0 in "
        "every trial)")


def test_the_dry_run_shows_both_stages():
    text = format_dry_run(space(TUNED))
    assert "stage=tune train.lr=" in text and "stage=final train.lr=(chosen by tuning)" in text
    assert ("per-cell tuning: every cell tries the same 3 draws (seed 5) of train.lr ~ "
            "loguniform[0.003, 0.1] and keeps the best val_acc (max, the validation split): "
            "stage 1, 6 trials; then stage 2, 4 trials") in text


@pytest.mark.parametrize("block, problem", [
    ("search: {algorithm: optuna, samples: 4, keys: {train.lr: {uniform: [0.1, 0.2]}}}",
     "search.algorithm: optuna learns from each trial's validation score, cell by cell: write "
     "it as tune: {algorithm: optuna"),
    ("tune: {algorithm: optuna, budget: 3, keys: {train.lr: {qloguniform: [0.01, 0.1, 0.01]}}}",
     "tune.keys.train.lr: Optuna has no log scale with a step"),
    ("tune: {algorithm: hyperopt, budget: 3, keys: {train.lr: {uniform: [0.01, 0.1]}}}",
     "tune.algorithm: unknown algorithm 'hyperopt' (choose from random, optuna)"),
])
def test_optuna_is_one_line_where_it_cannot_be_used(block, problem):
    assert error_of(GRID + block + "\n").startswith(f"space.yaml: {problem}")


# -- replication: seeds where the comparisons need them -----------------------------------

def test_replication_lists_every_seed_up_to_max_and_the_dry_run_says_how_many_run_first():
    spec = space(GRID + "replication: {min_seeds: 2, max_seeds: 5}\n")
    assert sorted({t.params["seed"] for t in spec.trials}) == [0, 1, 2, 3, 4]
    assert len(spec.trials) == 2 * 5
    text = format_dry_run(spec)
    assert "adaptive replication: 2 seeds per configuration" in text
    assert "4 trials first, at most 10" in text
    assert SweepSpec.from_manifest(spec.to_manifest()).replication == spec.replication


@pytest.mark.parametrize("block, problem", [
    ("replication: {min_seeds: 3, max_seeds: 3}",
     "replication.max_seeds: max_seeds (3) must exceed min_seeds (3)"),
    ("replication: {min_seeds: 1, max_seeds: 3}", "replication.min_seeds:"),
    ("replication: {max_seeds: 4, until: sometime}",
     "replication.until: expected decided or {ci_half_width_pct: h} with h > 0"),
    ("replication: {max_seeds: 4}\nseeds: [0, 1]",
     "replication: seeds: with replication: the seeds are 0..max_seeds-1"),
    ("replication: {max_seeds: 4}\nscheduler: {algorithm: asha}",
     "replication: scheduler: with replication: the seeds are 0..max_seeds-1"),
])
def test_bad_replication_keys_are_one_line(block, problem):
    assert error_of(GRID + block + "\n").startswith(f"space.yaml: {problem}")


def test_tune_default_adds_every_cell_and_seed_at_the_library_default():
    spec = space(TUNED.replace("  epochs: 2\n", "  epochs: 2\n  default: true\n"))
    default = [t for t in spec.trials if t.stage == "default"]
    assert [t.name for t in default] == ["relu-bn-he-default-s0", "elu-bn-he-default-s0",
                                         "relu-bn-he-default-s1", "elu-bn-he-default-s1"]
    assert all(t.tuned == {"train.lr": 0.1} and t.config.train.epochs == 4 for t in default)
