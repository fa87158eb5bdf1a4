"""sweep.progress: the console while a sweep runs, in ninsweep's words, and its ETA."""

import io

import pytest

from ninsweep.console import Console
from ninsweep.sweep.progress import EtaEstimator, SweepProgress


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
