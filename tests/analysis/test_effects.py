"""ninsweep.effects: factor effects recovered from hand-made experiments with known effects.

Each design states its true cell means; the tests check the estimates against the truth,
the intervals hold it, and the two-cell cases against scipy's own t-tests. Single
experiments check 99.9% intervals (ALPHA_STRICT), so that a miss means a bug, not the 1 in
20 chance of a 95% interval; the nominal 95% rate is checked over many replicates.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ninsweep import analysis
from ninsweep.analysis import effects
from ninsweep.errors import NinsweepError

try:
    from .analysis_fixtures import factorial_specs, make_experiment, trial_frame
except ImportError:
    from analysis_fixtures import factorial_specs, make_experiment, trial_frame

ALPHA_STRICT = 0.001

LAB4_LEVELS = {"activation": ["relu", "elu", "leaky_relu", "maxout"], "batchnorm": [False, True],
               "init": ["keras", "he"]}


def lab4_truth(cell):
    """Known effects: BN +2, He +1, ELU +0.5 (LeakyReLU -1, Maxout -3 vs ReLU), BN x He +1."""
    act = {"relu": 0.0, "elu": 0.5, "leaky_relu": -1.0, "maxout": -3.0}[cell["activation"]]
    bn, he = cell["batchnorm"], cell["init"] == "he"
    return 85.0 + act + 2.0 * bn + 1.0 * he + 1.0 * (bn and he)


def lab4_keep(cell):
    # lab4's second block: LeakyReLU and Maxout only with BN + He init.
    return cell["activation"] in ("relu", "elu") or (cell["batchnorm"] and cell["init"] == "he")


def row(df, factor, level):
    hit = df[(df["factor"] == factor) & (df["level"] == level)]
    assert len(hit) == 1, (factor, level, df[["factor", "level"]])
    return hit.iloc[0]


def holds(r, truth):
    return r["ci_low_pct"] <= truth <= r["ci_high_pct"]


def test_full_factorial_main_effects_and_interaction_recovered():
    levels = {"batchnorm": [False, True], "init": ["keras", "he"], "train.lr": [0.1, 0.05]}

    def truth(c):
        return 80.0 + 2.0 * c["batchnorm"] + 1.0 * (c["init"] == "he") - 0.8 * (c["train.lr"] == 0.05) \
            + 1.0 * (c["batchnorm"] and c["init"] == "he")

    specs = factorial_specs(levels, truth, range(4), rng=np.random.default_rng(3), noise=0.2, seed_sd=1.0)
    trials = trial_frame(specs)
    main = effects.main_effects(trials, ALPHA_STRICT)
    assert list(main["factor"]) == ["batchnorm", "init", "train.lr"]
    # Averaged over the other factors: BN's effect is 2 + 1/2 (half its contexts have He).
    for factor, level, ref, true in (("batchnorm", "true", "false", 2.5), ("init", "he", "keras", 1.5),
                                     ("train.lr", "0.05", "0.1", -0.8)):
        r = row(main, factor, level)
        assert r["baseline"] == ref and r["over"] == "all" and r["contexts"] == 4
        assert r["paired"] and r["n"] == 32 and r["n_level"] == r["n_baseline"] == 16
        assert holds(r, true), r
        assert r["effect_pct"] == pytest.approx(true, abs=0.3)
        assert r["p"] < 1e-3
    inter = effects.interactions(trials, ALPHA_STRICT)
    bi = row(inter, "batchnorm x init", "true x he")
    assert holds(bi, 1.0) and bi["p"] < 0.01 and bi["baseline"] == "false x keras"
    none = row(inter, "init x train.lr", "he x 0.05")
    assert holds(none, 0.0)


def test_lab4_design_effects_on_the_balanced_part_with_missing_seeds():
    specs = factorial_specs(LAB4_LEVELS, lab4_truth, range(5), rng=np.random.default_rng(7), noise=0.25,
                            seed_sd=0.8, keep=lab4_keep, missing={(0, 1), (3, 4), (9, 0)})
    trials = trial_frame(specs)
    table = effects.effects_table(trials, alpha=ALPHA_STRICT)
    bn = row(table, "batchnorm", "true")
    # Only ReLU and ELU ran without BN: the effect is averaged over them, and says so.
    assert bn["over"] == "activation in {relu, elu}" and bn["contexts"] == 4
    assert holds(bn, 2.5)
    he = row(table, "init", "he")
    assert he["over"] == "activation in {relu, elu}" and holds(he, 1.5)
    elu = row(table, "activation", "elu")
    assert elu["over"] == "all" and holds(elu, 0.5)
    for level, true in (("leaky_relu", -1.0), ("maxout", -3.0)):
        r = row(table, "activation", level)
        # Against ReLU in the one context both ran: ReLU+BN+WI.
        assert r["over"] == "batchnorm=true, init=he" and r["contexts"] == 1
        assert holds(r, true), r
    # Interactions of LeakyReLU with BN cannot be estimated: the cells never ran together.
    leaky_bn = row(table, "activation x batchnorm", "leaky_relu x true")
    assert leaky_bn["contexts"] == 0 and np.isnan(leaky_bn["effect_pct"])
    assert leaky_bn["note"] == effects.NOTE_NO_CONTEXT
    assert holds(row(table, "batchnorm x init", "true x he"), 1.0)
    assert "Not a full factorial: 10 of the 16 cells" in " ".join(effects.design_summary(trials))


def test_intervals_hold_the_truth_at_their_nominal_rate():
    rng = np.random.default_rng(11)
    levels = {"batchnorm": [False, True], "init": ["keras", "he"]}

    def truth(c):
        return 70.0 + 1.0 * c["batchnorm"] + 0.5 * (c["init"] == "he")

    reps, held = 120, 0
    for _ in range(reps):
        trials = trial_frame(factorial_specs(levels, truth, range(3), rng=rng, noise=0.5, seed_sd=0.5))
        held += holds(row(effects.main_effects(trials), "batchnorm", "true"), 1.0)
    # 95% nominal: 114 of 120 expected; below 104 has probability < 1e-4 for a correct interval.
    assert held >= 104, held
    assert held <= 120


def test_two_configs_with_shared_seeds_match_scipys_paired_t_test():
    rng = np.random.default_rng(5)
    x = 80 + rng.normal(0, 2, 6)
    y = x + 1.0 + rng.normal(0, 0.2, 6)  # seeds shared: large seed effect, small noise
    specs = [{"activation": "relu", "seed": s, "final_acc": v / 100} for s, v in enumerate(x)]
    specs += [{"activation": "elu", "seed": s, "final_acc": v / 100} for s, v in enumerate(y)]
    r = row(effects.main_effects(trial_frame(specs)), "activation", "elu")
    ref = stats.ttest_rel(y, x)
    lo, hi = ref.confidence_interval(0.95)
    assert r["paired"]
    assert r["effect_pct"] == pytest.approx(float(np.mean(y - x)))
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert (r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx((lo, hi), rel=1e-6)
    assert hi - lo < 1.0  # unpaired, the seed spread (2 points) would swamp it


def test_two_configs_without_shared_seeds_match_scipys_two_sample_t_test():
    x, y = [80.1, 80.9, 79.5], [81.2, 82.0, 81.1, 81.9]
    specs = [{"activation": "relu", "seed": s, "final_acc": v / 100} for s, v in enumerate(x)]
    specs += [{"activation": "elu", "seed": 10 + s, "final_acc": v / 100} for s, v in enumerate(y)]
    r = row(effects.main_effects(trial_frame(specs)), "activation", "elu")
    ref = stats.ttest_ind(y, x, equal_var=True)
    assert not r["paired"] and r["df"] == 5
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    lo, hi = ref.confidence_interval(0.95)
    assert (r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx((lo, hi), rel=1e-6)


def test_one_seed_per_cell_gives_the_effect_without_an_interval():
    specs = [{"batchnorm": False, "final_acc": 0.80}, {"batchnorm": True, "final_acc": 0.83}]
    r = row(effects.main_effects(trial_frame(specs)), "batchnorm", "true")
    assert r["effect_pct"] == pytest.approx(3.0)
    assert np.isnan(r["ci_low_pct"]) and np.isnan(r["p"]) and r["note"] == effects.NOTE_ONE_SEED


def test_effect_intervals_are_clipped_to_what_a_difference_of_accuracies_can_be():
    x, y = [0.0, 100.0], [100.0, 0.0]  # t-interval: 0 ± 304 points
    specs = [{"init": "keras", "seed": s, "final_acc": v / 100} for s, v in enumerate(x)]
    specs += [{"init": "he", "seed": 10 + s, "final_acc": v / 100} for s, v in enumerate(y)]
    r = row(effects.main_effects(trial_frame(specs)), "init", "he")
    assert r["ci_low_pct"] == -100.0 and r["ci_high_pct"] == 100.0


def test_config_intervals_are_clipped_to_the_accuracy_range(tmp_path):
    specs = [{"seed": s, "final_acc": v} for s, v in enumerate([0.10, 0.50, 0.95])]
    exp = analysis.load_experiment(make_experiment(tmp_path, specs))
    c = analysis.config_table(exp).iloc[0]
    assert c["ci95_low_pct"] == 0.0 and c["ci95_high_pct"] == 100.0  # t-interval: [-61, 164]


def test_reference_level_is_the_default_when_the_grid_has_it():
    specs = [{"activation": a, "seed": s, "final_acc": 0.8 + 0.01 * s} for a in ("elu", "relu") for s in range(2)]
    specs += [{"activation": a, "seed": s, "extra": {"train.lr": lr}, "final_acc": 0.8}
              for a in ("elu",) for s in range(2) for lr in (0.05,)]
    data, levels = effects.design(trial_frame(specs))
    assert levels["activation"][0] == "relu"


def test_against_a_baseline_and_an_unknown_baseline():
    specs = factorial_specs(LAB4_LEVELS, lab4_truth, range(3), rng=np.random.default_rng(2), noise=0.2,
                            keep=lab4_keep)
    trials = trial_frame(specs)
    base = effects.against_baseline(trials, "ReLU", ALPHA_STRICT)
    assert set(base["baseline"]) == {"ReLU"} and len(base) == 9
    assert holds(row(base, "config", "ReLU+BN+WI"), 4.0)
    assert holds(row(base, "config", "Maxout+BN+WI"), 1.0)
    with pytest.raises(NinsweepError, match="--baseline 'relu': no such config"):
        effects.against_baseline(trials, "relu")


def test_the_fit_agrees_with_statsmodels_ols_on_an_incomplete_design_with_missing_seeds():
    sm = pytest.importorskip("statsmodels.api")
    specs = factorial_specs(LAB4_LEVELS, lab4_truth, range(4), rng=np.random.default_rng(9), noise=0.4,
                            seed_sd=1.0, keep=lab4_keep, missing={(0, 1), (2, 3), (5, 0), (9, 2)})
    trials = trial_frame(specs)
    r = row(effects.main_effects(trials), "batchnorm", "true")
    assert r["paired"]
    # The same model by statsmodels: the trials of ReLU/ELU, one indicator per cell and per
    # seed (the first dropped), the contrast BN minus no BN averaged over the 4 contexts.
    data, _ = effects.design(trials)
    data = data[data["activation"].isin(["relu", "elu"])]
    cells = pd.get_dummies(data[["activation", "batchnorm", "init"]].astype(str).agg("/".join, axis=1))
    seeds = pd.get_dummies(data["seed"]).iloc[:, 1:]
    X = pd.concat([cells, seeds], axis=1).astype(float)
    contrast = np.array([(0.25 if c.split("/")[1] == "true" else -0.25) for c in cells.columns]
                        + [0.0] * seeds.shape[1])
    test = sm.OLS(data["y"].to_numpy(float), X.to_numpy()).fit().t_test(contrast)
    lo, hi = np.asarray(test.conf_int(0.05)).ravel()
    assert r["effect_pct"] == pytest.approx(float(np.asarray(test.effect).ravel()[0]), rel=1e-9)
    assert (r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx((lo, hi), rel=1e-9)
    assert r["p"] == pytest.approx(float(np.asarray(test.pvalue).ravel()[0]), rel=1e-6)


def test_effects_from_an_experiment_directory_count_finished_trials_only(tmp_path):
    specs = factorial_specs(LAB4_LEVELS, lab4_truth, range(4), rng=np.random.default_rng(4), noise=0.3,
                            keep=lab4_keep, missing={(1, 2)})
    # Unfinished trials of the same cells carry absurd accuracies: they must not count.
    specs.append({**specs[0], "seed": 7, "name": "relu-s7", "final_acc": 0.01, "done": 1, "epochs": 3})
    specs.append({**specs[0], "seed": 8, "name": "relu-s8", "state": "pending"})
    specs.append({**specs[0], "seed": 9, "name": "relu-s9", "final_acc": 0.99, "done": 2, "state": "error"})
    exp = analysis.load_experiment(make_experiment(tmp_path, specs, space_name="lab4"))
    from_disk = effects.effects_table(analysis.trial_table(exp), alpha=ALPHA_STRICT)
    in_memory = effects.effects_table(trial_frame(specs[:-3]), alpha=ALPHA_STRICT)
    cols = ["factor", "level", "effect_pct", "ci_low_pct", "ci_high_pct", "n"]
    pd.testing.assert_frame_equal(from_disk[cols], in_memory[cols], rtol=1e-6)
    assert holds(row(from_disk, "batchnorm", "true"), 2.5)
