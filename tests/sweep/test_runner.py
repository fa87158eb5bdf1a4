"""The sweep service end to end: run, interrupt (SIGKILL, Ctrl-C), resume, status, errors.

Tests marked with ``needs_netns`` start Ray and run only inside the loopback-only network
namespace of tests/run.sh; the others never start Ray.
"""

import csv
import functools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_support import (
    ROOT,
    SPACES,
    cli_env,
    needs_netns,
    ninsweep,
    read_tensorboard,
    reported_epochs,
    reported_records,
    start_ninsweep,
    wait_until,
)

from ninsweep import metrics as M
from ninsweep.cli import main
from ninsweep.core.train import Trainer
from ninsweep.metrics import TENSORBOARD_TAGS
from ninsweep.space import load_space
from ninsweep.sweep.runner import tune_trainable

try:
    from .analysis_fixtures import check_analysable
except ImportError:
    from analysis_fixtures import check_analysable

RESUME_SPACE = SPACES / "resume.yaml"


# -- without Ray ------------------------------------------------------------------------------

def test_dry_run_lists_the_ten_reference_trials_without_starting_ray(capsys):
    assert main(["run", "lab4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    names = ["relu-nobn-keras-s0", "relu-nobn-he-s0", "relu-bn-keras-s0", "relu-bn-he-s0",
             "elu-nobn-keras-s0", "elu-nobn-he-s0", "elu-bn-keras-s0", "elu-bn-he-s0",
             "leaky_relu-bn-he-s0", "maxout-bn-he-s0"]
    trial_lines = [line for line in out.splitlines() if line.split() and line.split()[0] in names]
    assert len(trial_lines) == 10 and {line.split()[0] for line in trial_lines} == set(names)
    assert all("0.25" in line for line in trial_lines)  # the GPU fraction of each trial


def test_each_trial_asks_for_the_spaces_resources():
    spec = load_space(ROOT / "search_spaces" / "lab4.yaml")
    assert tune_trainable(spec)._resources.bundles == [{"CPU": 2.0, "GPU": 0.25}]
    cpu_only = spec.with_overrides(gpus_per_trial=0, cpus_per_trial=1)
    assert tune_trainable(cpu_only)._resources.bundles == [{"CPU": 1.0}]


@pytest.mark.parametrize("text,problem", [
    ("grid: [activation: [relu]\n", "invalid YAML"),
    ("grid:\n  - activation: [relu6]\n", "grid[0].activation: unknown value 'relu6'"),
    ("grid:\n  - activation: [relu]\nresources: {gpus: 1.5}\n", "resources.gpus"),
    ("grid: []\n", "grid"),
    ("grid:\n  - activation: [relu]\ntrain: {epochs: 0}\n", "train.epochs"),
    ("grid:\n  - activation: [relu]\nbogus: 1\n", "bogus"),
])
def test_bad_spaces_fail_with_one_line_and_exit_2(tmp_path, capsys, text, problem):
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    assert main(["run", str(space), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err
    assert "bad.yaml" in err and problem in err


def test_bad_space_error_has_no_traceback_from_the_command_line(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("grid:\n  - init: [xavier]\n")
    result = ninsweep("run", space, "--dry-run", env=cli_env(tmp_path), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "init" in result.stderr and "xavier" in result.stderr


def test_run_into_an_existing_experiment_refuses_and_keeps_it(tmp_path, capsys):
    existing = tmp_path / "results" / "smoke"
    existing.mkdir(parents=True)
    (existing / "precious.txt").write_text("keep me")
    assert main(["run", "smoke", "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "ninsweep resume" in err
    assert [p.name for p in existing.iterdir()] == ["precious.txt"]
    assert (existing / "precious.txt").read_text() == "keep me"


def test_resume_and_status_of_a_non_experiment_are_clear_errors(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a ninsweep experiment" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err



COMPAT_SNAPSHOT = next((ROOT / "tests" / "fixtures" / "main-9c78cef" / "compat")
                       .glob("experiment_state-*.json"))


@pytest.mark.parametrize("older, newer, kept, aside", [
    ("whole", "cut", True, ["newer"]),  # Tune reads the older one instead
    ("cut", "cut", False, ["newer", "older"]),
    (None, "empty", False, ["newer"]),
    ("cut", "whole", True, []),  # only the newest is read: the older stays as it is
    (None, None, False, []),
], ids=["newest-cut", "all-cut", "empty", "newest-whole", "none"])
def test_unreadable_tune_snapshots_are_set_aside_newest_first(tmp_path, older, newer, kept,
                                                              aside):
    from ninsweep.sweep.runner import set_aside_unreadable_snapshots

    whole = COMPAT_SNAPSHOT.read_bytes()
    content = {"whole": whole, "cut": whole[:len(whole) // 2], "empty": b""}
    names = {"older": "experiment_state-2026-12-01_23-13-35.json",
             "newer": "experiment_state-2026-12-02_02-07-01.json"}
    for which, kind in (("older", older), ("newer", newer)):
        if kind:
            (tmp_path / names[which]).write_bytes(content[kind])
    (tmp_path / "tuner.pkl").write_bytes(b"left alone")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    lines: list[str] = []

    assert set_aside_unreadable_snapshots(str(tmp_path), lines.append) is kept
    # Renamed from the newest down to the first that parses; nothing deleted or changed.
    expected = {(f"{n}.unreadable" if any(names[w] == n for w in aside) else n): data
                for n, data in before.items()}
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == expected
    assert [line.split(": ", 1)[0] for line in lines] == [str(tmp_path / names[w]) for w in aside]

# -- with Ray -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory):
    """The README's main job: the smoke sweep, run once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    started = time.time()
    result = ninsweep("run", "smoke", "--storage", tmp_path / "results", env=cli_env(tmp_path),
                      timeout=600)
    return tmp_path / "results" / "smoke", result, time.time() - started


@needs_netns
def test_smoke_sweep_runs_end_to_end(smoke_experiment, tmp_path):
    experiment, result, wall_time = smoke_experiment
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "20/20 trials finished, 0 errored" in result.stdout
    assert "first trial running" in result.stdout and "ETA" in result.stdout
    assert "ELU+BN+WI" in result.stdout  # the final table
    with open(experiment / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and {row["status"] for row in rows} == {"finished"}
    assert {row["seed"] for row in rows} == {"0", "1"}
    for trial_dir in (experiment / row["trial"] for row in rows):
        assert reported_epochs(trial_dir) == [1, 2, 3]
        assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == \
            ["checkpoint_000001", "checkpoint_000002"]  # keep: 2
    check_analysable(experiment, tmp_path, expect_trials=20, expect_finished=20)
    print(f"smoke sweep wall time {wall_time:.1f} s")


@needs_netns
def test_smoke_sweep_shows_a_real_effect_and_the_command_of_its_report(smoke_experiment, tmp_path):
    """The README's first command shows what ninsweep is for: BatchNorm's main effect, paired
    by seed over the relu/elu x init part of the grid, with a 95% interval above zero (it
    is some 40-60 points on smoke's data; at one seed, before issue 23, there was no
    interval at all), then the command that writes the report."""
    experiment, result, _ = smoke_experiment
    assert result.returncode == 0
    with open(experiment / "results-effects.csv", newline="") as handle:
        effects = {(r["kind"], r["factor"], r["level"]): r for r in csv.DictReader(handle)}
    bn = effects[("main", "batchnorm", "true")]
    assert (bn["baseline"], bn["paired"]) == ("false", "True")
    assert bn.get("interval_method", "seeds") == "seeds"  # the column is left out when all are
    assert (int(bn["n"]), int(bn["df"])) == (16, 7)  # 8 cells x 2 seeds, paired
    assert 0 < float(bn["ci_low_pct"]) < float(bn["effect_pct"]) < float(bn["ci_high_pct"])
    assert float(bn["p_holm"]) < 0.05
    # The same row in the run's own output, after the results table.
    final = result.stdout.split("trials finished", 1)[1]
    row, = [line for line in final.splitlines() if line.startswith("batchnorm ")]
    assert row.split()[:4] == ["batchnorm", "true", "vs", "false"]
    low, high = re.search(r"\[(-?[\d.]+), (-?[\d.]+)\]", row).groups()
    assert (float(low), float(high)) == pytest.approx(
        (float(bn["ci_low_pct"]), float(bn["ci_high_pct"])), abs=0.006)
    assert final.index("vs best") < final.index(row)
    # The last line: the command that writes the report, which works as printed.
    last = result.stdout.rstrip().splitlines()[-1]
    assert last == f"report: ninsweep report {experiment}"
    assert main([*last.split()[2:], "-o", str(tmp_path / "report")]) == 0  # not into the shared one
    report = (tmp_path / "report" / "report.md").read_text()
    assert "### Main effects" in report and "true vs false" in report


# What Ray prints on its own, and must now find only in the log files.
RAY_DRIVER_LINES = ("Configuration for experiment", "View detailed results here",
                    "Token authentication")
RAY_WORKER_LINES = ("Checkpoint successfully created", "data: ")
RAY_CONSOLE_MARKS = RAY_DRIVER_LINES + RAY_WORKER_LINES + (
    "(ninsweep_trial pid=", "repeated", "tensorboard --logdir", "WARNING", "ERROR")


def check_console_is_ours(result) -> None:
    """Only ninsweep's lines: no escape, nothing of Ray's; progress lines carry our time."""
    assert "\x1b" not in result.stdout + result.stderr
    for mark in RAY_CONSOLE_MARKS:
        assert mark not in result.stdout + result.stderr, mark
    progress_lines = result.stdout.split("\n\n")[0].splitlines()
    # Timestamped lines, and the rows of the periodic status table (under a "status" line).
    foreign = [line for line in progress_lines
               if not re.match(r"\[\d\d:\d\d:\d\d\] |trial +status|[\w.-]+-s\d+ +(pending|running|"
                               r"finished|incomplete|error) ", line)]
    assert progress_lines and not foreign, foreign


@needs_netns
def test_smoke_sweep_console_has_only_our_lines_and_the_logs_hold_rays(smoke_experiment):
    experiment, result, _ = smoke_experiment
    assert result.returncode == 0
    check_console_is_ours(result)
    final = result.stdout.split("trials finished", 1)[1]
    assert final.count("trial  ") == 1 and final.count("ELU+BN+WI") == 1  # each table once
    assert "TERMINATED" not in result.stdout
    driver_log = (experiment / "driver.log").read_text()
    assert all(line in driver_log for line in RAY_DRIVER_LINES)
    for trial_dir in (p for p in experiment.iterdir() if (p / "params.json").exists()):
        trial_log = (trial_dir / "trial.log").read_text()
        assert all(line in trial_log for line in RAY_WORKER_LINES), trial_dir.name


@needs_netns
def test_quiet_resume_of_a_finished_sweep_prints_only_the_final_tables(smoke_experiment,
                                                                        tmp_path):
    experiment, result, _ = smoke_experiment
    assert result.returncode == 0
    resumed = ninsweep("resume", experiment, "--quiet", env=cli_env(tmp_path), timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.stderr == "" and "\x1b" not in resumed.stdout
    assert resumed.stdout.lstrip().startswith("20/20 trials finished")
    assert not re.search(r"^\[\d\d:\d\d:\d\d\] ", resumed.stdout, re.M)  # no progress line
    assert all(mark not in resumed.stdout for mark in RAY_CONSOLE_MARKS)
    assert (experiment / "driver.log").read_text().count("==== ") == 2  # run, then resume


@needs_netns
@pytest.mark.slow
def test_resume_past_a_tune_snapshot_cut_short_trains_no_epoch_again(smoke_experiment, tmp_path):
    """A driver killed while Tune copied its trial snapshot leaves it cut short, and
    Tuner.restore then loses every trial (CI, 2026-12-02: "Can't return results as experiment
    has not been run"). Resume sets it aside and starts from the manifest: each trial
    continues from its own newest state, so a finished sweep trains nothing."""
    import shutil

    source, result, _ = smoke_experiment
    assert result.returncode == 0
    experiment = Path(shutil.copytree(source, tmp_path / "smoke"))
    # Every snapshot cut (an earlier test's resume of the shared sweep may have added one):
    # with any whole one left, Tune would read that instead.
    snapshots = sorted(experiment.glob("experiment_state-*.json"))
    cuts = {}
    for snapshot in snapshots:
        cuts[snapshot] = snapshot.read_bytes()[:200]
        snapshot.write_bytes(cuts[snapshot])
    trained = {d.name: reported_records(d) for d in experiment.iterdir()
               if (d / "result.json").exists()}
    assert len(trained) == 20

    resumed = ninsweep("resume", experiment, env=cli_env(tmp_path), timeout=300)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert "20/20 trials finished, 0 errored" in resumed.stdout
    for snapshot in snapshots:
        assert f"{snapshot.name}: Tune's snapshot does not parse" in resumed.stdout
    assert "no readable Tune snapshot of the trials; starting the sweep from its manifest" \
        in resumed.stdout
    assert "Traceback" not in output
    for snapshot, cut in cuts.items():
        assert Path(f"{snapshot}.unreadable").read_bytes() == cut  # set aside, not deleted
    for name, records in trained.items():
        # The history before is kept beside; the new one holds the same epochs, each
        # re-reported from the checkpoint (replayed), none trained again.
        kept, = (experiment / name).glob("result.json.before-*")
        assert kept.read_bytes() == (source / name / "result.json").read_bytes()
        now = reported_records(experiment / name)
        assert all(r.get(M.REPLAYED) for r in now), name
        assert [(r[M.EPOCH], r[M.TEST_ACC]) for r in now] == \
            [(r[M.EPOCH], r[M.TEST_ACC]) for r in records], name


@needs_netns
@pytest.mark.slow
def test_extend_adds_seeds_without_touching_the_finished_trials(smoke_experiment, tmp_path):
    """`ninsweep extend --seeds 3` on the finished smoke sweep: ten new trials (seed 2) run
    in the same experiment; every file of the old trials keeps its bytes; status, the config
    table (n = 2, paired by seed) and resume see one experiment."""
    import shutil

    source, result, _ = smoke_experiment
    assert result.returncode == 0
    experiment = Path(shutil.copytree(source, tmp_path / "smoke"))
    old = {p.relative_to(experiment): p.read_bytes() for p in experiment.rglob("*")
           if p.is_file() and p.parts[len(experiment.parts)].endswith(("-s0", "-s1"))}
    assert len({p.parts[0] for p in old}) == 20
    extended = ninsweep("extend", experiment, "--seeds", "3", env=cli_env(tmp_path), timeout=400)
    assert extended.returncode == 0, (extended.stdout + extended.stderr)[-3000:]
    assert "10/10 trials finished, 0 errored" in extended.stdout
    assert {p: (experiment / p).read_bytes() for p in old} == old  # the old trials untouched
    assert (experiment / "ninsweep-extend-1.json").is_file()
    assert (experiment / "tuner-before-extend-1.pkl").is_file()
    status = json.loads(ninsweep("status", experiment, "--json", env=cli_env(tmp_path)).stdout)
    assert status["counts"]["finished"] == 30
    with open(experiment / "results-configs.csv", newline="") as handle:
        assert {int(row["n"]) for row in csv.DictReader(handle)} == {3}
    with open(experiment / "results-effects.csv", newline="") as handle:
        assert any(row["paired"] == "True" for row in csv.DictReader(handle))
    resumed = ninsweep("resume", experiment, "--quiet", env=cli_env(tmp_path), timeout=300)
    assert resumed.returncode == 0 and "10/10 trials finished" in resumed.stdout
    assert {p: (experiment / p).read_bytes() for p in old} == old


BLOCK_NINSWEEP = """
import sys
class BlockNinsweep:
    def find_spec(self, name, path=None, target=None):
        if name == "ninsweep" or name.startswith("ninsweep."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, BlockNinsweep())
"""

OPEN_WITH_RAY_ALONE = """
import sys
try:
    import ninsweep
    sys.exit("ninsweep is importable: the test proves nothing")
except ImportError:
    pass
from ray.tune import ExperimentAnalysis, Tuner
path = sys.argv[1]
analysis = ExperimentAnalysis(path)
names = sorted(trial.config["trial"]["name"] for trial in analysis.trials)
frame = analysis.dataframe()
def ninsweep_trial(config):
    pass
grid = Tuner.restore(path, trainable=ninsweep_trial).get_results()
print(len(names), names[0], len(frame), sorted({r.metrics["epoch"] for r in grid}),
      "test_acc" in grid.get_dataframe().columns)
"""


@needs_netns
def test_a_colleague_with_ray_but_without_ninsweep_opens_the_experiment(smoke_experiment,
                                                                        tmp_path):
    """ExperimentAnalysis, Tuner.restore and its ResultGrid: Tune's state must not pickle
    ninsweep's functions or callbacks by reference."""
    experiment, result, _ = smoke_experiment
    assert result.returncode == 0
    (tmp_path / "sitecustomize.py").write_text(BLOCK_NINSWEEP)
    env = {**cli_env(tmp_path), "PYTHONPATH": str(tmp_path)}
    opened = subprocess.run([sys.executable, "-c", OPEN_WITH_RAY_ALONE, str(experiment)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert opened.returncode == 0, opened.stderr[-3000:]
    assert opened.stdout.split() == ["20", "elu-bn-he-s0", "20", "[3]", "True"]


@needs_netns
def test_tensorboard_files_hold_the_epoch_scalars_and_hyperparameters(smoke_experiment):
    experiment, result, _ = smoke_experiment
    assert result.returncode == 0
    for trial_dir in sorted(p for p in experiment.iterdir() if (p / "params.json").exists()):
        events = list(trial_dir.glob("events.out.tfevents.*"))
        assert events, f"{trial_dir.name}: no TensorBoard file"
        scalars, hparams = read_tensorboard(events[0])
        assert len(scalars["accuracy/test"]) == 3 and len(scalars["loss/train"]) == 3
        # Our metrics only, none of Tune's bookkeeping (done, should_checkpoint, ...).
        assert set(scalars) <= set(TENSORBOARD_TAGS.values()), set(scalars)
        # The params that vary between trials: the ablation's factors, and the smoke
        # space's two seeds (a space with one seed has no seed hparam: tests/sweep/test_trackers.py).
        assert hparams == {"activation", "batchnorm", "init", "seed"}


@needs_netns
def test_status_reads_the_experiment_from_disk(smoke_experiment, capsys):
    experiment, result, _ = smoke_experiment
    assert main(["status", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "20 finished" in out and "elu-bn-he-s0" in out and "3/3" in out


@functools.lru_cache(maxsize=None)
def _uninterrupted_history(trial_name: str) -> list[dict]:
    """The same trial trained in this process without Ray: the reference for resume (trained
    once for both interrupt tests: it is deterministic on CPU, and they only read it)."""
    spec = load_space(RESUME_SPACE)
    return Trainer(spec.trial(trial_name).config).fit()


def _assert_resumed_exactly(experiment):
    """Every epoch once in the history, and the same numbers as an uninterrupted run.

    Ray's raw result.json may repeat an epoch when the driver died between writing a result
    and recording its checkpoint (the trial then redoes that epoch); the history ninsweep
    reads keeps the last record of each epoch.
    """
    from ninsweep.analysis import load_history

    spec = load_space(RESUME_SPACE)
    for trial in spec.trials:
        raw = reported_epochs(experiment / trial.name)
        assert sorted(set(raw)) == [1, 2, 3, 4, 5], f"{trial.name}: {raw}"
        assert len(raw) - 5 <= 1, f"{trial.name}: more than the one in-flight epoch redone: {raw}"
        history = load_history(experiment / trial.name)
        assert list(history[M.EPOCH]) == [1, 2, 3, 4, 5]
    ours = load_history(experiment / "elu-bn-he-s0").to_dict("records")
    reference = _uninterrupted_history("elu-bn-he-s0")
    for mine, theirs in zip(ours, reference):
        for key in (M.TRAIN_LOSS, M.TRAIN_ACC, M.TEST_LOSS, M.TEST_ACC, M.LR):
            assert mine[key] == theirs[key], (mine[M.EPOCH], key)


def _run_resume_space_until_two_epochs(tmp_path):
    """Start `ninsweep run` on the resume space; return once a trial reported two epochs."""
    env = cli_env(tmp_path)
    experiment = tmp_path / "results" / "resume"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", RESUME_SPACE, "--storage", experiment.parent, env=env, log=log)
    wait_until(lambda: any(len(reported_epochs(d)) >= 2 for d in experiment.glob("*-s0")),
               240, "two epochs of a trial", driver, log)
    return env, experiment, driver, log


@needs_netns
def test_sigkilled_driver_resumes_from_checkpoints_to_identical_results(tmp_path):
    env, experiment, driver, _ = _run_resume_space_until_two_epochs(tmp_path)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    unfinished = [d.name for d in experiment.glob("*-s0") if len(reported_epochs(d)) < 5]
    assert unfinished, "the sweep finished before it could be killed"

    resumed = ninsweep("resume", experiment, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "2/2 trials finished" in resumed.stdout
    check_console_is_ours(resumed)  # no "Failed to fetch metrics", no tune_controller ERROR
    trial_logs = "".join((d / "trial.log").read_text() for d in experiment.glob("*-s0"))
    assert "resumed after epoch" in trial_logs  # not from epoch 0 (the trainable's own line)
    _assert_resumed_exactly(experiment)


@needs_netns
def test_ctrl_c_stops_with_a_resume_hint_and_resume_finishes(tmp_path):
    env, experiment, driver, log = _run_resume_space_until_two_epochs(tmp_path)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(120) == 130, log.read_text()[-3000:]
    output = log.read_text()
    assert f"ninsweep resume {experiment}" in output and "interrupted" in output

    status = ninsweep("status", experiment, env=env, timeout=60)
    assert status.returncode == 0
    assert "incomplete" in status.stdout or "pending" in status.stdout
    interrupted = check_analysable(experiment, tmp_path, expect_trials=2)
    assert interrupted.counts()["finished"] < 2  # marked, not dropped

    resumed = ninsweep("resume", experiment, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _assert_resumed_exactly(experiment)


@needs_netns
def test_gpu_space_on_a_machine_without_gpus_fails_before_any_trial(tmp_path):
    result = ninsweep("run", "lab4", "--storage", tmp_path / "results", env=cli_env(tmp_path),
                      timeout=120)
    assert result.returncode == 2
    assert "no GPUs" in result.stderr and "--gpus-per-trial 0" in result.stderr
    assert not (tmp_path / "results" / "lab4").exists()


def test_schedulability_check_refuses_or_on_autoscaling_clusters_warns(monkeypatch):
    import ray

    from ninsweep.errors import NinsweepError
    from ninsweep.sweep.ray_cluster import check_schedulable

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}},
                                               {"Alive": False, "Resources": {"GPU": 8.0}}])
    spec = load_space(ROOT / "search_spaces" / "lab4.yaml")
    with pytest.raises(NinsweepError, match="no GPUs; run it on CPUs with --gpus-per-trial 0"):
        check_schedulable(spec)
    warnings = []
    check_schedulable(spec, autoscaling=True, log=warnings.append)
    assert len(warnings) == 1 and "waiting for the autoscaler" in warnings[0]
    check_schedulable(spec.with_overrides(gpus_per_trial=0))  # fits the 8-CPU node
    with pytest.raises(NinsweepError, match="no node has 16 CPU"):
        check_schedulable(spec.with_overrides(gpus_per_trial=0, cpus_per_trial=16))
