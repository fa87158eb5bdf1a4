"""Main effects of unreplicated factorials (one seed per cell): intervals from the pooled
interactions, checked against statsmodels' OLS of the additive model and by simulation, and
Lenth's pseudo standard error."""

import itertools

import numpy as np
import pandas as pd
import pytest

from ninsweep.analysis import effects
from ninsweep.analysis.stats import additive_ols, lenth_df, lenth_pse, t_quantile

try:
    from .analysis_fixtures import factorial_specs, trial_frame
except ImportError:
    from analysis_fixtures import factorial_specs, trial_frame

TWO_CUBED = {"activation": ["relu", "elu"], "batchnorm": [False, True], "init": ["keras", "he"]}
TRUE_MAIN = {("activation", "elu"): 1.0, ("batchnorm", "true"): 2.0, ("init", "he"): -0.5}


def additive_truth(cell):
    return (80.0 + TRUE_MAIN[("activation", "elu")] * (cell["activation"] == "elu")
            + TRUE_MAIN[("batchnorm", "true")] * cell["batchnorm"] + TRUE_MAIN[("init", "he")] * (cell["init"] == "he"))


def row(df, factor, level):
    hit = df[(df["factor"] == factor) & (df["level"] == level)]
    assert len(hit) == 1
    return hit.iloc[0]


def unreplicated(levels, truth, seed):
    return trial_frame(factorial_specs(levels, truth, [0], rng=np.random.default_rng(seed), noise=0.4))


@pytest.mark.parametrize("levels", [TWO_CUBED, {**TWO_CUBED, "activation": ["relu", "elu", "leaky_relu"]}],
                         ids=["2^3", "3x2x2"])
