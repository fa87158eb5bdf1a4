"""Random search with ASHA through Ray, end to end: the shipped smoke-search space, its driver
SIGKILLed mid-search and resumed. Checked on disk: every drawn trial once with the values the
manifest planned, trials stopped early recorded as such in result.json, status, the CSVs and
the report, and the final table counting only trials that ran every epoch."""

from __future__ import annotations

import csv
import json

import pytest
from ray_support import (
    cli_env,
    needs_netns,
    ninsweep,
    reported_records,
    sigkill_driver,
    start_ninsweep,
    wait_until,
)

from ninsweep import metrics as M
from ninsweep.space import load_space, resolve_space_path


@pytest.mark.ray
@needs_netns
def test_search_with_asha_survives_a_sigkill_and_every_output_says_which_trials_stopped(tmp_path):
    spec = load_space(resolve_space_path("smoke-search"))
    planned = {t.name: t.params for t in spec.trials}
    env = cli_env(tmp_path)
    experiment = tmp_path / "results" / "smoke-search"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", "smoke-search", "--storage", experiment.parent, env=env, log=log)

    def reported() -> int:
        return sum(bool(reported_records(experiment / name)) for name in planned)

    wait_until(lambda: reported() >= 4, 300, "four trials reporting", driver, log)
    sigkill_driver(driver)
    assert reported() < len(planned), "the search finished before the kill"

    resumed = ninsweep("resume", experiment, env=env, timeout=400)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    assert "Traceback" not in output

    # Every drawn trial exactly once, with the values drawn before Ray started: none lost,
    # none repeated, none added.
    on_disk = {d.name: json.loads((d / "params.json").read_text())["trial"]["params"]
               for d in experiment.iterdir() if (d / "params.json").is_file()}
    assert on_disk == planned

    status = json.loads(ninsweep("status", experiment, "--json", env=env).stdout)
    counts = status["counts"]
    assert counts["finished"] + counts["stopped"] == len(planned), counts
    # ASHA keeps about a third per rung; its rungs start empty again after the resume (Tune
    # does not save them), so fewer may be stopped than in one uninterrupted run.
    assert counts["stopped"] >= 3, counts
    stopped = {t["trial"] for t in status["trials"] if t["status"] == "stopped"}
    for name in stopped:
        records = reported_records(experiment / name)
        assert records[-1].get(M.STOPPED_EARLY) == 1, name
        assert records[-1][M.EPOCH] < 4, name
    assert f"{len(planned) - len(stopped)}/{len(planned)} trials finished, {len(stopped)} " \
           "stopped early, 0 errored" in resumed.stdout

    with open(experiment / "results.csv", newline="") as handle:
        rows = {row["trial"]: row for row in csv.DictReader(handle)}
    assert {name for name, row in rows.items() if row["status"] == "stopped"} == stopped
    with open(experiment / "results-configs.csv", newline="") as handle:
        configs = list(csv.DictReader(handle))
    assert sum(int(c["n_stopped"]) for c in configs) == len(stopped)
    # The final table's n counts only the trials that ran every epoch.
    assert sum(int(c["n"]) for c in configs) == len(planned) - len(stopped)

    assert ninsweep("report", experiment, env=env).returncode == 0
    report = (experiment / "report" / "report.md").read_text()
    assert "**Search:** random search: 4 draws (seed 0) of train.lr ~ loguniform[0.002, 0.08]" in report
    assert f"{len(stopped)} of {len(planned)} trials were stopped early by the scheduler" in report
    some = sorted(stopped)[0]
    epoch = reported_records(experiment / some)[-1][M.EPOCH]
    assert f"| `{some}` |" in report and f"stopped at epoch {epoch} by ASHA" in report


