"""Adaptive replication: the sequential rule keeps its error rate under optional stopping (by
simulation, against the naive fixed-95% rule that does not), stops early on real effects, and
seeds_needed agrees with statsmodels' power solvers."""

import math

import numpy as np
import pytest
from scipy import stats

from ninsweep.analysis import sequential as sq
from ninsweep.analysis.stats import ALPHA

try:
    from .analysis_fixtures import factorial_specs, trial_frame
except ImportError:
    from analysis_fixtures import factorial_specs, trial_frame

STUDIES = 4000
MIN_SEEDS, MAX_SEEDS = 3, 10


def naive_looks(looks):
    return [sq.Look(look.index, look.seeds, ALPHA) for look in looks]


def test_the_looks_spend_exactly_alpha_obrien_fleming_style():
    looks = sq.plan_looks(MIN_SEEDS, MAX_SEEDS, 0.05)
    assert [look.seeds for look in looks] == list(range(MIN_SEEDS, MAX_SEEDS + 1))
    assert sum(look.alpha for look in looks) == pytest.approx(0.05, abs=1e-12)
    first = 2 - 2 * stats.norm.cdf(stats.norm.ppf(0.975) / math.sqrt(MIN_SEEDS / MAX_SEEDS))
    assert looks[0].alpha == pytest.approx(first, rel=1e-9)
    assert all(a.alpha < b.alpha for a, b in zip(looks, looks[1:]))  # O'Brien-Fleming: late looks spend most
    for bad in ((1, 5), (4, 3)):
        with pytest.raises(sq.NinsweepError):
            sq.plan_looks(*bad)


def test_decide_is_a_paired_t_interval_at_the_looks_alpha():
    d = np.array([0.8, 1.3, 0.2, 1.1, 0.9])
    look = sq.Look(2, 5, 0.01)
    decision = sq.decide(d, look)
    lo, hi = stats.ttest_1samp(d, 0.0).confidence_interval(0.99)
    assert (decision.lo, decision.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert decision.state == sq.EFFECT and decision.look_index == 2 and decision.seeds == 5
    assert sq.decide(d - d.mean(), look, target_half_width=10.0).state == sq.NEGLIGIBLE
    assert sq.decide(d - d.mean(), look, target_half_width=0.01).state == sq.UNDECIDED


def test_the_vectorized_first_decisions_agree_with_decide_sequentially():
    rng = np.random.default_rng(1)
    looks = sq.plan_looks(MIN_SEEDS, MAX_SEEDS)
    D = rng.normal(1.5, 1.0, (40, MAX_SEEDS))
    states, used = sq.first_decisions(D, looks, target_half_width=1.0)
    for row, state, n in zip(D, states, used):
        decision = sq.decide_sequentially(row, looks, target_half_width=1.0)
        assert (decision.state, decision.seeds) == (state, n)


def test_no_true_effect_decided_effect_at_most_alpha_across_all_looks_and_the_naive_rule_is_not():
    rng = np.random.default_rng(2024)
    looks = sq.plan_looks(MIN_SEEDS, MAX_SEEDS, ALPHA)
    D = rng.normal(0.0, 1.0, (STUDIES, MAX_SEEDS))  # per-seed differences, true effect 0
    bound = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES)
    states, _ = sq.first_decisions(D, looks)
    rate = float(np.mean(states == sq.EFFECT))
    assert rate <= bound, f"sequential rule: false 'effect' rate {rate:.4f} over {STUDIES} studies"
    # Stopping for "negligible" too can only stop some studies before a false "effect".
    with_target, _ = sq.first_decisions(D, looks, target_half_width=0.5)
    assert float(np.mean(with_target == sq.EFFECT)) <= rate
    naive, _ = sq.first_decisions(D, naive_looks(looks))
    naive_rate = float(np.mean(naive == sq.EFFECT))
    assert naive_rate > bound, f"the naive fixed-95% rule should inflate it: {naive_rate:.4f}"


def test_a_false_negligible_is_bounded_by_alpha_too():
    # True effect 1.5 x the target half width: "negligible" (interval within +-target) is wrong.
    rng = np.random.default_rng(7)
    target = 0.6
    D = rng.normal(1.5 * target, 1.0, (STUDIES, 20))
    states, _ = sq.first_decisions(D, sq.plan_looks(4, 20), target_half_width=target)
    rate = float(np.mean(states == sq.NEGLIGIBLE))
    assert rate <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES), f"false 'negligible' rate {rate:.4f}"


def test_a_true_effect_of_three_noise_sds_stops_before_max_seeds():
    rng = np.random.default_rng(11)
    looks = sq.plan_looks(MIN_SEEDS, MAX_SEEDS)
    D = rng.normal(3.0, 1.0, (STUDIES, MAX_SEEDS))
    states, used = sq.first_decisions(D, looks)
    early = float(np.mean(used < MAX_SEEDS))
    assert early >= 0.99, f"stopped before {MAX_SEEDS} seeds in {early:.4f} of the studies"
    assert np.mean(states == sq.EFFECT) >= 0.99
    assert used.mean() < 6.0, f"mean seeds used {used.mean():.2f}"


LEVELS = {"batchnorm": [False, True], "init": ["keras", "he"]}


