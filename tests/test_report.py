"""ninsweep.report: report.md and its PNG figures, on hand-made experiment directories."""

import re

import pytest

from ninsweep import analysis, report

try:
    from .analysis_fixtures import lab4_trials, make_experiment
except ImportError:
    from analysis_fixtures import lab4_trials, make_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = (report.FIG_TEST_ACC, report.FIG_TRAIN_LOSS, report.FIG_TEST_LOSS, report.FIG_FINAL_ACC)


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
    assert_png(out / report.FIG_TEST_ACC)  # the running trial's curve
    assert not (out / report.FIG_FINAL_ACC).exists()
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
    assert report.fmt_duration(seconds) == text