@pytest.mark.ray
@needs_netns
def test_a_diverging_trial_ends_once_without_retries_and_keeps_its_epochs(tmp_path):
    """A learning rate too large is a result of the search, not a fault: the same config and
    seed diverge again from the same checkpoint, so the trial ends at once (no retry), with
    one line naming the epoch and the learning rate, and its epochs before stay on disk."""
    from ray_support import write_space

    space = write_space(tmp_path, """\
        name: diverge
        grid:
          - activation: [relu]
            batchnorm: [false]
            train.lr: [0.01, 1000000.0]
        data: {source: synthetic, synthetic_train_size: 64, synthetic_test_size: 32,
               synthetic_image_size: 16}
        train: {epochs: 3, batch_size: 32, lr_milestones: [], threads: 1}
        resources: {cpus: 1, gpus: 0}
        failure: {max_retries: 2}
        """)
    experiment = tmp_path / "results" / "diverge"
    result = ninsweep("run", space, "--storage", experiment.parent, env=cli_env(tmp_path),
                      timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "1/2 trials finished, 1 errored" in result.stdout
    assert "failed (attempt" not in output and "Traceback" not in output
    diverged = next(d for d in experiment.iterdir() if "lr1e+06" in d.name or "lr1000000" in d.name)
    text = (diverged / "error.txt").read_text()
    assert text.count("\n") == 1 and "TrainingDiverged" in text and "lower train.lr" in text
    assert "error, not retried: epoch 1: the training loss is nan" in result.stderr
    epochs = [r[M.EPOCH] for r in reported_records(diverged)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 3


@pytest.mark.ray
@needs_netns
def test_per_cell_tuning_survives_a_sigkill_and_each_cell_runs_its_own_choice(tmp_path):
    """smoke-tuned, its driver SIGKILLed once some tuning trials reported, then resumed:
    every planned trial ran once; each cell's final trials ran at the draw with the best
    val_acc among that cell's tuning trials (read back from disk); only final trials enter
    the final table; stage is a column of the CSVs; the report shows the choices."""
    from ninsweep.analysis import load_experiment

    spec = load_space(resolve_space_path("smoke-tuned"))
    planned = {t.name for t in spec.trials}
    env = cli_env(tmp_path)
    experiment = tmp_path / "results" / "smoke-tuned"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", "smoke-tuned", "--storage", experiment.parent, env=env, log=log)
    wait_until(lambda: sum(bool(reported_records(experiment / t.name)) for t in spec.trials) >= 3,
               300, "three trials reporting", driver, log)
    sigkill_driver(driver)

    resumed = ninsweep("resume", experiment, env=env, timeout=400)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    assert f"{len(planned)}/{len(planned)} trials finished, 0 errored" in resumed.stdout
    on_disk = {d.name for d in experiment.iterdir() if (d / "params.json").is_file()}
    assert on_disk == planned

    exp = load_experiment(experiment)
    tuning = [t for t in exp.trials if t.stage == "tune"]
    for final in (t for t in exp.trials if t.stage == "final"):
        cell = [t for t in tuning if all(t.params[k] == final.params[k]
                                         for k in ("activation", "batchnorm", "init"))]
        scores = {t.name: float(t.metrics["val_acc"][-1]) for t in cell}
        best = max(scores.values())
        assert scores[final.chosen_from] == best, (final.name, scores)  # the validation best
        chosen = next(t for t in cell if t.name == final.chosen_from)
        assert final.tuned == chosen.tuned and final.config.train.lr == chosen.tuned["train.lr"]
        assert final.config.train.epochs == 3

    with open(experiment / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["stage"] for r in rows} == {"tune", "final"}
    with open(experiment / "results-configs.csv", newline="") as handle:
        configs = list(csv.DictReader(handle))
    assert {c["stage"] for c in configs} == {"final"}
    assert sum(int(c["n"]) for c in configs) == 8  # 4 cells x 2 seeds, no tuning trial

    assert ninsweep("report", experiment, env=env).returncode == 0
    report = (experiment / "report" / "report.md").read_text()
    assert "## Per-cell tuning" in report and "(Dodge et al. 2019" in report
    assert (experiment / "report" / "tuning_curves.png").stat().st_size > 1000


@pytest.mark.ray
@needs_netns
def test_adaptive_replication_survives_a_sigkill_between_waves(tmp_path):
    """A 2x2 grid with replication (2 seeds first, up to 4), the driver SIGKILLed once the
    first wave has results, then resumed: the record lists the waves and the decisions; every
    trial it handed out ran once; the ones it did not need have no directory and are
    'skipped' in status; the sweep counts them out of its total."""
    from ray_support import write_space

    space = write_space(tmp_path, """\
        name: adaptive
        grid:
          - activation: [relu, elu]
            batchnorm: [false, true]
            init: [he]
        replication: {min_seeds: 2, max_seeds: 4, until: {ci_half_width_pct: 40}}
        data: {source: synthetic, synthetic_train_size: 128, synthetic_test_size: 64,
               synthetic_image_size: 16}
        train: {epochs: 2, batch_size: 32, lr_milestones: [], threads: 1}
        resources: {cpus: 1, gpus: 0}
        """)
    env = cli_env(tmp_path)
    experiment = tmp_path / "results" / "adaptive"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", space, "--storage", experiment.parent, env=env, log=log)
    first_wave = [f"{a}-{b}-he-s{s}" for s in (0, 1) for a in ("relu", "elu") for b in ("nobn", "bn")]
    wait_until(lambda: sum(len(reported_records(experiment / n)) >= 2 for n in first_wave) >= 3,
               300, "three trials of the first wave finished", driver, log)
    sigkill_driver(driver)

    resumed = ninsweep("resume", experiment, env=env, timeout=400)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    record = json.loads((experiment / "replication.json").read_text())
    assert record["finished"] and sorted(record["waves"][0]) == sorted(first_wave)
    handed_out = [n for wave in record["waves"] for n in wave]
    assert len(handed_out) == len(set(handed_out))
    on_disk = {d.name for d in experiment.iterdir() if (d / "params.json").is_file()}
    assert on_disk == set(handed_out)
    assert set(record["skipped"]).isdisjoint(on_disk) and len(on_disk) + len(record["skipped"]) == 16
    assert {d["factor"] for d in record["decisions"]} == {"activation", "batchnorm"}
    status = json.loads(ninsweep("status", experiment, "--json", env=env).stdout)
    assert status["counts"]["skipped"] == len(record["skipped"])
    assert status["counts"]["finished"] == len(on_disk)
    assert f"{len(on_disk)}/{len(on_disk)} trials finished, 0 errored" in resumed.stdout
    assert ninsweep("report", experiment, env=env).returncode == 0
    report = (experiment / "report" / "report.md").read_text()
    assert "## Adaptive replication" in report and "Lan-DeMets" in report
    assert "trial-epochs that 4 seeds everywhere would take" in report
