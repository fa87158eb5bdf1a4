"""Machine-readable output and overrides: status --json, export --per-epoch, run --set,
and the --help texts. No Ray is started here."""

import csv
import json

import pytest
from analysis_fixtures import make_experiment
from ray_support import ROOT

from ninsweep.cli import main
from ninsweep.cli.parsers import build_parser
from ninsweep.cli.train import trial_config_from_args
from ninsweep.space import load_space, parse_value


@pytest.fixture
def experiment(tmp_path):
    return make_experiment(tmp_path, [
        {"activation": "relu", "final_acc": 0.6, "extra": {"train.lr": 0.1}},
        {"activation": "elu", "done": 1, "extra": {"train.lr": 0.05}},
        {"activation": "relu", "batchnorm": True, "state": "error", "done": 2,
         "extra": {"train.lr": 0.1}},
        {"activation": "elu", "batchnorm": True, "state": "pending", "extra": {"train.lr": 0.1}},
    ])


def test_status_json_has_every_trial_with_its_status_params_and_numbers(experiment, capsys):
    assert main(["status", str(experiment), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"finished": 1, "stopped": 0, "incomplete": 1, "error": 1, "pending": 1, "skipped": 0}
    trials = {row["trial"]: row for row in status["trials"]}
    assert [row["status"] for row in status["trials"]] == ["finished", "incomplete", "error",
                                                            "pending"]
    finished = trials["relu-s0"]
    assert finished["epochs_done"] == 3 and finished["final_test_acc_pct"] == pytest.approx(60)
    assert finished["params"] == {"activation": "relu", "batchnorm": False, "init": "keras",
                                  "seed": 0, "train.lr": 0.1}
    assert trials["elu-bn-s0"]["final_test_acc_pct"] is None  # pending: null, not NaN
    assert "CUDA out of memory" in trials["relu-bn-s0"]["error"]


def test_export_per_epoch_writes_the_long_table(experiment, tmp_path, capsys):
    out = tmp_path / "out" / "lab.csv"
    out.parent.mkdir()
    assert main(["export", str(experiment), "--per-epoch", "-o", str(out)]) == 0
    assert str(out.with_name("lab-epochs.csv")) in capsys.readouterr().out
    with open(out.with_name("lab-epochs.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:7] == ["trial", "activation", "batchnorm", "init", "seed",
                                 "train.lr", "epoch"]
    assert [(row["trial"], row["epoch"]) for row in rows] == [
        ("relu-s0", "1"), ("relu-s0", "2"), ("relu-s0", "3"), ("elu-s0", "1"),
        ("relu-bn-s0", "1"), ("relu-bn-s0", "2")]
    assert float(rows[2]["test_acc"]) == pytest.approx(0.6)
    assert rows[3]["train.lr"] == "0.05"


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("0.05", 0.05), ("true", True),
                                        ("[1, 2]", [1, 2]), ("relu", "relu"), ("{", "{")])
def test_set_values_follow_the_space_files_yaml_rules(text, value):
    assert parse_value(text) == value


def test_train_accepts_weight_decay_in_exponent_notation():
    args = build_parser().parse_args(["train", "--set", "train.weight_decay=1e-4"])
    assert trial_config_from_args(args).train.weight_decay == pytest.approx(1e-4)


def test_run_set_changes_every_trial_and_is_recorded_in_the_manifest(capsys):
    assert main(["run", "smoke", "--dry-run", "--set", "train.lr=0.05",
                 "--set", "train.weight_decay=1e-4"]) == 0
    spec = load_space(ROOT / "search_spaces" / "smoke.yaml").with_overrides(
        settings={"train.lr": 0.05, "train.weight_decay": 1e-4})
    assert {t.config.train.lr for t in spec.trials} == {0.05}
    assert {t.config.train.weight_decay for t in spec.trials} == {1e-4}
    assert spec.to_manifest()["overrides"]["set"] == {"train.lr": 0.05,
                                                      "train.weight_decay": 1e-4}


@pytest.mark.parametrize("setting,problem", [
    ("model.activation=elu", "grid parameter"),
    ("train.seed=3", "grid parameter"),
    ("train.lr=fast", "train.lr"),
    ("optim.lr=0.1", "unknown section"),
    ("lr", "SECTION.KEY=VALUE"),
])
def test_run_set_refuses_bad_settings_in_one_line(setting, problem, capsys):
    assert main(["run", "smoke", "--dry-run", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err


@pytest.mark.parametrize("command", ["run", "resume", "status", "export", "train"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"ninsweep {command} " in out


def test_experiment_arguments_say_what_they_take(capsys):
    for command in ("status", "export", "report", "resume"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "s3:// or gs:// URI" in capsys.readouterr().out


def test_status_says_adaptive_replications_wave_and_counts_the_trials_it_skipped(experiment, capsys):
    """replication.json (written by the sweep's searcher) is what status reads: the wave and
    the decisions in one line, and a planned trial it did not need is 'skipped', not pending."""
    assert main(["status", str(experiment), "--json"]) == 0
    pending, = (t["trial"] for t in json.loads(capsys.readouterr().out)["trials"]
                if t["status"] == "pending")
    (experiment / "replication.json").write_text(json.dumps({
        "min_seeds": 2, "max_seeds": 4, "finished": True, "waves": [["a"], ["b"]],
        "decisions": [{"state": "effect"}, {"state": "negligible"}], "skipped": [pending]}))
    assert main(["status", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == ("replication: done after wave 1 (seeds 2..4); main effects: "
                                   "1 effect, 1 negligible")
    assert "1 skipped" in out.splitlines()[0] and "pending" not in out.splitlines()[0]
    assert main(["status", str(experiment), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["skipped"] == 1 and status["counts"]["pending"] == 0
    assert {t["trial"]: t["status"] for t in status["trials"]}[pending] == "skipped"