def test_undecided_configurations_are_those_of_undecided_comparisons():
    # BN +3 points (decided after a few seeds); init no effect (undecided, no target).
    def truth(c):
        return 80.0 + 3.0 * c["batchnorm"]

    rule = sq.SequentialRule(MIN_SEEDS, MAX_SEEDS)
    trials = trial_frame(factorial_specs(LEVELS, truth, range(6), rng=np.random.default_rng(3),
                                         noise=0.3, seed_sd=1.0))
    table = sq.comparison_decisions(trials, rule)
    bn = table[table["factor"] == "batchnorm"].iloc[0]
    init = table[table["factor"] == "init"].iloc[0]
    assert bn["state"] == sq.EFFECT and bn["seeds"] < 6
    assert init["state"] == sq.UNDECIDED and init["seeds"] == 6
    # Every cell takes part in the init comparison: all four need another seed ...
    assert sq.undecided_configurations(trials, rule) == set(init["configs"])
    assert len(init["configs"]) == 4
    # ... and none once they hold max_seeds.
    full = trial_frame(factorial_specs(LEVELS, truth, range(MAX_SEEDS), rng=np.random.default_rng(3),
                                       noise=0.3, seed_sd=1.0))
    assert sq.undecided_configurations(full, rule) == set()
    # A wide target lets init be called negligible: nothing more to run.
    wide = sq.SequentialRule(MIN_SEEDS, MAX_SEEDS, target_half_width=5.0)
    assert sq.undecided_configurations(trials, wide) == set()


def test_comparisons_use_only_seeds_shared_by_every_cell_and_wait_for_min_seeds():
    specs = factorial_specs(LEVELS, lambda c: 80.0, range(4), rng=np.random.default_rng(5), missing={(3, 1)})
    table = sq.comparison_decisions(trial_frame(specs), sq.SequentialRule(3, 10))
    assert set(table["seeds"]) == {3}  # seed 1 did not finish in one cell
    few = factorial_specs(LEVELS, lambda c: 80.0, range(2), rng=np.random.default_rng(5))
    table = sq.comparison_decisions(trial_frame(few), sq.SequentialRule(3, 10))
    assert set(table["state"]) == {sq.UNDECIDED} and table["look"].isna().all()


@pytest.mark.parametrize("effect,sd,power,alpha", [(0.3, 0.4, 0.8, 0.05), (1.0, 1.0, 0.9, 0.05),
                                                   (0.5, 0.25, 0.8, 0.01), (0.2, 1.0, 0.8, 0.05)])
def test_seeds_needed_matches_statsmodels(effect, sd, power, alpha):
    power_mod = pytest.importorskip("statsmodels.stats.power")
    unpaired = sq.seeds_needed(effect, sd, power, alpha, paired=False)
    paired = sq.seeds_needed(effect, sd, power, alpha, paired=True)
    ind, one = power_mod.TTestIndPower(), power_mod.TTestPower()
    d = effect / sd
    assert ind.power(d, unpaired, alpha, ratio=1.0) >= power > ind.power(d, unpaired - 1, alpha, ratio=1.0)
    assert one.power(d, paired, alpha) >= power > one.power(d, paired - 1, alpha)
    assert unpaired == math.ceil(ind.solve_power(d, nobs1=None, alpha=alpha, power=power, ratio=1.0))
    assert paired == math.ceil(one.solve_power(d, nobs=None, alpha=alpha, power=power))
    nct = stats.nct(2 * unpaired - 2, d / math.sqrt(2 / unpaired))
    crit = stats.t.ppf(1 - alpha / 2, 2 * unpaired - 2)
    assert sq.power_of_t_test(unpaired, effect, sd, alpha) == pytest.approx(nct.sf(crit) + nct.cdf(-crit))


def test_seeds_needed_rejects_what_cannot_be_planned():
    for args in ((0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)):
        with pytest.raises(sq.NinsweepError, match="must be a positive number"):
            sq.seeds_needed(*args)
    with pytest.raises(sq.NinsweepError, match="power 1.5"):
        sq.seeds_needed(1.0, 1.0, power=1.5)


def test_seed_sd_is_the_pooled_within_configuration_sd():
    specs = factorial_specs(LEVELS, lambda c: 80.0 + c["batchnorm"], range(4), rng=np.random.default_rng(6),
                            noise=0.5, seed_sd=0.7, missing={(0, 3)})
    trials = trial_frame(specs)
    measured = sq.seed_sd_of(trials)
    by_config = trials.groupby("config")["final_test_acc_pct"]
    ss = sum(((v - v.mean()) ** 2).sum() for _, v in by_config)
    assert measured.df == 15 - 4 and measured.configs == 4
    assert measured.sd == pytest.approx(math.sqrt(ss / 11))
    paired = sq.difference_sd_of(trials)
    assert paired.df == 15 - 4 - 4 + 1 and paired.sd < math.sqrt(2) * measured.sd  # the seed offsets removed


def test_one_seed_everywhere_has_no_seed_sd():
    trials = trial_frame(factorial_specs(LEVELS, lambda c: 80.0, [0], rng=np.random.default_rng(1)))
    with pytest.raises(ValueError, match="no configuration has 2 finished seeds"):
        sq.seed_sd_of(trials)
    with pytest.raises(sq.NotEnoughSeeds):
        sq.difference_sd_of(trials)
