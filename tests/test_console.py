"""The console and the logs: our lines only, plain text off a terminal, Ray's output in files.

No Ray is started here; the end-to-end checks on a real sweep are in test_sweep.py.
"""

import io
import logging
import os
import subprocess
import sys

import pytest

from ninsweep.console import Console, StepProgress, route_logging
from ninsweep.fmt import clock, first_line
from ninsweep.sweep.logs import DriverLog
from ninsweep.sweep.progress import EtaEstimator, SweepProgress


@pytest.mark.parametrize("seconds,text", [(0, "0:00"), (59.6, "1:00"), (61, "1:01"),
                                          (3600 + 62, "1:01:02"), (-3, "0:00")])
def test_duration(seconds, text):
    assert clock(seconds) == text


def test_first_line_skips_blank_lines_and_cuts_long_ones():
    assert first_line("\n\n  boom: it broke \nsecond") == "boom: it broke"
    assert first_line("x" * 500, limit=20) == "x" * 17 + "..."
    assert first_line("") == ""


def test_console_off_a_terminal_writes_plain_lines_and_quiet_keeps_only_errors():
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    console.line("epoch 1")
    console.text("final table")
    console.error("it failed")
    assert "\x1b" not in out.getvalue() + err.getvalue()
    assert out.getvalue().splitlines()[0].endswith("] epoch 1")
    assert out.getvalue().splitlines()[1] == "final table" and err.getvalue() == "it failed\n"

    out, err = io.StringIO(), io.StringIO()
    quiet = Console(out, err, quiet=True)
    quiet.line("epoch 1")
    quiet.text("final table")
    quiet.error("it failed")
    assert out.getvalue() == "final table\n" and err.getvalue() == "it failed\n"


