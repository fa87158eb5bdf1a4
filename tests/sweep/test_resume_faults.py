"""Resume that loses no work, and faults that end in one line (issue 9, resume half).

Without Ray: the pre-flight checks of a space's trials, finding the newest checkpoint that
loads (falling back past damaged ones), ``status`` showing checkpointed progress, and the
removal of killed processes' staging directories.

With Ray (inside tests/run.sh's loopback namespace): the driver SIGKILLed after checkpoints
Tune's snapshot has not registered, then checkpoints truncated and deleted; SIGKILL before
the first report, SIGTERM, a deleted trial directory; a trial whose data cannot be decoded.
Every check is on what is on disk afterwards: which epochs each trial trained, and when.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from ray_support import (
    FAULT_SPACE,
    cli_env,
    descendants,
    kill_pids,
    needs_netns,
    ninsweep,
    reported_records,
    start_ninsweep,
    wait_until,
    write_images,
    write_space,
)

from ninsweep import metrics as M
from ninsweep.cli.results import finish_sweep
from ninsweep.core.checkpoint import load_checkpoint
from ninsweep.core.train import Trainer
from ninsweep.space import load_space
from ninsweep.storage import list_states

TRIALS = ("elu-bn-he-s0", "relu-bn-he-s0")
EPOCHS = 6








# -- pre-flight: before Ray starts ----------------------------------------------------------











# -- the newest checkpoint that loads -------------------------------------------------------













# -- staging directories of killed processes --------------------------------------------------



# -- with Ray: the driver killed, checkpoints damaged, SIGTERM, a trial that cannot run -------

def _loadable(trial_dir: Path) -> list:
    """The trial's states on storage that load, newest epoch first."""
    found = []
    for state in list_states(str(trial_dir)):
        try:
            load_checkpoint(state.path)
        except Exception:
            continue
        found.append(state)
    return found


def _newest_epoch(trial_dir: Path) -> int:
    return max((s.epoch for s in list_states(str(trial_dir))), default=0)


def _epochs_trained_since(records: list[dict]) -> list[int]:
    """The epochs these result records trained (a replayed record was not trained)."""
    return [r[M.EPOCH] for r in records if not r.get(M.REPLAYED)]


def _assert_finished_intact(experiment: Path, tmp_path: Path) -> None:
    """Every trial has epochs 1..6 in its history and a newest state that loads at epoch 6."""
    from ninsweep.analysis import load_history

    for name in TRIALS:
        assert list(load_history(experiment / name)[M.EPOCH]) == list(range(1, EPOCHS + 1)), name
        newest = _loadable(experiment / name)[0]
        assert newest.epoch == EPOCHS and load_checkpoint(newest.path)["epoch"] == EPOCHS


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
def test_resume_continues_from_the_newest_checkpoint_past_damaged_ones(tmp_path):
    """SIGKILL the driver once both trials have 3+ checkpoints, which Tune's snapshot lags
    (it is forced only every `keep` checkpoints here); truncate one trial's newest state and
    delete every checkpoint but the newest of the other (Tune's registered one with them).
    Resume continues each from the newest state that loads and trains no epoch it covers."""
    from concurrent.futures import ThreadPoolExecutor

    # The uninterrupted reference run (CPU, in this process) trains while Ray starts and the
    # trials run: both cores are seldom busy then, so it costs little wall time there.
    reference_pool = ThreadPoolExecutor(max_workers=1)
    reference_run = reference_pool.submit(
        lambda: Trainer(load_space(FAULT_SPACE).trial("relu-bn-he-s0").config).fit())
    try:
        _resume_past_damaged_checkpoints(tmp_path, reference_run)
    finally:
        reference_pool.shutdown(wait=True)


