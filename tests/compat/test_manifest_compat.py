"""Experiment directories written before the manifest became a schema stay readable.

``fixtures/main-795a84c/fixture`` is a real experiment, cut down: ``ninsweep run
fixture.yaml`` at main 795a84c (the last commit with the hand-written manifest code; two
synthetic trials, 2 epochs), keeping its ``ninsweep.json`` and one trial's ``params.json`` and
``result.json`` exactly as Ray and ninsweep wrote them. The other trial has no directory, so
it reads as pending.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from ninsweep import analysis
from ninsweep.cli import main
from ninsweep.space import MANIFEST_FORMAT, TRIAL_KEY, SweepSpec, TrialSpec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "main-795a84c" / "fixture"
RELU, ELU = "relu-nobn-keras-lr0.05-s0", "elu-nobn-keras-lr0.05-s0"
# Settings added to the trial config since 795a84c: an older manifest reads each at its
# default, and writes it back with it (everything else byte for byte).
ADDED_SINCE = {("data", "synthetic_noise"): 45.0}  # issue 23


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "fixture"))


def test_the_manifest_reads_typed_and_writes_back_byte_for_byte():
    text = (FIXTURE / "ninsweep.json").read_text()
    written = json.loads(text)
    assert written["format"] == MANIFEST_FORMAT
    spec = SweepSpec.from_manifest(written)
    assert spec.trial_names == (RELU, ELU)
    assert spec.trial(ELU).config.model.activation == "elu"
    assert spec.trial(ELU).config.train.lr == 0.05 and spec.trial(ELU).config.train.epochs == 2
    assert spec.resources.cpus == 1.0 and spec.objective == {"metric": "test_acc", "mode": "max"}
    # What sweep.run_sweep writes for the same spec (storage.write_manifest's encoding).
    again = {**spec.to_manifest(), "created": written["created"],
             "experiment_name": written["experiment_name"]}
    assert json.dumps(written, indent=2, sort_keys=True) == text  # the fixture's own encoding
    for trial in written["trials"]:
        for (section, key), default in ADDED_SINCE.items():
            assert key not in trial["config"][section]
            trial["config"][section][key] = default
    assert json.dumps(again, indent=2, sort_keys=True) == json.dumps(written, indent=2, sort_keys=True)


def test_rays_params_json_is_a_trial_spec():
    params = json.loads((FIXTURE / RELU / "params.json").read_text())
    entry = TrialSpec.from_dict(params[TRIAL_KEY])
    manifest = SweepSpec.from_manifest(json.loads((FIXTURE / "ninsweep.json").read_text()))
    assert (entry.name, entry.params, entry.config) == (RELU, manifest.trial(RELU).params,
                                                        manifest.trial(RELU).config)


def test_status_and_export_read_it(experiment, capsys):
    exp = analysis.load_experiment(experiment)
    assert exp.space_name == "fixture" and [t.name for t in exp.trials] == [RELU, ELU]
    assert [t.status for t in exp.trials] == ["finished", "pending"]
    assert exp.trials[0].epochs_done == 2 and exp.trials[1].epochs_planned == 2

    assert main(["status", str(experiment), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"finished": 1, "stopped": 0, "incomplete": 0, "error": 0, "pending": 1, "skipped": 0}
    relu = status["trials"][0]
    assert relu["trial"] == RELU and relu["final_test_acc_pct"] == pytest.approx(12.5)
    assert relu["params"] == {"activation": "relu", "batchnorm": False, "init": "keras",
                              "seed": 0, "train.lr": 0.05}

    assert main(["export", str(experiment), "--per-epoch"]) == 0
    with open(experiment / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["config"], r["status"]) for r in rows] == [
        (RELU, "ReLU train.lr=0.05", "finished"), (ELU, "ELU train.lr=0.05", "pending")]
    with open(experiment / "results-epochs.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    assert [(r["trial"], r["epoch"]) for r in epochs] == [(RELU, "1"), (RELU, "2")]