def test_output_to_file_takes_the_descriptors_of_child_processes_and_loggers_too(tmp_path):
    """What the driver relies on: C++ loggers and subprocesses write to fd 1/2 directly."""
    log = tmp_path / "logs" / "driver.log"
    script = f"""
import logging, os, subprocess, sys
from ninsweep.console import Console
from ninsweep.sweep.logs import output_to_file
console = Console()
handler = logging.StreamHandler(sys.stderr)  # bound before the redirect, as Ray's are
logging.getLogger("ray").addHandler(handler)
with output_to_file({str(log)!r}, header="test"):
    print("python print")
    os.write(2, b"raw fd 2\\n")
    subprocess.run(["echo", "child process"])
    logging.getLogger("ray").warning("ray logger")
    console.line("our line")
print("after the block")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[0].endswith("] our line")
    assert result.stdout.splitlines()[1] == "after the block"
    text = log.read_text()
    for line in ("test", "python print", "raw fd 2", "child process", "ray logger"):
        assert line in text
    assert "our line" not in text and "after the block" not in text


def test_driver_log_moves_into_the_experiment_once_it_exists(tmp_path):
    experiment = tmp_path / "exp"
    with DriverLog("ninsweep run test") as log:
        os.write(1, b"before the manifest\n")
        early = log.path
        experiment.mkdir()
        log.move_into(str(experiment))
        os.write(2, b"after the manifest\n")
    assert not os.path.exists(early)
    assert log.path == str(experiment / "driver.log")
    text = (experiment / "driver.log").read_text()
    assert text.index("before the manifest") < text.index("after the manifest")


def test_diagnostics_go_through_logging_and_the_cli_routes_them_to_stderr():
    err = io.StringIO()
    logger = logging.getLogger("ninsweep")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        route_logging(err)
        logging.getLogger("ninsweep.test").warning("a diagnostic")
        logging.getLogger("ninsweep.test").info("not at the default level")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert err.getvalue() == "ninsweep: WARNING: a diagnostic\n"


def test_eta_counts_epochs_and_trial_starts_shared_by_the_trials_running_at_once():
    eta = EtaEstimator()
    assert eta.seconds_left(10, 3) is None  # nothing measured yet
    eta.trial_started("a", now=0.0)
    eta.trial_started("b", now=0.0)
    eta.running(2)
    eta.trial_reported("a", epoch_time_s=1.0, now=3.0)  # 2 s to start, 1 s an epoch
    eta.trial_reported("b", epoch_time_s=1.0, now=3.0)
    # 6 epochs left of 1 s, and 2 trials still to start at 2 s, over 2 slots.
    assert eta.seconds_left(remaining_epochs=6, unstarted_trials=2) == pytest.approx(5.0)
    eta.trial_reported("a", epoch_time_s=3.0, now=6.0)  # later epochs count; no new start
    assert eta.seconds_left(remaining_epochs=2, unstarted_trials=0) == pytest.approx(5 / 3)


class FakeTrial:
    def __init__(self, name, status="PENDING", epoch=0):
        self.config = {"trial": {"name": name}}
        self.status = status
        self.last_result = {"epoch": epoch} if epoch else {}
        self.path = "/nonexistent"


def test_progress_counts_a_trial_done_at_its_last_epoch_in_ninsweeps_words():
    out = io.StringIO()
    progress = SweepProgress(Console(out, io.StringIO()), {"a": 2, "b": 2, "c": 2})
    a, b = FakeTrial("a", "RUNNING"), FakeTrial("b", "RUNNING")
    progress.on_trial_start(0, [a, b], a)
    progress.on_trial_start(0, [a, b], b)
    progress.on_trial_result(0, [a, b], a, {"epoch": 1, "epoch_time_s": 1.0})
    progress.on_trial_result(0, [a, b], a, {"epoch": 2, "epoch_time_s": 1.0})
    last = out.getvalue().splitlines()[-1]
    assert "a: epoch 2/2" in last and "1/3 done, 1 running" in last  # not one behind
    progress.on_trial_complete(0, [a, b], a)
    table = progress.table()
    assert "TERMINATED" not in table and "RUNNING" not in table
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["finished", "running",
                                                                    "pending"]
    assert "\x1b" not in out.getvalue()


def test_train_progress_within_an_epoch_off_a_terminal_is_plain_periodic_lines():
    out = io.StringIO()
    steps = StepProgress(Console(out, io.StringIO()), epoch_of=lambda: 3, every_s=0.0)
    for step in range(1, 5):
        steps(step, 4)
    lines = out.getvalue().splitlines()
    # every step but the last (the epoch's own line follows it), as plain text
    assert [line.split("] ", 1)[1].split(",")[0] for line in lines] == \
        ["epoch 3: step 1/4 (25%)", "epoch 3: step 2/4 (50%)", "epoch 3: step 3/4 (75%)"]
    assert "\x1b" not in out.getvalue()


def test_trainer_calls_the_step_callback_after_every_training_step():
    from ninsweep.config import TrialConfig
    from ninsweep.core.train import Trainer

    cfg = TrialConfig.from_dict({
        "data": {"source": "synthetic", "synthetic_train_size": 96, "synthetic_test_size": 32,
                 "synthetic_image_size": 8},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1}})
    calls = []
    Trainer(cfg).fit(on_step=lambda step, steps: calls.append((step, steps)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_a_library_user_gets_the_trainers_notes_through_logging(caplog):
    from ninsweep.config import TrialConfig
    from ninsweep.core.train import Trainer

    cfg = TrialConfig.from_dict({
        "data": {"source": "synthetic", "synthetic_train_size": 64, "synthetic_test_size": 32,
                 "synthetic_image_size": 8},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1}})
    with caplog.at_level(logging.INFO, logger="ninsweep"):
        Trainer(cfg)
    assert any(record.name == "ninsweep.train" and record.getMessage().startswith("data: ")
               for record in caplog.records)


def test_a_failed_trial_is_named_on_stderr_with_its_exception_and_log_files(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    progress = SweepProgress(Console(out, err, quiet=True), {"a": 2})
    trial = FakeTrial("a", "ERROR")
    trial.path = str(tmp_path / "a")
    trial.error_file = str(tmp_path / "staging-error.txt")
    (tmp_path / "staging-error.txt").write_text(
        "Failure # 1\nTraceback (most recent call last):\n  ...\nValueError: bad batch\n")
    progress.on_trial_error(0, [trial], trial)
    line = err.getvalue()
    assert "a: error: ValueError: bad batch" in line
    assert str(tmp_path / "a" / "trial.log") in line and "\x1b" not in line
    assert out.getvalue() == ""  # --quiet: errors only
    assert progress.counts()["error"] == 1


def test_a_driver_log_that_never_reached_an_experiment_leaves_nothing_behind():
    with DriverLog("ninsweep run refused") as log:
        pass  # e.g. the experiment already exists: refused before Ray starts
    assert not os.path.exists(log.path)
