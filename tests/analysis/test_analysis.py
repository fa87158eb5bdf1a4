"""ninsweep.analysis on hand-made experiment directories with known numbers.

Experiments made by a real tiny Ray sweep are checked by the sweep tests through
``analysis_fixtures.check_analysable``.
"""

import json
import math
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from ninsweep import analysis
from ninsweep.analysis import results as analysis_results
from ninsweep.analysis import stats as analysis_stats
from ninsweep.analysis import tabulate as analysis_tables
from ninsweep.errors import NinsweepError
from ninsweep.metrics import EPOCH_METRICS

try:
    from .analysis_fixtures import check_analysable, epoch_record, lab4_trials, make_experiment
except ImportError:
    from analysis_fixtures import check_analysable, epoch_record, lab4_trials, make_experiment


# ------------------------------------------------------------------ independent statistics

def welch_by_formula(x, y):
    """Welch's t and Welch-Satterthwaite df, from the textbook formulas."""
    nx, ny = len(x), len(y)
    mx, my = sum(x) / nx, sum(y) / ny
    vx = sum((v - mx) ** 2 for v in x) / (nx - 1)
    vy = sum((v - my) ** 2 for v in y) / (ny - 1)
    se2 = vx / nx + vy / ny
    t = (mx - my) / math.sqrt(se2)
    df = se2 ** 2 / ((vx / nx) ** 2 / (nx - 1) + (vy / ny) ** 2 / (ny - 1))
    return t, df