def _resume_past_damaged_checkpoints(tmp_path: Path, reference_run) -> None:
    from ninsweep.analysis import load_history

    env = cli_env(tmp_path)
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "100000"  # no timed snapshots during the run
    experiment = tmp_path / "results" / "fault"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", FAULT_SPACE, "--storage", experiment.parent, env=env, log=log)
    wait_until(lambda: all(_newest_epoch(experiment / t) >= 3 for t in TRIALS), 300,
               "three checkpoints of each trial", driver, log)
    ray_processes = descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    # Ray's processes outlive the killed driver (for ~30 s here), and a trial's worker may
    # checkpoint another epoch meanwhile: end them too, so that the checkpoints read and
    # damaged below are the ones the resume finds.
    kill_pids(ray_processes)

    elu, relu = (experiment / t for t in TRIALS)
    elu_states, relu_states = _loadable(elu), _loadable(relu)
    assert elu_states[0].epoch < EPOCHS and relu_states[0].epoch < EPOCHS, "finished too soon"
    truncated = Path(elu_states[0].path)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    elu_from = elu_states[1].epoch
    relu_from = relu_states[0].epoch
    for checkpoint in relu.glob("checkpoint_*"):
        if checkpoint.name != relu_states[0].checkpoint_dir:
            shutil.rmtree(checkpoint)
    logged = {t: len(reported_records(experiment / t)) for t in TRIALS}
    last_logged = {t: max([0, *(r[M.EPOCH] for r in reported_records(experiment / t))])
                   for t in TRIALS}

    resumed = ninsweep("resume", experiment, env=env, timeout=500)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    assert "2/2 trials finished, 0 errored" in resumed.stdout
    assert "Traceback" not in output and "Could not recover" not in output
    # The trainables' own lines are in their trial logs (the console holds ninsweep's only).
    trial_logs = "".join((experiment / t / "trial.log").read_text() for t in TRIALS)
    # "relu-bn-he-s0: resumed" contains "elu-bn-he-s0: resumed": match the whole name.
    elu_line = next(line for line in trial_logs.splitlines()
                    if re.search(r"(^|[\s)])elu-bn-he-s0: resumed", line))
    assert f"resumed after epoch {elu_from} from {elu_states[1].label}" in elu_line
    assert f"skipped damaged {elu_states[0].label}: unreadable or corrupt" in elu_line
    assert f"relu-bn-he-s0: resumed after epoch {relu_from} from {relu_states[0].label}" in \
        trial_logs
    # The fall-back reaches the console too, as the trial wrote it (issue 23).
    assert re.search(rf"(^|[\s)])elu-bn-he-s0: resumed after epoch {elu_from} from "
                     rf"{re.escape(elu_states[1].label)} \(skipped damaged "
                     rf"{re.escape(elu_states[0].label)}: unreadable or corrupt", resumed.stdout)

    for name, start in (("elu-bn-he-s0", elu_from), ("relu-bn-he-s0", relu_from)):
        after = reported_records(experiment / name)[logged[name]:]
        # Epochs trained again after the fall-back, already in result.json, are not
        # reported again (issue 23: the history holds each epoch once, for Ray and pandas).
        first = max(start, last_logged[name]) + 1
        assert _epochs_trained_since(after) == list(range(first, EPOCHS + 1)), (name, after)
        assert all(r[M.EPOCH] <= start for r in after if r.get(M.REPLAYED))
    # Every epoch once in result.json and progress.csv, the fallen-back trial's included.
    for trial in (elu, relu):
        assert sorted(r[M.EPOCH] for r in reported_records(trial)) == list(range(1, EPOCHS + 1))
        with open(trial / "progress.csv") as rows:
            epochs = [int(float(row[M.EPOCH])) for row in csv.DictReader(rows)]
        assert sorted(epochs) == list(range(1, EPOCHS + 1)), (trial.name, epochs)
    _assert_finished_intact(experiment, tmp_path)

    # Bit-identical to an uninterrupted run (CPU), though restored from an odd checkpoint.
    reference = reference_run.result()
    for mine, theirs in zip(load_history(relu).to_dict("records"), reference):
        for key in (M.TRAIN_LOSS, M.TEST_LOSS, M.TEST_ACC, M.LR):
            assert mine[key] == theirs[key], (mine[M.EPOCH], key)


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
def test_kill_before_any_report_sigterm_and_deleted_trial_directories(tmp_path):
    """SIGKILL before the first report, then a resume stopped by SIGTERM (exit 143, the
    resume command), an unfinished trial's directory deleted (it runs again from epoch 1), a
    finished trial's directory deleted (resume refuses: it cannot rerun a finished trial)."""
    import yaml

    from ninsweep.analysis import load_history

    # The fault space, but its data comes from a factory that waits until the test opens a
    # gate (a file), which it does only after the SIGKILL (afterwards the data cache
    # answers): on an idle machine an epoch of this space takes well under a second, so
    # without it "before the first report" is a race. A gate rather than a fixed sleep: the
    # first run cannot report however slow the machine, and the resume does not wait.
    gate = tmp_path / "gate-open"
    (tmp_path / "slow_start.py").write_text(textwrap.dedent(f"""\
        import time
        from pathlib import Path
        from ninsweep.config import DataConfig
        from ninsweep.core.data import load_data

        def load(gate, limit_s=600):
            deadline = time.monotonic() + limit_s
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            cfg = DataConfig(**{yaml.safe_load(FAULT_SPACE.read_text())["data"]!r},
                             cache_dir={str(tmp_path / "factory-source")!r})
            data = load_data(cfg)
            return ((data.train_images, data.train_labels),
                    (data.test_images, data.test_labels))
        """))
    space = yaml.safe_load(FAULT_SPACE.read_text())
    space["data"] = {"factory": "slow_start:load", "factory_kwargs": {"gate": str(gate)}}
    space_file = write_space(tmp_path, yaml.safe_dump(space), "fault.yaml")

    env = cli_env(tmp_path)
    experiment = tmp_path / "results" / "fault"
    log = tmp_path / "run.log"
    driver = start_ninsweep("run", space_file, "--storage", experiment.parent, env=env, log=log)
    wait_until(lambda: any((experiment / t / "params.json").exists() for t in TRIALS), 300,
               "a trial to start", driver, log)
    # The driver and every Ray process it started, at once (a crash of its machine): a
    # worker left running would go on to report and checkpoint its first epoch.
    kill_pids([driver.pid, *descendants(driver.pid)])
    driver.wait(30)
    assert not any(list_states(str(experiment / t)) for t in TRIALS), "a checkpoint came first"
    gate.touch()

    resume_log = tmp_path / "resume.log"
    resuming = start_ninsweep("resume", experiment, env=env, log=resume_log)
    wait_until(lambda: any(len(_epochs_trained_since(reported_records(experiment / t))) >= 2
                           for t in TRIALS), 300, "two epochs after resume", resuming, resume_log)
    resuming.send_signal(signal.SIGTERM)
    assert resuming.wait(120) == 143, resume_log.read_text()[-3000:]
    output = resume_log.read_text()
    assert "stopped by SIGTERM" in output and f"ninsweep resume {experiment}" in output
    assert "Traceback" not in output
    for name in TRIALS:  # nothing retrained from epoch 1 after the SIGKILL
        epochs = _epochs_trained_since(reported_records(experiment / name))
        assert epochs == list(range(1, len(epochs) + 1)), (name, epochs)

    progress = {t: _newest_epoch(experiment / t) for t in TRIALS}
    assert all(epoch < EPOCHS for epoch in progress.values()), progress
    victim, survivor = sorted(TRIALS, key=lambda t: progress[t])
    shutil.rmtree(experiment / victim)
    logged = len(reported_records(experiment / survivor))
    resumed = ninsweep("resume", experiment, env=env, timeout=500)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert "2/2 trials finished" in resumed.stdout
    assert "Traceback" not in resumed.stdout + resumed.stderr
    if progress[victim]:  # its registered checkpoint went with the directory
        assert f"{victim}: Tune's checkpoint" in resumed.stdout
    assert [r[M.EPOCH] for r in reported_records(experiment / victim)] == list(range(1, EPOCHS + 1))
    trained = _epochs_trained_since(reported_records(experiment / survivor)[logged:])
    assert trained == list(range(progress[survivor] + 1, EPOCHS + 1))
    _assert_finished_intact(experiment, tmp_path)

    shutil.rmtree(experiment / survivor)
    refused = ninsweep("resume", experiment, env=env, timeout=300)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"finished trial(s) {survivor} have no directory" in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("ninsweep: error:")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr
    assert list(load_history(experiment / victim)[M.EPOCH]) == list(range(1, EPOCHS + 1))


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
def test_a_trial_that_cannot_run_errors_once_without_retries(tmp_path):
    """A corrupt image (no pre-flight check decodes images) fails each trial's data loading:
    one line per trial, no retries, no traceback, counted as errored, fitting advice."""
    root = tmp_path / "images"
    write_images(root, {"cat": 6, "dog": 6}, size=32)
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    space = write_space(tmp_path, f"""\
        name: broken
        grid:
          - activation: [elu, relu]
        data: {{source: imagefolder, root: {root}}}
        model: {{num_classes: 2}}
        train: {{epochs: 2, batch_size: 4, threads: 1}}
        resources: {{cpus: 1, gpus: 0}}
        failure: {{max_retries: 2}}
        """)
    experiment = tmp_path / "results" / "broken"
    result = ninsweep("run", space, "--storage", experiment.parent, env=cli_env(tmp_path),
                      timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "0/2 trials finished, 2 errored" in result.stdout
    # Once as it happens, once in the closing status table; nothing else names it.
    error_lines = [line for line in output.splitlines() if "broken.png" in line]
    assert len(error_lines) == 4, error_lines
    assert sum("error, not retried" in line for line in error_lines) == 2
    assert sum(line.strip().startswith("error: ") for line in error_lines) == 2
    assert "Traceback" not in output and "failed (attempt" not in output
    assert "2 trials cannot run as configured" in result.stdout
    assert "retry them with" not in result.stdout
    for name in ("elu-nobn-keras-s0", "relu-nobn-keras-s0"):
        text = (experiment / name / "error.txt").read_text()
        assert text.count("\n") == 1 and "cannot decode image" in text
    status = ninsweep("status", experiment, env=cli_env(tmp_path), timeout=60)
    assert "2 error" in status.stdout and "cannot decode image" in status.stdout


# -- SIGTERM, without Ray ---------------------------------------------------------------------

def test_sigterm_acts_as_ctrl_c_and_exits_143(monkeypatch, capsys):
    """While a sweep runs, SIGTERM calls Tune's SIGINT handler (a graceful stop); before
    that, it raises ``Terminated``, which the command reports as exit status 143."""
    from ninsweep import cli
    from ninsweep.errors import Terminated
    from ninsweep.sweep.runner import SweepOutcome, _SigtermAsCtrlC

    calls = []
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with _SigtermAsCtrlC() as sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGINT] and sigterm.received
    finally:
        signal.signal(signal.SIGINT, previous_int)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with _SigtermAsCtrlC():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before  # Ray's, in a real run

    stopped = SweepOutcome("exp", total=2, finished=1, errored=0, wall_time_s=1.0, terminated=True)
    assert stopped.exit_code == 143
    assert finish_sweep(stopped, out=sys.stdout) == 143
    assert "stopped by SIGTERM: 1 trials unfinished; continue with: ninsweep resume exp" in \
        capsys.readouterr().out

    def terminated(args):
        raise Terminated()

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_for(terminated))
    assert cli.main(["status", "x"]) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


def _parser_for(handler):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("experiment")
    parser.set_defaults(handler=handler)
    return parser


def test_config_errors_get_their_own_closing_advice(capsys):
    from ninsweep.sweep.runner import SweepOutcome

    outcome = SweepOutcome("exp", total=3, finished=1, errored=2, wall_time_s=1.0,
                           config_errors=1)
    assert finish_sweep(outcome, out=sys.stdout) == 1
    out = capsys.readouterr().out
    assert "1 trials cannot run as configured" in out
    assert "1 trials failed; retry them with: ninsweep resume exp" in out
    only_config = SweepOutcome("exp", total=1, finished=0, errored=1, wall_time_s=1.0,
                               config_errors=1)
    finish_sweep(only_config, out=sys.stdout)
    assert "retry them" not in capsys.readouterr().out
