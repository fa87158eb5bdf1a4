"""``ninsweep plan``: seeds per configuration from an experiment's measured seed SD (fake
experiments on disk, no Ray)."""

import math

import numpy as np
import pytest
from analysis_fixtures import factorial_specs, make_experiment

from ninsweep import analysis
from ninsweep.analysis import sequential
from ninsweep.cli import main

LEVELS = {"batchnorm": [False, True], "init": ["keras", "he"]}


def experiment(tmp_path, seeds):
    specs = factorial_specs(LEVELS, lambda c: 80.0 + 2.0 * c["batchnorm"], seeds,
                            rng=np.random.default_rng(4), noise=0.4, seed_sd=0.8)
    return make_experiment(tmp_path, specs)


def test_plan_prints_the_seed_sd_its_df_and_the_seeds_needed(tmp_path, capsys):
    path = experiment(tmp_path, range(4))
    assert main(["plan", str(path), "--effect", "0.5", "--power", "0.9"]) == 0
    out = capsys.readouterr().out
    trials = analysis.trial_table(analysis.load_experiment(path))
    spread, paired = sequential.seed_sd_of(trials), sequential.difference_sd_of(trials)
    assert spread.df == 12 and paired.df == 9
    assert f"seed SD of final test_acc: {spread.sd:.3g} points" in out and "df 12" in out
    unpaired_n = sequential.seeds_needed(0.5, spread.sd, 0.9, 0.05, paired=False)
    paired_n = sequential.seeds_needed(0.5, paired.sd, 0.9, 0.05, paired=True)
    assert f"unpaired (two-sample t-test): {unpaired_n} seeds per configuration" in out
    assert f"{paired_n} seeds per configuration" in out and paired_n < unpaired_n  # seed offsets paired out
    assert "noncentral t" in out and "power 0.9" in out


@pytest.mark.parametrize("args,message", [
    (["--effect", "0"], "--effect 0: must be > 0"),
    (["--effect", "-0.3"], "--effect -0.3: must be > 0"),
    (["--effect", "0.3", "--power", "1"], "--power 1: must lie in (0, 1)"),
])
def test_bad_effect_or_power_is_a_one_line_error(tmp_path, capsys, args, message):
    assert main(["plan", str(experiment(tmp_path, range(2))), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err and message in err


def test_one_seed_everywhere_is_a_one_line_error(tmp_path, capsys):
    assert main(["plan", str(experiment(tmp_path, [0])), "--effect", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no configuration has 2 finished seeds" in err


def test_plan_without_shared_seeds_gives_the_unpaired_number_only(tmp_path, capsys):
    specs = [{"batchnorm": bn, "seed": 10 * bn + s, "final_acc": 0.8 + 0.01 * s, "name": f"bn{bn}-s{s}"}
             for bn in (False, True) for s in range(3)]
    assert main(["plan", str(make_experiment(tmp_path, specs)), "--effect", "1"]) == 0
    out = capsys.readouterr().out
    # Within each config the seeds give 80, 81, 82: SD 1 point, df 4.
    assert "seed SD of final test_acc: 1 points" in out and "df 4" in out
    assert "paired difference SD: not measurable" in out and "paired by seed (" not in out
    assert f"{sequential.seeds_needed(1.0, 1.0)} seeds per configuration" in out
    assert math.isfinite(sequential.seed_sd_of(analysis.trial_table(analysis.load_experiment(
        tmp_path / "exp"))).sd)