def test_pooled_intervals_equal_statsmodels_ols_of_the_additive_model(levels):
    smf = pytest.importorskip("statsmodels.formula.api")
    trials = unreplicated(levels, lambda c: additive_truth({**c, "activation": c["activation"]}), seed=1)
    main = effects.main_effects(trials)
    data, lv = effects.design(trials)
    fit = smf.ols("y ~ C(activation, Treatment('relu')) + C(batchnorm, Treatment('false'))"
                  " + C(init, Treatment('keras'))", data=data).fit()
    ci = fit.conf_int(0.05)
    df = len(data) - 1 - sum(len(v) - 1 for v in lv.values())
    assert fit.df_resid == df
    t = float(t_quantile(0.975, df))
    for factor, values in lv.items():
        ref = values[0]
        for level in values[1:]:
            r = row(main, factor, level)
            name = f"C({factor}, Treatment('{ref}'))[T.{level}]"
            assert r["interval_method"] == f"pooled interactions (df={df})" and r["df"] == df
            assert r["note"] == ""
            assert r["effect_pct"] == pytest.approx(fit.params[name], abs=1e-9)
            assert (r["ci_high_pct"] - r["effect_pct"]) / t == pytest.approx(fit.bse[name], abs=1e-9)
            assert (r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx(tuple(ci.loc[name]), abs=1e-9)
            assert r["p"] == pytest.approx(fit.pvalues[name], rel=1e-6)


def test_pooled_main_effect_is_the_equal_weight_average_effect_and_interactions_stay_without_interval():
    trials = unreplicated(TWO_CUBED, additive_truth, seed=2)
    data, _ = effects.design(trials)
    main = effects.main_effects(trials)
    means = data.groupby("batchnorm")["y"].mean()
    assert row(main, "batchnorm", "true")["effect_pct"] == pytest.approx(means["true"] - means["false"])
    inter = effects.interactions(trials)
    assert (inter["note"] == effects.NOTE_ONE_SEED).all() and (inter["interval_method"] == "").all()


def test_a_two_by_two_pools_its_one_interaction_and_a_single_factor_has_nothing_to_pool():
    levels = {"batchnorm": [False, True], "init": ["keras", "he"]}
    main = effects.main_effects(unreplicated(levels, lambda c: 80 + 2.0 * c["batchnorm"], seed=3))
    assert set(main["interval_method"]) == {"pooled interactions (df=1)"}
    assert main["ci_low_pct"].notna().all()
    single = effects.main_effects(unreplicated({"batchnorm": [False, True]}, lambda c: 80.0, seed=3))
    assert single.iloc[0]["note"] == effects.NOTE_ONE_SEED and np.isnan(single.iloc[0]["ci_low_pct"])
    assert single.iloc[0]["interval_method"] == ""


def test_replicated_designs_keep_their_seed_intervals():
    trials = trial_frame(factorial_specs(TWO_CUBED, additive_truth, range(3), rng=np.random.default_rng(4)))
    table = effects.effects_table(trials)
    assert set(table["interval_method"]) == {effects.INTERVAL_SEEDS}
    assert list(table.columns) == effects.EFFECT_COLUMNS and effects.EFFECT_COLUMNS[-1] == "interval_method"


def simulate_two_cubed(studies, rng, interaction=0.0, noise=1.0):
    """``studies`` unreplicated 2^3 designs at once: (the design frame, y of 8 x studies)."""
    trials = unreplicated(TWO_CUBED, additive_truth, seed=0)
    data, levels = effects.design(trials)
    truth = np.array([additive_truth({"activation": a, "batchnorm": b == "true", "init": i})
                      for a, b, i in zip(data["activation"], data["batchnorm"], data["init"])])
    truth = truth + interaction * ((data["batchnorm"] == "true") & (data["init"] == "he")).to_numpy()
    return data, levels, truth[:, None] + rng.normal(0.0, noise, (len(data), studies))


def coverage_of_pooled_intervals(data, levels, Y, true_effects):
    X, columns = effects.additive_model(data, levels)
    coef, se, df = additive_ols(X, Y)
    t = float(t_quantile(0.975, df))
    return {key: float(np.mean(np.abs(coef[1 + columns.index(key)] - true) <= t * se[1 + columns.index(key)]))
            for key, true in true_effects.items()}


def test_pooled_intervals_cover_the_true_effect_at_95_percent_over_2000_designs():
    data, levels, Y = simulate_two_cubed(2000, np.random.default_rng(21))
    # The core the rows use, checked against the rows on the first simulated design.
    first = data.assign(y=Y[:, 0])
    trials = unreplicated(TWO_CUBED, additive_truth, seed=0)
    trials["final_test_acc_pct"] = first.loc[trials.index, "y"].to_numpy()
    X, columns = effects.additive_model(data, levels)
    coef, _, _ = additive_ols(X, Y[:, :1])
    assert row(effects.main_effects(trials), "init", "he")["effect_pct"] == pytest.approx(
        coef[1 + columns.index(("init", "he")), 0])
    covered = coverage_of_pooled_intervals(data, levels, Y, TRUE_MAIN)
    for key, rate in covered.items():
        assert abs(rate - 0.95) <= 0.015, f"{key}: coverage {rate:.4f} over 2000 designs"


def test_a_real_interaction_widens_the_pooled_intervals_it_does_not_break_them():
    # BN x He = 2 noise SDs: the averaged main effects of BN and init shift by half of it.
    data, levels, Y = simulate_two_cubed(2000, np.random.default_rng(22), interaction=2.0)
    truth = {**TRUE_MAIN, ("batchnorm", "true"): 2.0 + 1.0, ("init", "he"): -0.5 + 1.0}
    covered = coverage_of_pooled_intervals(data, levels, Y, truth)
    for key, rate in covered.items():
        assert rate >= 0.95 - 0.015, f"{key}: coverage {rate:.4f}"
    assert covered[("batchnorm", "true")] > 0.965  # the pooled error holds the interaction: wider


def test_lenth_pse_by_hand_and_its_reference_df():
    contrasts = np.array([10.0, -8.0, 1.0, 0.5, -0.3, 0.2, 0.8])
    # s0 = 1.5 * median|c| = 1.2; kept |c| < 3: {1, 0.5, 0.3, 0.2, 0.8}, median 0.5.
    assert lenth_pse(contrasts)[0] == pytest.approx(0.75)
    assert lenth_df(7) == pytest.approx(7 / 3)
    assert np.isnan(lenth_pse(np.array([0.0, 0.0, 0.0, 1.0]))[0])


def test_lenth_rows_and_their_coverage_under_effect_sparsity():
    trials = unreplicated(TWO_CUBED, additive_truth, seed=5)
    main = effects.main_effects(trials, unreplicated=effects.LENTH)
    data, levels = effects.design(trials)
    signs = np.column_stack([np.where(data[f] == v[1], 1.0, -1.0) for f, v in levels.items()])
    contrasts, mains = effects.two_level_contrasts(signs, data["y"].to_numpy())
    pse = lenth_pse(contrasts)[0]
    r = row(main, "init", "he")
    assert r["interval_method"] == "Lenth PSE (df=2.33)"
    assert r["effect_pct"] == pytest.approx(contrasts[mains[2], 0])
    assert r["ci_high_pct"] - r["effect_pct"] == pytest.approx(float(t_quantile(0.975, 7 / 3)) * pse)
    # Coverage with one real effect in seven contrasts: Lenth's t_{m/3} is conservative for m = 7.
    rng = np.random.default_rng(23)
    sparse = 3.0 * signs[:, 1]  # BN: an effect of 6 (mean at + minus mean at -)
    Y = sparse[:, None] + rng.normal(0.0, 1.0, (8, 2000))
    c, _ = effects.two_level_contrasts(signs, Y)
    half = float(t_quantile(0.975, lenth_df(7))) * lenth_pse(c)
    rate = float(np.mean(np.abs(c[mains[1]] - 6.0) <= half))
    assert rate >= 0.95 - 0.015, f"Lenth coverage {rate:.4f}"


def test_lenth_needs_two_level_factors():
    levels = {**TWO_CUBED, "activation": ["relu", "elu", "leaky_relu"]}
    with pytest.raises(effects.NinsweepError, match="activation has 3 levels"):
        effects.main_effects(unreplicated(levels, lambda c: 80.0, seed=6), unreplicated=effects.LENTH)


def test_the_additive_fit_solves_every_column_at_once():
    rng = np.random.default_rng(8)
    X = np.column_stack([np.ones(8), *[np.array(b, float) for b in zip(*itertools.product([0, 1], repeat=3))]])
    Y = rng.normal(size=(8, 5))
    coef, se, df = additive_ols(X, Y)
    for s in range(5):
        one, one_se, _ = additive_ols(X, Y[:, s])
        assert np.allclose(coef[:, s], one[:, 0]) and np.allclose(se[:, s], one_se[:, 0])
    assert df == 4 and pd.notna(se).all()
