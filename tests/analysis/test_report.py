"""ninsweep.report: report.md and its PNG figures, on hand-made experiment directories."""

import re

import pytest

from ninsweep import analysis, fmt
from ninsweep.analysis import curves as curve_data
from ninsweep.analysis import figures, report, stats

try:
    from .analysis_fixtures import lab4_trials, make_experiment
except ImportError:
    from analysis_fixtures import lab4_trials, make_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = (figures.FIG_TEST_ACC, figures.FIG_TRAIN_LOSS, figures.FIG_TEST_LOSS, figures.FIG_FINAL_ACC)


def lab4_experiment(tmp_path):
    trials = lab4_trials({
        "ELU+BN+WI": [91.6, 91.8, 91.7], "ELU+BN": [91.2, 91.5, 91.3], "ReLU": [85.0, 85.2, 85.1],
        "Maxout+BN+WI": [89.0],
    }, epochs=12)
    trials[1]["done"] = 5  # ELU+BN+WI seed 1 still running
    trials.append({"activation": "maxout", "batchnorm": True, "init": "he", "seed": 1, "epochs": 12,
                   "state": "pending"})
    trials.append({"activation": "maxout", "batchnorm": True, "init": "he", "seed": 2, "epochs": 12,
                   "done": 3, "state": "error"})
    return analysis.load_experiment(make_experiment(tmp_path, trials, space_name="lab4", epochs=12))


def assert_png(path):
    assert path.is_file(), path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000, (path, len(data))


def table_rows(md, heading):
    section = md.split(heading, 1)[1].split("\n## ", 1)[0]
    return [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")][1:]


def test_report_on_a_lab4_experiment(tmp_path):
    exp = lab4_experiment(tmp_path)
    out = tmp_path / "rep"
    path = report.write_report(exp, out)
    assert path == out / "report.md"
    md = path.read_text()
    for fig in FIGURES:
        assert_png(out / fig)
        assert f"]({fig})" in md
    rows = table_rows(md, "## Final test accuracy by configuration")
    assert [r.split("|")[2].strip().strip("*") for r in rows] == ["ELU+BN+WI", "ELU+BN", "Maxout+BN+WI", "ReLU"]
    best = rows[0]
    assert "91.65 ± 0.07" in best and "91.67" in best and "-0.02" in best and "best" in best
    assert "1 incomplete" in best
    relu = rows[3]
    assert "90.50" in relu and "-5.40" in relu and "significantly lower" in relu
    assert "none" in rows[2] and "needs >= 2 seeds" in rows[2] and "1 error, 1 pending" in rows[2]
    # The significance section names the method and the verdicts.
    sig = md.split("## Which differences are real", 1)[1]
    assert "Welch" in sig and "Holm" in sig
    assert re.search(r"Significantly lower than ELU\+BN\+WI.*ReLU", sig)
    assert "Against the lab report" in md and "Caution" in md  # 12 epochs, not 164
    # Every trial is listed, the unfinished ones included.
    trial_rows = table_rows(md, "## Trials")
    assert len(trial_rows) == len(exp.trials) == 12
    assert sum("pending" in r for r in trial_rows) == 1 and sum("| error |" in r for r in trial_rows) == 1
    assert "CUDA out of memory" in md


def test_report_default_directory_and_regeneration(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0, "final_acc": 0.5},
                                                               {"seed": 1, "final_acc": 0.6}]))
    path = report.write_report(exp)
    assert path == exp.path / "report" / "report.md"
    first = path.read_text()
    assert "Against the lab report" not in first and "report %" not in first
    report.write_report(exp)  # derived: regenerated in place
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(FIGURES + ("report.md",))


def test_report_of_an_experiment_with_no_finished_trial(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0, "done": 1}, {"seed": 1, "state": "pending"}]))
    out = tmp_path / "rep"
    md = report.write_report(exp, out).read_text()
    assert "No trial has finished yet" in md
    assert_png(out / figures.FIG_TEST_ACC)  # the running trial's curve
    assert not (out / figures.FIG_FINAL_ACC).exists()
    assert "no data yet" in md


