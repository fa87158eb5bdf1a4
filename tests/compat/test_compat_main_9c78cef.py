"""An experiment written by main 9c78cef (the last flat layout) keeps working.

``fixtures/main-9c78cef/compat`` is a real run of ``compat.yaml`` beside it (two synthetic
trials, 2 epochs, finished) at main 9c78cef, before the package moved into layer folders:
its manifest, Ray's trial directories, Tune's own state (``tuner.pkl`` names the module
``ninsweep.tracking`` for its callbacks; ``experiment_state-*.json`` pickles the trials) and
the CSVs that ``run`` wrote at its end. Only the checkpoints were removed (8 MB each).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ray_support import cli_env, needs_netns, ninsweep

from ninsweep.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "main-9c78cef" / "compat"
TRIALS = ("elu-bn-keras-lr0.05-s0", "relu-bn-keras-lr0.05-s0")
CSVS = ("results.csv", "results-configs.csv", "results-effects.csv")


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "compat"))


def test_status_reads_it(experiment, capsys):
    assert main(["status", str(experiment), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"finished": 2, "stopped": 0, "incomplete": 0, "error": 0, "pending": 0, "skipped": 0}
    assert [t["trial"] for t in status["trials"]] == list(TRIALS)


def test_export_writes_the_csvs_that_main_9c78cef_wrote(experiment, capsys):
    # The CSVs in the fixture came from that version's end-of-run export: every column a
    # script reads, and every number, must come out the same.
    for name in CSVS:
        (experiment / name).unlink()
    assert main(["export", str(experiment)]) == 0
    for name in CSVS:
        assert (experiment / name).read_bytes() == (FIXTURE / name).read_bytes(), name


def test_report_reads_it(experiment, capsys):
    assert main(["report", str(experiment)]) == 0
    text = (experiment / "report" / "report.md").read_text()
    assert "ELU+BN train.lr=0.05" in text and "ReLU+BN train.lr=0.05" in text


@needs_netns
def test_resume_restores_its_tune_state(experiment, tmp_path):
    before = {name: (experiment / name / "result.json").read_bytes() for name in TRIALS}
    done = ninsweep("resume", experiment, "-q", env=cli_env(tmp_path), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/2 trials finished, 0 errored" in done.stdout
    # Nothing retrained: each trial's history is the bytes that main 9c78cef wrote.
    assert {name: (experiment / name / "result.json").read_bytes() for name in TRIALS} == before