def two_sided_p(t, df, steps=4000):
    """2 * P(T > |t|) by Simpson's rule on Student's t density (no scipy)."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def pdf(u):
        return c * (1 + u * u / df) ** (-(df + 1) / 2)

    a, b = 0.0, abs(t)
    h = (b - a) / steps
    area = pdf(a) + pdf(b) + sum((4 if i % 2 else 2) * pdf(a + i * h) for i in range(1, steps))
    return 1.0 - 2.0 * area * h / 3.0


def by_config(df):
    return df.set_index("config")


# ------------------------------------------------------------------ load_history

def write_results(tmp_path, records, tail=""):
    d = tmp_path / "t"
    d.mkdir()
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return d


def test_history_keeps_the_last_record_of_a_repeated_epoch(tmp_path):
    recs = [epoch_record(e, 0.1 * e) for e in (1, 2, 3)]
    recs += [epoch_record(2, 0.25), epoch_record(3, 0.35), epoch_record(4, 0.45)]  # restored at 1
    h = analysis.load_history(write_results(tmp_path, recs))
    assert list(h["epoch"]) == [1, 2, 3, 4]
    assert h["test_acc"].tolist() == pytest.approx([0.1, 0.25, 0.35, 0.45])
    assert "config" not in h.columns  # Ray's nested config is dropped
    assert "training_iteration" in h.columns


def test_history_drops_epochs_of_the_abandoned_run(tmp_path):
    recs = [epoch_record(e, 0.1 * e) for e in (1, 2, 3, 4, 5)] + [epoch_record(3, 0.33)]
    h = analysis.load_history(write_results(tmp_path, recs))
    assert list(h["epoch"]) == [1, 2, 3]
    assert h["test_acc"].iloc[-1] == pytest.approx(0.33)


def test_history_ignores_a_truncated_last_line(tmp_path):
    recs = [epoch_record(e, 0.1 * e) for e in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = analysis.load_history(write_results(tmp_path, recs, tail='{"epoch": 3, "train_lo'))
    assert list(h["epoch"]) == [1, 2]


def test_history_skips_a_bad_middle_line_with_a_warning(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    lines = [json.dumps(epoch_record(1, 0.1)), "garbage{", json.dumps(epoch_record(2, 0.2))]
    (d / "result.json").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="result.json:2"):
        h = analysis.load_history(d)
    assert list(h["epoch"]) == [1, 2]


def test_history_of_a_trial_without_results_is_empty(tmp_path):
    h = analysis.load_history(tmp_path)
    assert len(h) == 0 and "test_acc" in h.columns


# ------------------------------------------------------------------ statuses, interruption

def interrupted(tmp_path, **kw):
    return make_experiment(tmp_path, [
        {"seed": 0, "final_acc": 0.60},
        {"seed": 1, "final_acc": 0.70},
        {"seed": 2, "done": 2, "final_acc": 0.40},  # interrupted / still running
        {"seed": 3, "done": 1, "state": "error"},
        {"seed": 4, "state": "pending"},
        {"seed": 5, "state": "error", "final_acc": 0.65},  # error.txt but finished after a retry
    ], **kw)


def test_interrupted_experiment_marks_unfinished_trials(tmp_path):
    exp = analysis.load_experiment(interrupted(tmp_path))
    status = {t.name: t.status for t in exp.trials}
    assert status == {"relu-s0": "finished", "relu-s1": "finished", "relu-s2": "incomplete",
                      "relu-s3": "error", "relu-s4": "pending", "relu-s5": "finished"}
    trials = analysis.trial_table(exp).set_index("trial")
    assert len(trials) == 6
    assert trials.loc["relu-s2", "epochs_done"] == 2 and trials.loc["relu-s2", "epochs_planned"] == 3
    assert trials.loc["relu-s2", "final_test_acc_pct"] == pytest.approx(40.0)
    assert trials.loc["relu-s4", "epochs_done"] == 0 and np.isnan(trials.loc["relu-s4", "final_test_acc_pct"])
    assert "CUDA out of memory" in trials.loc["relu-s3", "error"]
    assert trials.loc["relu-s5", "error"] == ""

    c = analysis.config_table(exp).iloc[0]
    assert (c["n_trials"], c["n"], c["n_incomplete"], c["n_error"], c["n_pending"]) == (6, 3, 1, 1, 1)
    assert c["mean_test_acc_pct"] == pytest.approx(65.0)  # finished only: 60, 70, 65

    text = analysis.summary_table(exp)
    assert "3 finished, 1 incomplete, 1 error, 1 pending" in text
    assert "1 incomplete, 1 error, 1 pending" in text.splitlines()[3]


def test_trial_table_columns_and_units(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [
        {"activation": "elu", "batchnorm": True, "init": "he", "seed": 7, "final_acc": 0.9123,
         "final_train_loss": 0.25, "final_test_loss": 0.4, "epoch_time_s": 12.5, "images_per_s": 800.0}]))
    row = analysis.trial_table(exp).iloc[0]
    assert row["trial"] == "elu-bn-he-s7" and row["config"] == "ELU+BN+WI"
    assert (row["activation"], bool(row["batchnorm"]), row["init"], row["seed"]) == ("elu", True, "he", 7)
    assert row["status"] == "finished" and row["epochs_done"] == 3
    assert row["final_test_acc_pct"] == pytest.approx(91.23)
    assert row["best_test_acc_pct"] == pytest.approx(91.23) and row["best_epoch"] == 3
    assert row["final_train_loss"] == pytest.approx(0.25) and row["final_test_loss"] == pytest.approx(0.4)
    assert row["wall_time_s"] == pytest.approx(3 * 12.5)
    assert row["images_per_s"] == pytest.approx(800.0)
    for col in ("final_test_acc_pct", "best_test_acc_pct", "final_train_loss", "final_test_loss",
                "wall_time_s", "images_per_s", "epochs_done", "status", "seed"):
        assert col in analysis.trial_table(exp).columns


def test_best_accuracy_is_not_always_the_last(tmp_path):
    recs = [epoch_record(1, 0.5), epoch_record(2, 0.8), epoch_record(3, 0.7)]
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"records": recs}]))
    row = analysis.trial_table(exp).iloc[0]
    assert row["final_test_acc_pct"] == pytest.approx(70.0)
    assert row["best_test_acc_pct"] == pytest.approx(80.0) and row["best_epoch"] == 2


def test_trial_dirs_are_matched_by_params_json_not_by_name(tmp_path):
    exp_dir = make_experiment(tmp_path, [{"seed": 0, "suffix": "_2024-01-01_12-00-00_abc12"},
                                         {"seed": 1, "name": "custom"}])
    exp = analysis.load_experiment(exp_dir)
    t = {t.name: t for t in exp.trials}
    assert t["relu-s0"].status == "finished"
    assert t["relu-s0"].trial_dir.name == "relu-s0_2024-01-01_12-00-00_abc12"
    assert t["custom"].status == "finished"


def test_experiment_without_manifest(tmp_path):
    exp_dir = make_experiment(tmp_path, [{"seed": 0, "final_acc": 0.5}, {"seed": 1, "final_acc": 0.7}],
                              manifest=False)
    (exp_dir / "tuner.pkl").write_bytes(b"ray state")  # Ray's own files are ignored
    exp = analysis.load_experiment(exp_dir)
    assert exp.space_name is None and exp.manifest is None
    assert [t.status for t in exp.trials] == ["finished", "finished"]
    assert analysis.config_table(exp).iloc[0]["mean_test_acc_pct"] == pytest.approx(60.0)


def test_trial_directories_missing_from_the_manifest_are_kept(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0}, {"seed": 1, "in_manifest": False}]))
    assert [t.name for t in exp.trials] == ["relu-s0", "relu-s1"]


def test_manifest_path_is_accepted(tmp_path):
    exp_dir = make_experiment(tmp_path, [{"seed": 0}])
    assert analysis.load_experiment(exp_dir / "ninsweep.json").path == exp_dir.resolve()


# ------------------------------------------------------------------ errors

def test_empty_experiment_is_a_clear_error(tmp_path):
    exp_dir = make_experiment(tmp_path, [])
    with pytest.raises(NinsweepError, match="has no trials") as err:
        analysis.load_experiment(exp_dir)
    assert "\n" not in str(err.value) and str(exp_dir) in str(err.value)


def test_not_an_experiment(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(NinsweepError, match="not a ninsweep experiment"):
        analysis.load_experiment(tmp_path)


def test_storage_dir_hint_names_the_experiments_inside(tmp_path):
    make_experiment(tmp_path, [{"seed": 0}], name="lab4-a")
    with pytest.raises(NinsweepError, match="lab4-a"):
        analysis.load_experiment(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(NinsweepError, match="no such experiment directory"):
        analysis.load_experiment(tmp_path / "nope")


def _serve_as_bucket(monkeypatch, local_root):
    """Make s3://bucket/... read from ``local_root`` through pyarrow's local filesystem, so
    the remote code path runs without any network."""
    import pyarrow.fs

    from ninsweep import storage

    def filesystem(location):
        assert location.startswith("s3://bucket")
        return pyarrow.fs.LocalFileSystem(), str(local_root) + location[len("s3://bucket"):]

    monkeypatch.setattr(storage, "filesystem", filesystem)


def test_experiment_on_remote_storage_is_fetched_without_checkpoints(tmp_path, monkeypatch):
    remote = make_experiment(tmp_path / "bucket", [{"activation": "elu"}, {"activation": "relu"}],
                             name="lab4", space_name="lab4")
    (remote / "elu-s0" / "checkpoint_000001").mkdir()
    (remote / "elu-s0" / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x" * 1000)
    _serve_as_bucket(monkeypatch, tmp_path / "bucket")
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))

    exp = analysis.load_experiment("s3://bucket/lab4")
    assert [t.status for t in exp.trials] == ["finished", "finished"]
    assert exp.path.is_relative_to(tmp_path / "cache" / "experiments")
    assert not list(exp.path.rglob("checkpoint_*"))
    trials_csv, _, _ = analysis.write_csvs(exp)
    assert trials_csv.parent == exp.path and not (remote / "results.csv").exists()


def test_unreadable_remote_storage_is_a_one_line_error(monkeypatch):
    from ninsweep import storage

    def unreachable(location):
        raise NinsweepError(f"{location}: cannot open (no credentials)")

    monkeypatch.setattr(storage, "filesystem", unreachable)
    with pytest.raises(NinsweepError, match="s3://bucket/lab4: cannot open"):
        analysis.load_experiment("s3://bucket/lab4")


def test_bad_manifest(tmp_path):
    (tmp_path / "ninsweep.json").write_text("{not json")
    with pytest.raises(NinsweepError, match="not valid JSON"):
        analysis.load_experiment(tmp_path)
    (tmp_path / "ninsweep.json").write_text(json.dumps({"format": 99, "trials": []}))
    with pytest.raises(NinsweepError, match="unsupported manifest format 99"):
        analysis.load_experiment(tmp_path)


# ------------------------------------------------------------------ statistics

KNOWN = {  # final test accuracy (%) per seed
    "ELU+BN+WI": [90.0, 91.0, 92.0],  # mean 91, std 1
    "ReLU": [87.0, 88.0, 89.0],       # mean 88, std 1: Welch df = 4 exactly
    "ELU": [89.5, 90.0, 91.5, 90.2],  # unequal n and spread
    "ReLU+BN": [85.0],                # one seed
}


@pytest.fixture
def known(tmp_path):
    return analysis.load_experiment(make_experiment(tmp_path, lab4_trials(KNOWN), space_name="smoke"))


def test_config_statistics_known_values(known):
    c = by_config(analysis.config_table(known))
    assert list(c.index) == ["ELU+BN+WI", "ELU", "ReLU", "ReLU+BN"]  # sorted by mean
    a = c.loc["ELU+BN+WI"]
    assert (a["n"], a["mean_test_acc_pct"], a["std_test_acc_pct"]) == (3, pytest.approx(91.0), pytest.approx(1.0))
    half = 4.302652729749462 / math.sqrt(3)  # t(0.975, 2) from tables, std 1
    assert a["ci95_low_pct"] == pytest.approx(91.0 - half) and a["ci95_high_pct"] == pytest.approx(91.0 + half)
    assert (a["min_test_acc_pct"], a["max_test_acc_pct"]) == (pytest.approx(90.0), pytest.approx(92.0))
    e = c.loc["ELU"]
    assert e["std_test_acc_pct"] == pytest.approx(np.std(KNOWN["ELU"], ddof=1))
    one = c.loc["ReLU+BN"]
    assert one["n"] == 1 and one["mean_test_acc_pct"] == pytest.approx(85.0)
    assert np.isnan(one["std_test_acc_pct"]) and np.isnan(one["ci95_low_pct"])
    assert a["mean_final_train_loss"] == pytest.approx(0.5) and a["mean_wall_time_s"] == pytest.approx(30.0)
    assert "report_acc_pct" not in c.columns  # not a lab4 space


def test_welch_p_value_matches_the_closed_form(known):
    s = by_config(analysis.significance(known))
    r = s.loc["ReLU"]
    t, df = welch_by_formula(KNOWN["ReLU"], KNOWN["ELU+BN+WI"])
    assert df == pytest.approx(4.0) and r["df"] == pytest.approx(4.0)
    assert r["t_stat"] == pytest.approx(t)
    # Student's t CDF for 4 degrees of freedom in closed form.
    u = t * t / (1 + t * t / 4)
    cdf = 0.5 + 3 / 8 * (abs(t) / math.sqrt(1 + t * t / 4)) * (1 - u / 12)
    assert r["p_value"] == pytest.approx(2 * (1 - cdf), rel=1e-9)
    assert r["diff_vs_best_pct"] == pytest.approx(-3.0)


def test_welch_and_t_quantiles_agree_with_scipy_stats():
    from scipy import stats

    rng = np.random.default_rng(0)
    for nx, ny in ((2, 2), (3, 5), (7, 4)):
        x, y = rng.normal(80, 1, nx), rng.normal(81, 3, ny)
        ref = stats.ttest_ind(x, y, equal_var=False)
        assert analysis.welch(x, y) == pytest.approx((ref.statistic, ref.df, ref.pvalue), rel=1e-9)
    for df in (1, 2, 4.5, 30):
        assert analysis_stats.t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-12)


def test_welch_with_unequal_variances_and_holm(known):
    s = by_config(analysis.significance(known))
    e = s.loc["ELU"]
    t, df = welch_by_formula(KNOWN["ELU"], KNOWN["ELU+BN+WI"])
    assert e["t_stat"] == pytest.approx(t) and e["df"] == pytest.approx(df)
    assert e["p_value"] == pytest.approx(two_sided_p(t, df), abs=1e-7)
    # Holm over the two tested comparisons (ELU, ReLU): smaller p times 2, larger times 1,
    # made monotone.
    p_relu, p_elu = s.loc["ReLU", "p_value"], e["p_value"]
    lo, hi = sorted([p_relu, p_elu])
    adj = {lo: min(1, 2 * lo), hi: min(1, max(2 * lo, hi))}
    assert s.loc["ReLU", "p_holm"] == pytest.approx(adj[p_relu])
    assert e["p_holm"] == pytest.approx(adj[p_elu])
    assert s.loc["ELU+BN+WI", "verdict"] == "best"
    assert s.loc["ReLU", "verdict"] == ("significantly lower" if adj[p_relu] < 0.05 else "not significantly different")
    assert s.loc["ReLU+BN", "verdict"] == "needs >= 2 seeds" and np.isnan(s.loc["ReLU+BN", "p_value"])


def test_holm_adjustment():
    assert analysis.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    out = analysis.holm([0.5, np.nan, 0.001])
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.002)
    assert analysis.holm([0.9, 0.8]).tolist() == pytest.approx([1.0, 1.0])  # 2 * 0.8 capped at 1
    assert analysis.holm([0.2, 0.3]).tolist() == pytest.approx([0.4, 0.4])  # monotone


def test_clear_difference_is_significant(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, lab4_trials({
        "ELU+BN+WI": [91.0, 91.1, 90.9, 91.05], "ReLU": [85.0, 85.2, 84.9, 85.1],
        "ELU": [90.9, 91.2, 90.8, 91.0]})))
    s = by_config(analysis.significance(exp))
    assert bool(s.loc["ReLU", "significant"]) and s.loc["ReLU", "verdict"] == "significantly lower"
    assert not bool(s.loc["ELU", "significant"]) and s.loc["ELU", "verdict"] == "not significantly different"


def test_best_with_one_seed_makes_everything_untestable(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, lab4_trials({"ELU": [95.0], "ReLU": [80.0, 81.0]})))
    s = by_config(analysis.significance(exp))
    assert s.loc["ELU", "verdict"] == "best" and s.loc["ReLU", "verdict"] == "needs >= 2 seeds"


def test_zero_variance_is_untestable(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, lab4_trials({"ELU": [90.0, 90.0], "ReLU": [80.0, 80.0]})))
    assert by_config(analysis.significance(exp)).loc["ReLU", "verdict"] == "untestable: zero variance"


def test_run_ends_with_the_main_effects_and_the_report_command(tmp_path, capsys):
    """What `ninsweep run` prints at its end (cli.results.finish_sweep): the results table,
    then the main effects with their paired intervals, then the command of the report."""
    import shlex

    from ninsweep.cli.results import finish_sweep
    from ninsweep.sweep.runner import SweepOutcome

    # BN +40 points in both init contexts at both seeds (+-2 by seed), init +1.
    accs = {"ReLU": [20, 22], "ReLU+WI": [21, 22], "ReLU+BN": [60, 63], "ReLU+BN+WI": [61, 61]}
    exp_dir = make_experiment(tmp_path / "my runs", lab4_trials(accs))
    text = analysis.summary_table(analysis.load_experiment(exp_dir))
    assert text.index("vs best") < text.index("level vs reference")
    row, = [line for line in text.splitlines() if line.startswith("batchnorm ")]
    effect, low, high = (float(x) for x in re.search(
        r"true vs false +([+-][\d.]+) +\[([\d.-]+), ([\d.-]+)\]", row).groups())
    assert effect == pytest.approx(40.0) and 0 < low < effect < high  # (40.5 + 39.5) / 2
    assert "paired by seed" in text

    outcome = SweepOutcome(str(exp_dir), total=8, finished=8, errored=0, wall_time_s=1.0)
    assert finish_sweep(outcome, out=sys.stdout) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == f"report: ninsweep report {shlex.quote(str(exp_dir))}"  # a space in the path
    assert shlex.split(last)[1:] == ["ninsweep", "report", str(exp_dir)]


def test_main_effects_text_is_empty_without_a_factor(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0}, {"seed": 1}]))
    assert analysis.text.main_effects_text(analysis.trial_table(exp)) == ""
    assert "level vs reference" not in analysis.summary_table(exp)


def test_configs_with_no_finished_trial(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0, "done": 1}, {"seed": 1, "state": "pending"}]))
    c = analysis.config_table(exp).iloc[0]
    assert c["n"] == 0 and np.isnan(c["mean_test_acc_pct"])
    assert analysis.significance(exp).iloc[0]["verdict"] == "no finished trials"
    assert "ReLU" in analysis.summary_table(exp)


# ------------------------------------------------------------------ labels, lab4

@pytest.mark.parametrize("params,label", [
    (("elu", True, "he"), "ELU+BN+WI"), (("relu", True, "keras"), "ReLU+BN"),
    (("relu", False, "keras"), "ReLU"), (("relu", False, "he"), "ReLU+WI"),
    (("leaky_relu", True, "he"), "LeakyReLU+BN+WI"), (("maxout", True, "he"), "Maxout+BN+WI"),
    (("elu", False, "torch"), "ELU+torchinit"),
])
def test_config_labels(params, label):
    assert analysis.config_label(*params) == label
    if params[2] != "torch":
        assert label in analysis.REFERENCE_ACC_PCT


@pytest.mark.parametrize("params,extra,label", [
    (("gelu", False, "orthogonal"), {}, "GELU+orthogonal"),
    (("silu", True, "kaiming_fan_out"), {}, "SiLU+BN+kaiming_fan_out"),
    (("relu", False, "keras"), {"model.norm": "group"}, "ReLU+GN"),
    (("relu", True, "he"), {"model.norm": "batch", "train.lr": 0.01}, "ReLU+BN+WI train.lr=0.01"),
    (("relu", False, "keras"), {"model.norm": "none"}, "ReLU"),
])
def test_config_labels_of_the_open_axes_come_from_the_registries(params, extra, label):
    assert analysis.config_label(*params, extra) == label


def test_extra_grid_params_make_separate_configs(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [
        {"seed": 0, "extra": {"train.lr": 0.1}}, {"seed": 1, "extra": {"train.lr": 0.1}},
        {"seed": 0, "name": "lr05-s0", "extra": {"train.lr": 0.05}}]))
    c = by_config(analysis.config_table(exp))
    assert set(c.index) == {"ReLU train.lr=0.1", "ReLU train.lr=0.05"}
    assert c.loc["ReLU train.lr=0.1", "n"] == 2
    assert "train.lr" in analysis.trial_table(exp).columns


def test_lab4_report_comparison(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, lab4_trials({
        "ELU+BN+WI": [91.0, 92.0], "ReLU": [90.0, 90.2], "Maxout+BN+WI": [88.0, 88.4]}), space_name="lab4"))
    assert exp.is_lab4
    c = by_config(analysis.config_table(exp))
    assert c.loc["ELU+BN+WI", "report_acc_pct"] == pytest.approx(91.67)
    assert c.loc["ELU+BN+WI", "diff_vs_report_pct"] == pytest.approx(91.5 - 91.67)
    assert c.loc["ReLU", "diff_vs_report_pct"] == pytest.approx(90.1 - 90.50)
    assert np.isnan(c.loc["Maxout+BN+WI", "report_acc_pct"])
    text = analysis.format_table(analysis.config_table(exp), analysis.significance(exp))
    line = next(ln for ln in text.splitlines() if ln.split()[1:2] == ["ELU+BN+WI"])
    assert "91.50 ± 0.71" in line and "91.67" in line and "-0.17" in line and "best" in line
    maxout = next(ln for ln in text.splitlines() if "Maxout" in ln)
    assert "none" in maxout


def test_reference_space_names():
    assert analysis.is_reference_space("lab4") and analysis.is_reference_space("lab4-seeds")
    assert not analysis.is_reference_space("smoke") and not analysis.is_reference_space(None)
    assert not analysis.is_reference_space("lab42")


# ------------------------------------------------------------------ CSV

def test_write_csvs_default_and_named(tmp_path):
    exp = analysis.load_experiment(interrupted(tmp_path, space_name="lab4"))
    t_path, c_path, e_path = analysis.write_csvs(exp)
    assert (t_path.name, c_path.name, e_path.name) == ("results.csv", "results-configs.csv",
                                                       "results-effects.csv")
    assert t_path.parent == exp.path
    trials = pd.read_csv(t_path)
    assert len(trials) == 6 and set(trials["status"]) == {"finished", "incomplete", "error", "pending"}
    assert "final_test_acc_pct" in trials.columns
    configs = pd.read_csv(c_path)
    for col in ("n", "mean_test_acc_pct", "std_test_acc_pct", "ci95_low_pct", "ci95_high_pct",
                "min_test_acc_pct", "max_test_acc_pct", "mean_final_train_loss", "mean_final_test_loss",
                "mean_wall_time_s", "n_incomplete", "report_acc_pct", "diff_vs_report_pct", "p_holm", "verdict"):
        assert col in configs.columns, col
    # Regenerated, never half-written: no temporary files left behind.
    analysis.write_csvs(exp)
    assert not [p for p in exp.path.iterdir() if p.name.endswith(".tmp")]

    out = tmp_path / "out"
    out.mkdir()
    assert analysis.write_csvs(exp, out / "mine.csv") == (
        out / "mine.csv", out / "mine-configs.csv", out / "mine-effects.csv")
    assert analysis.write_csvs(exp, out)[0] == out / "results.csv"
    assert analysis.csv_paths(exp, out / "plain")[1] == out / "plain-configs.csv"
    with pytest.raises(NinsweepError, match="no such directory"):
        analysis.write_csvs(exp, tmp_path / "missing" / "x.csv")


# ------------------------------------------------------------------ structure

def test_check_analysable_hook_on_a_hand_made_experiment(tmp_path):
    exp_dir = interrupted(tmp_path)
    exp = check_analysable(exp_dir, tmp_path, expect_trials=6, expect_finished=3)
    assert exp.counts()["pending"] == 1


def test_status_lists_every_trial_and_the_peak_gpu_memory_when_recorded(tmp_path):
    from ninsweep import metrics as M

    records = [dict(epoch_record(e, 0.4), **{M.PEAK_GPU_MEM_MB: 900.0 + e}) for e in (1, 2)]
    exp_dir = make_experiment(tmp_path, [
        {"activation": "elu", "batchnorm": True, "init": "he", "records": records},
        {"activation": "relu", "done": 1},
        {"activation": "maxout", "state": "pending"},
    ], epochs=2)
    text = analysis.format_status(analysis.load_experiment(exp_dir))
    lines = text.splitlines()
    assert "3 trials" in lines[0] and "1 finished" in lines[0] and "1 pending" in lines[0]
    assert "peak GPU MiB" in lines[1]
    elu = next(line for line in lines if line.startswith("elu-bn-he-s0"))
    assert "2/2" in elu and elu.split()[-1] == "902"
    relu = next(line for line in lines if line.startswith("relu-s0"))
    assert "1/2" in relu and "incomplete" in relu and relu.split()[-1] == "-"


def test_status_has_no_gpu_column_for_cpu_runs(tmp_path):
    exp_dir = make_experiment(tmp_path, [{"activation": "elu"}], epochs=2)
    assert "peak GPU" not in analysis.format_status(analysis.load_experiment(exp_dir))


# ------------------------------------------------------------------ the fast reader

def test_experiment_reader_gives_the_same_histories_as_the_line_by_line_reader(tmp_path):
    recs = [epoch_record(e, 0.1 * e) for e in (1, 2, 3)] + [epoch_record(2, 0.25), epoch_record(3, 0.35)]
    specs = [{"seed": 0, "records": recs}, {"seed": 1, "final_acc": 0.6},
             {"seed": 2, "done": 2, "tail": '{"epoch": 3, "train_lo'}]
    exp = analysis.load_experiment(make_experiment(tmp_path, specs))
    for t in exp.trials:
        slow = analysis.load_history(t.trial_dir)  # every key, line by line
        fast = t.history
        assert list(fast["epoch"]) == list(slow["epoch"])
        for col in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
                    "images_per_s", "time_total_s"):
            assert fast[col].tolist() == pytest.approx(slow[col].tolist()), (t.name, col)
    assert list(exp.trials[0].history["test_acc"]) == pytest.approx([0.1, 0.25, 0.35])


def test_a_nan_or_a_string_in_result_json_falls_back_to_the_line_reader(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    lines = [json.dumps(epoch_record(1, 0.1)), json.dumps(epoch_record(2, 0.2)).replace('"lr": 0.1', '"lr": NaN'),
             json.dumps({**epoch_record(3, 0.3), "lr": "n/a"})]
    (d / "result.json").write_text("\n".join(lines) + "\n")
    h = analysis.load_history(d, columns=analysis.HISTORY_COLUMNS)
    assert list(h["epoch"]) == [1, 2, 3] and h["test_acc"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert h["lr"].iloc[0] == pytest.approx(0.1) and h["lr"].iloc[1:].isna().all()


def test_status_reads_only_the_columns_it_shows(tmp_path):
    exp_dir = make_experiment(tmp_path, [{"seed": 0}, {"seed": 1, "done": 1}])
    exp = analysis.load_experiment(exp_dir, columns=analysis.STATUS_COLUMNS)
    assert set(exp.trials[0].metrics) <= set(analysis.STATUS_COLUMNS) | set(EPOCH_METRICS)
    assert "1/3" in analysis.format_status(exp) and "peak GPU" not in analysis.format_status(exp)


def test_many_trial_directories_are_read_in_parallel_with_the_same_result(tmp_path, monkeypatch):
    specs = [{"seed": s, "final_acc": 0.5 + 0.001 * s} for s in range(40)]
    exp_dir = make_experiment(tmp_path, specs)
    monkeypatch.setattr(analysis_results, "READ_THREADS", 2)  # 40 >= 4 x 2: the thread pool
    pooled = analysis.trial_table(analysis.load_experiment(exp_dir))
    monkeypatch.setattr(analysis_results, "READ_THREADS", 100)  # serial
    serial = analysis.trial_table(analysis.load_experiment(exp_dir))
    pd.testing.assert_frame_equal(pooled, serial)
    assert pooled["final_test_acc_pct"].tolist() == pytest.approx([50 + 0.1 * s for s in range(40)])


def test_best_epoch_is_chosen_on_the_validation_split_when_there_is_one(tmp_path):
    accs = [(0.50, 0.60), (0.70, 0.55), (0.65, 0.58)]  # (val_acc, test_acc) per epoch
    recs = [{**epoch_record(e, test), "val_acc": val, "val_loss": 1.0} for e, (val, test) in enumerate(accs, 1)]
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"records": recs}]))
    row = analysis.trial_table(exp).iloc[0]
    # The test set would pick epoch 1 (60 %); the validation split picks epoch 2.
    assert row["best_epoch"] == 2 and row["best_by"] == "val_acc"
    assert row["best_test_acc_pct"] == pytest.approx(55.0) and row["final_val_acc_pct"] == pytest.approx(65.0)
    plain = analysis.trial_table(analysis.load_experiment(
        make_experiment(tmp_path, [{"records": [epoch_record(e, a) for e, (_, a) in enumerate(accs, 1)]}],
                        name="plain"))).iloc[0]
    assert plain["best_epoch"] == 1 and plain["best_by"] == "test_acc"


# ------------------------------------------------------------------ effects CSV and --baseline

def test_export_writes_the_effects_csv_and_refuses_an_unknown_baseline(tmp_path, capsys):
    from ninsweep.cli import main

    specs = lab4_trials({"ReLU": [85.0, 85.4, 85.2], "ReLU+BN": [87.1, 87.0, 87.6],
                         "ELU": [85.9, 86.2, 85.8], "ELU+BN": [87.9, 88.1, 87.5]})
    exp_dir = make_experiment(tmp_path, specs)
    assert main(["export", str(exp_dir), "--baseline", "Swish"]) == 2
    assert "no such config" in capsys.readouterr().err
    assert not list(exp_dir.glob("results*.csv"))  # nothing written
    assert main(["export", str(exp_dir), "--baseline", "ReLU"]) == 0
    effects = pd.read_csv(exp_dir / "results-effects.csv")
    for col in ("factor", "level", "baseline", "effect_pct", "ci_low_pct", "ci_high_pct", "p", "n"):
        assert col in effects.columns, col
    bn = effects[(effects["factor"] == "batchnorm") & (effects["level"].astype(str) == "true")].iloc[0]
    assert bn["baseline"] == False or str(bn["baseline"]) == "false"  # noqa: E712
    assert bn["ci_low_pct"] < bn["effect_pct"] < bn["ci_high_pct"] and bn["n"] == 12
    assert set(effects[effects["factor"] == "config"]["level"]) == {"ReLU+BN", "ELU", "ELU+BN"}


# ------------------------------------------------------------------ objective (issue 12)

def _loss_objective_experiment(tmp_path, objective):
    # ELU is more accurate but has the higher test loss: the objective decides which wins.
    trials = [{"activation": act, "seed": s, "final_acc": acc + 0.01 * s, "final_test_loss": loss + 0.01 * s}
              for act, acc, loss in (("relu", 0.6, 0.5), ("elu", 0.8, 0.9)) for s in range(3)]
    exp_dir = make_experiment(tmp_path, trials)
    manifest = json.loads((exp_dir / "ninsweep.json").read_text())
    manifest["objective"] = objective
    (exp_dir / "ninsweep.json").write_text(json.dumps(manifest))
    return analysis.load_experiment(exp_dir)


def test_the_objective_ranks_configs_and_chooses_the_best(tmp_path):
    from ninsweep.analysis import effects

    by_loss = _loss_objective_experiment(tmp_path / "a", {"metric": "test_loss", "mode": "min"})
    configs = analysis.config_table(by_loss)
    assert list(configs["config"]) == ["ReLU", "ELU"]
    assert configs["mean_objective"].tolist() == pytest.approx([0.51, 0.91])
    sig = analysis.significance(by_loss)
    assert sig.iloc[0]["config"] == "ReLU" and sig.iloc[0]["verdict"] == analysis_tables.VERDICT_BEST
    assert sig.iloc[1]["diff_vs_best_pct"] == pytest.approx(0.4)
    main = effects.main_effects(analysis.trial_table(by_loss))
    assert main.iloc[0]["level"] == "elu" and main.iloc[0]["effect_pct"] == pytest.approx(0.4)

    by_acc = _loss_objective_experiment(tmp_path / "b", {"metric": "test_acc", "mode": "max"})
    assert list(analysis.config_table(by_acc)["config"]) == ["ELU", "ReLU"]
    main = effects.main_effects(analysis.trial_table(by_acc))
    assert main.iloc[0]["effect_pct"] == pytest.approx(20.0)


def test_a_loss_objective_is_named_in_the_columns_and_headings_and_the_old_columns_stay(tmp_path):
    from ninsweep.analysis.report import render_markdown

    by_loss = _loss_objective_experiment(tmp_path / "a", {"metric": "test_loss", "mode": "min"})
    trials, configs, sig = analysis.tables(by_loss)
    # The objective's statistics, named after it: test loss over the 3 seeds of each config.
    assert configs["mean_test_loss"].tolist() == pytest.approx([0.51, 0.91])
    assert configs["std_test_loss"].tolist() == pytest.approx([0.01, 0.01])
    half = 4.302652729749462 * 0.01 / math.sqrt(3)  # t(0.975, 2), std 0.01, n 3
    assert configs["ci95_low_test_loss"].tolist() == pytest.approx([0.51 - half, 0.91 - half])
    assert configs["max_test_loss"].tolist() == pytest.approx([0.52, 0.92])
    # The columns scripts read keep their meaning: the final test accuracy over seeds.
    assert configs["mean_test_acc_pct"].tolist() == pytest.approx([61.0, 81.0])
    assert configs["ci95_low_pct"].iloc[0] < 61.0 < configs["ci95_high_pct"].iloc[0]

    table = analysis.format_table(configs, sig)
    assert "test loss (mean ± std)" in table and "test acc" not in table.splitlines()[0]
    assert "0.5100 ± 0.0100" in table and "[0.4852, 0.5348]" in table
    md = render_markdown(by_loss, trials, configs, sig, {}, effects=None)
    assert "## Final test loss by configuration" in md and "| test loss (mean ± std) |" in md
    assert "effect (nats)" in md and "mean final test loss minus the reference" in md

    by_acc = _loss_objective_experiment(tmp_path / "b", {"metric": "test_acc", "mode": "max"})
    trials, configs, sig = analysis.tables(by_acc)
    assert "mean_test_loss" not in configs.columns  # a test_acc study's columns are as ever
    assert "test acc % (mean ± std)" in analysis.format_table(configs, sig)
    md = render_markdown(by_acc, trials, configs, sig, {}, effects=None)
    assert "## Final test accuracy by configuration" in md and "effect (points)" in md