def test_report_of_an_all_pending_experiment(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0, "state": "pending"}]))
    md = report.write_report(exp, tmp_path / "rep").read_text()
    assert "1 pending" in md and not list((tmp_path / "rep").glob("*.png"))


def test_report_does_not_switch_the_pyplot_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0}]))
    report.write_report(exp, tmp_path / "rep")
    assert matplotlib.get_backend() == before


@pytest.mark.parametrize("seconds,text", [(12.34, "12.3s"), (312, "5m12s"), (10740, "2h59m"), (None, "-")])
def test_durations(seconds, text):
    assert fmt.duration(seconds) == text


# ------------------------------------------------------------------ factor effects, honest numbers

def factorial_experiment(tmp_path, diverged=False):
    import numpy as np
    from analysis_fixtures import factorial_specs

    levels = {"activation": ["relu", "elu"], "batchnorm": [False, True]}
    specs = factorial_specs(levels, lambda c: 80 + 2 * c["batchnorm"] + 0.5 * (c["activation"] == "elu"),
                            range(3), rng=np.random.default_rng(0), noise=0.3, epochs=12)
    specs.append({"activation": "maxout", "batchnorm": True, "seed": 0, "epochs": 12,
                  "final_acc": 0.10 if diverged else 0.81})
    return analysis.load_experiment(make_experiment(tmp_path, specs, space_name="grid", epochs=12))


def test_report_has_factor_effects_with_a_forest_plot_and_one_error_convention(tmp_path):
    exp = factorial_experiment(tmp_path)
    out = tmp_path / "rep"
    md = report.write_report(exp, out, baseline="ReLU").read_text()
    assert md.count("**Error convention:**") == 1 and "95% confidence interval" in md
    assert "min-max" not in md and "min–max over seeds" not in md
    effects_md = md.split("## Factor effects", 1)[1].split("\n## ", 1)[0]
    rows = table_rows(md, "### Main effects")
    bn = next(r for r in rows if r.startswith("| batchnorm "))
    assert "true vs false" in bn and "activation in {relu, elu}" in bn  # Maxout ran only with BN
    assert "Not a full factorial" in effects_md
    for fig in (figures.FIG_EFFECTS, figures.FIG_INTERACTIONS):
        assert_png(out / fig)
        assert f"]({fig})" in effects_md
    assert "activation x batchnorm" in effects_md
    base = md.split("## Against the baseline ReLU", 1)[1].split("\n## ", 1)[0]
    assert "ReLU+BN vs ReLU" in base and "Maxout+BN vs ReLU" in base


def test_report_with_an_unknown_baseline_writes_nothing(tmp_path):
    from ninsweep.errors import NinsweepError

    exp = factorial_experiment(tmp_path)
    with pytest.raises(NinsweepError, match="no such config"):
        report.write_report(exp, tmp_path / "rep", baseline="Swish")
    assert not (tmp_path / "rep").exists()


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_curves_one_seed_has_no_band_and_a_diverged_config_is_off_the_zoom(tmp_path):
    exp = factorial_experiment(tmp_path, diverged=True)
    trials, configs, _ = analysis.tables(exp)
    curves = curve_data.curve_histories(exp, trials)
    colors = figures._colors(list(configs["config"]))
    fig = figures._curve_figure(curves, configs, colors, "test_acc", 100.0, "acc", "t", True)
    texts = legend_texts(fig)
    assert "Maxout+BN (n=1, no band)" in texts and "ReLU (n=3)" in texts
    assert "band: 95% CI of the mean (n >= 2)" in texts
    full, zoom = fig.axes[:2]
    assert "off scale: Maxout+BN" in zoom.get_title()
    lo, hi = zoom.get_ylim()
    assert lo > 30  # the diverged config (10 %) does not set the zoom's range
    # Every config has its own marker, so coinciding curves stay visible.
    markers = [line.get_marker() for line in full.get_lines()]
    assert len(set(markers)) == len(configs)


def test_a_lone_seed_config_gets_no_band_in_the_legend(tmp_path):
    exp = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0, "final_acc": 0.5}]))
    trials, configs, _ = analysis.tables(exp)
    fig = figures._curve_figure(curve_data.curve_histories(exp, trials), configs,
                                figures._colors(list(configs["config"])), "test_acc", 100.0, "acc", "t",
                                True)
    assert not any(t.startswith("band") for t in legend_texts(fig))


