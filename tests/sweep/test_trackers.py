"""Trackers and TensorBoard: Ray Tune's own logger callbacks, chosen by name."""

import importlib.util

import pytest
from ray_support import SPACES, cli_env, needs_netns, ninsweep, reported_records

from ninsweep.cli import main
from ninsweep.cli.cluster import command_submit
from ninsweep.cli.parsers import add_submit_arguments
from ninsweep.space.schema import tracker_names
from ninsweep.sweep.trackers import factors


def test_factors_are_the_params_that_vary_across_the_trials():
    trials = [{"activation": "relu", "batchnorm": True, "seed": 0, "train.lr": 0.1},
              {"activation": "elu", "batchnorm": True, "seed": 0, "train.lr": 0.05},
              {"activation": "elu", "batchnorm": True, "seed": 0, "train.lr": 0.1}]
    assert factors(trials) == ["activation", "train.lr"]


def test_unknown_or_uninstalled_trackers_are_one_line_errors_before_ray_starts(
        tmp_path, capsys, monkeypatch):
    assert main(["run", "smoke", "--tracker", "tensorboardz", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboardz" in err and "mlflow" in err
    # As on a machine without the package (whether or not this one has it).
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    assert main(["run", "smoke", "--tracker", "wandb", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ninsweep[wandb]'" in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no Ray started


def test_a_space_names_its_trackers_and_the_manifest_keeps_them(tmp_path):
    from ninsweep.space import SweepSpec, parse_space

    spec = parse_space("grid:\n  - activation: [relu]\ntrackers: [mlflow, mlflow]\n")
    assert spec.trackers == ("mlflow",)
    assert SweepSpec.from_manifest(spec.to_manifest()).trackers == ("mlflow",)
    with pytest.raises(Exception, match="trackers\\[0\\].*comet"):
        parse_space("grid:\n  - activation: [relu]\ntrackers: [comet]\n")
    assert tracker_names((), ()) == []


INSTALLED_TRACKERS = [name for name in ("mlflow", "wandb") if importlib.util.find_spec(name)]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One run of the two-trial resume space, 2 epochs, with every installed tracker at once
    (one Ray sweep for the tests below instead of one each)."""
    if not INSTALLED_TRACKERS:
        pytest.skip("neither mlflow nor wandb is installed")
    tmp_path = tmp_path_factory.mktemp("trackers")
    env = {**cli_env(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default: a file store inside the experiment
    trackers = [arg for name in INSTALLED_TRACKERS for arg in ("--tracker", name)]
    result = ninsweep("run", SPACES / "resume.yaml", "--max-epochs", "2", *trackers,
                      "--storage", tmp_path / "results", env=env, timeout=600)
    return result, tmp_path / "results" / "resume"


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")
def test_mlflow_gets_one_run_per_trial_with_its_epochs(tracked_run):
    result, experiment = tracked_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (experiment / "mlruns").is_dir()

    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{experiment / 'mlruns'}")
    (mlflow_experiment,) = [e for e in client.search_experiments() if e.name == "resume"]
    runs = client.search_runs([mlflow_experiment.experiment_id])
    assert sorted(run.data.tags["trial_name"] for run in runs) == ["elu-bn-he-s0",
                                                                   "relu-bn-he-s0"]
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "test_acc")
        recorded = {r["epoch"]: r["test_acc"] for r in
                    reported_records(experiment / run.data.tags["trial_name"])}
        assert sorted(m.step for m in history) == [1, 2]
        assert {m.step: m.value for m in history} == pytest.approx(recorded)


def test_submit_passes_trackers_and_settings_to_the_clusters_run(monkeypatch):
    import argparse

    from ninsweep.cli import cluster as cli
    from ninsweep.cluster import jobs

    parser = argparse.ArgumentParser(prog="ninsweep")
    add_submit_arguments(parser)
    args = parser.parse_args(["lab4", "--storage", "/mnt/x", "--tracker", "mlflow",
                              "--set", "train.lr=0.05", "--set", "train.weight_decay=1e-4"])
    assert cli._run_args(args) == ["--set", "train.lr=0.05", "--set", "train.weight_decay=1e-4",
                                   "--tracker", "mlflow"]
    resume = parser.parse_args(["--resume", "/mnt/x/lab4", "--tracker", "mlflow"])
    sent = []
    monkeypatch.setattr(jobs, "submit_resume",
                        lambda address, experiment, out, extra_args: sent.append(extra_args))
    assert command_submit(resume, out=lambda line: None) == 0
    assert sent == [["--tracker", "mlflow"]]
    with pytest.raises(Exception, match="--set"):
        command_submit(parser.parse_args(["--resume", "/mnt/x/lab4", "--set", "train.lr=1"]),
                           out=lambda line: None)


@needs_netns
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")
def test_wandb_offline_writes_one_run_per_trial_inside_the_experiment(tracked_run):
    result, experiment = tracked_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "wandb:" not in result.stdout + result.stderr  # its chatter goes to the logs
    runs = sorted((experiment / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(list(run.glob("*.wandb")) for run in runs)
