"""Adaptive replication's searcher without Ray running: waves of seeds only where a main
effect is undecided, the record it writes, and the same decisions across a save/restore."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ray.tune.search import Searcher

from ninsweep.space import parse_space
from ninsweep.sweep.replicate import ReplicationSearcher, set_log


@pytest.fixture(autouse=True)
def wave_lines():
    """The waves' console lines (the runner points them at its console; an earlier test's
    console may be closed)."""
    lines: list[str] = []
    set_log(lines.append)
    return lines

SPACE = """\
grid:
  - activation: [relu, elu]
    batchnorm: [false, true]
    init: [he]
replication: {min_seeds: 2, max_seeds: 8}
data: {source: synthetic}
train: {epochs: 2}
"""


def accuracy(params: dict, rng: np.random.Generator) -> float:
    """BatchNorm adds 10 points (a real effect); the activation adds nothing."""
    return 0.5 + 0.10 * params["batchnorm"] + rng.normal(0, 0.02)


def run(s: ReplicationSearcher, rng, start: int = 0, stop_after: int = 10_000) -> list[str]:
    """Ask for trials as Tune would (all it can get, then complete them), return the names."""
    names, i = [], start
    while len(names) < stop_after:
        batch = []
        while True:
            suggestion = s.suggest(f"id{i}")
            if not isinstance(suggestion, dict):
                break
            batch.append((f"id{i}", suggestion["trial"]))
            i += 1
        if not batch:
            assert suggestion in (None, Searcher.FINISHED)
            if suggestion == Searcher.FINISHED:
                return names
            raise AssertionError("waiting with nothing running")
        for trial_id, trial in batch:
            s.on_trial_complete(trial_id, {"epoch": 2, "test_acc": accuracy(trial["params"], rng)})
            names.append(trial["name"])
    return names


def test_seeds_go_only_where_an_effect_is_undecided_and_the_record_says_so(tmp_path, wave_lines):
    spec = parse_space(SPACE, "space.yaml")
    s = ReplicationSearcher(spec, str(tmp_path))
    names = run(s, np.random.default_rng(0))
    assert len(names) == len(set(names))  # nothing handed out twice
    record = json.loads((tmp_path / "replication.json").read_text())
    decisions = {d["factor"]: d for d in record["decisions"]}
    assert decisions["batchnorm"]["state"] == "effect" and decisions["batchnorm"]["lo"] > 0
    # activation has no effect: it stays undecided (no target width) up to max_seeds.
    assert decisions["activation"]["state"] == "undecided"
    assert record["finished"] and record["waves"][0] == names[:8]
    seeds = {n: int(n.rsplit("-s", 1)[1]) for n in names}
    assert max(seeds.values()) == 7 and len(names) == 32  # activation's configs reach 8 seeds
    assert record["skipped"] == []
    assert "Lan-DeMets" in record["method"]
    assert wave_lines[0].startswith("replication wave 1: 4 more seed(s) for ELU+BN+WI, ELU+WI, ")
    assert wave_lines[-1] == ("replication done after wave 6: every main effect decided or at 8 "
                              "seeds; 0 trials not needed")


def test_with_a_target_width_a_null_effect_is_decided_negligible_and_seeds_are_saved(tmp_path):
    spec = parse_space(SPACE.replace("max_seeds: 8}", "max_seeds: 8, until: {ci_half_width_pct: 5}}"),
                       "space.yaml")
    s = ReplicationSearcher(spec, str(tmp_path))
    names = run(s, np.random.default_rng(1))
    record = json.loads((tmp_path / "replication.json").read_text())
    states = {d["factor"]: d["state"] for d in record["decisions"]}
    assert states == {"batchnorm": "effect", "activation": "negligible"}
    assert len(names) < 32 and len(record["skipped"]) == 32 - len(names)
    assert set(record["skipped"]).isdisjoint(names)


def test_a_restored_searcher_continues_the_same_waves(tmp_path):
    spec = parse_space(SPACE, "space.yaml")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole = run(ReplicationSearcher(spec, str(tmp_path / "a")), np.random.default_rng(2))
    first = ReplicationSearcher(spec, str(tmp_path / "b"))
    rng = np.random.default_rng(2)
    before = run(first, rng, stop_after=12)  # wave 0 and one more
    first.save(str(tmp_path / "state.json"))
    again = ReplicationSearcher(spec, str(tmp_path / "b"))
    again.restore(str(tmp_path / "state.json"))
    after = run(again, rng, start=len(before))
    assert before + after == whole