def test_bands_are_confidence_intervals_clipped_to_the_metric_range():
    import numpy as np
    import pandas as pd

    wide = pd.DataFrame({0: [10.0, 99.0], 1: [90.0, 99.5], 2: [50.0, 100.0]}, index=[1, 2])
    mean, lo, hi, count = stats.mean_ci(wide, (0.0, 100.0))
    assert mean[1] == pytest.approx(50.0) and lo[1] == 0.0 and hi[1] == 100.0  # t: 50 ± 99
    half = 4.302652729911275 * np.std([99.0, 99.5, 100.0], ddof=1) / np.sqrt(3)
    assert lo[2] == pytest.approx(99.5 - half) and hi[2] == 100.0
    one = stats.mean_ci(pd.DataFrame({0: [5.0]}), (0.0, 100.0))
    assert np.isnan(one[1].iloc[0]) and one[3].iloc[0] == 1


def test_off_scale_finds_the_diverged_config_only():
    assert curve_data.off_scale({"a": 91.0, "b": 90.5, "c": 90.8, "d": 10.0}) == {"d"}
    assert curve_data.off_scale({"a": 91.0, "b": 90.5, "c": 89.0, "d": 88.0}) == set()
    assert curve_data.off_scale({"a": 91.0, "b": 10.0}) == set()  # two configs: nothing to compare


def test_final_accuracy_figure_keeps_a_diverged_config_at_its_edge(tmp_path):
    exp = factorial_experiment(tmp_path, diverged=True)
    trials, configs, _ = analysis.tables(exp)
    fig = figures._final_figure(trials, configs, figures._colors(list(configs["config"])), exp)
    lo, hi = fig.axes[0].get_xlim()
    assert lo > 70 and hi < 90  # the others' spread, not 10-85
    assert any("10.0 (off scale)" in t.get_text() for t in fig.axes[0].texts)


def test_report_says_what_chose_the_best_epoch(tmp_path):
    from analysis_fixtures import epoch_record

    recs = [{**epoch_record(e, 0.5), "val_acc": 0.4 + 0.1 * e, "val_loss": 1.0} for e in (1, 2, 3)]
    with_val = analysis.load_experiment(make_experiment(tmp_path, [{"records": recs}], name="v"))
    assert "highest validation accuracy" in report.write_report(with_val, tmp_path / "rv").read_text()
    plain = analysis.load_experiment(make_experiment(tmp_path, [{"seed": 0}], name="p"))
    assert "chosen on the test set, so optimistic" in report.write_report(plain, tmp_path / "rp").read_text()


def test_report_says_which_intervals_rest_on_pooled_interactions(tmp_path):
    # An unreplicated 2^3 (one seed per cell): the main effects' intervals pool the interactions.
    noise = [0.1, -0.2, 0.05, 0.3, -0.1, 0.2, -0.25, 0.0]
    cells = [(a, bn, i) for a in ("relu", "elu") for bn in (False, True) for i in ("keras", "he")]
    specs = [{"activation": a, "batchnorm": bn, "init": i, "seed": 0,
              "final_acc": (80 + 2 * bn + (a == "elu") + e) / 100} for (a, bn, i), e in zip(cells, noise)]
    md = report.write_report(analysis.load_experiment(make_experiment(tmp_path, specs)), tmp_path / "rep").read_text()
    effects_section = md.split("## Factor effects", 1)[1].split("\n## ", 1)[0]
    assert ("**pooled interactions (df=4)** for activation, batchnorm, init: one seed per cell: the "
            "interval rests on the interactions pooled as error and assumes they are negligible") in effects_section
    rows = table_rows(md, "### Main effects")
    assert all(re.search(r"\[-?\d+\.\d\d, -?\d+\.\d\d\]", r) for r in rows[:3]), rows
    replicated = report.write_report(lab4_experiment(tmp_path / "lab4"), tmp_path / "rep2").read_text()
    assert "pooled interactions" not in replicated
