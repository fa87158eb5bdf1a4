"""The searcher behind ``tune:`` without Ray running: what it hands out, when, and what it
chooses (on the validation split only), across a save and restore."""

from __future__ import annotations

import math

import pytest
from ray.tune.search import Searcher

from ninsweep.space import parse_space
from ninsweep.sweep.staged import StagedSearcher, choose

SPACE = """\
grid:
  - activation: [relu, elu]
    batchnorm: [true]
    init: [he]
seeds: [0, 1]
data: {source: synthetic, val_size: 32, synthetic_train_size: 128, synthetic_test_size: 32,
       synthetic_image_size: 16}
train: {epochs: 4, batch_size: 32}
tune: {budget: 3, epochs: 2, keys: {train.lr: {loguniform: [0.003, 0.1]}}}
"""


def searcher() -> StagedSearcher:
    return StagedSearcher(parse_space(SPACE, "space.yaml"))


def hand_out(s: StagedSearcher, start: int, count: int) -> dict[str, dict]:
    out = {}
    for i in range(start, start + count):
        suggestion = s.suggest(f"id{i}")
        assert isinstance(suggestion, dict), (i, suggestion)
        out[f"id{i}"] = suggestion["trial"]
    return out


def test_finals_wait_for_their_cell_and_run_at_the_value_its_validation_score_chose(tmp_path):
    s = searcher()
    tuning = hand_out(s, 0, 6)
    assert [t["name"] for t in tuning.values()] == [
        f"{a}-bn-he-tune{i}-s0" for a in ("relu", "elu") for i in range(3)]
    assert s.suggest("id6") is None  # no cell has ended its tuning: nothing yet
    lrs = [t["tuned"]["train.lr"] for t in tuning.values()][:3]
    # The right value differs by cell: relu is best at draw 0, elu at draw 2, and the test
    # set would say the opposite; the choice must follow the validation split.
    val = {"relu": [0.9, 0.5, 0.1], "elu": [0.1, 0.5, 0.9]}
    for trial_id, trial in tuning.items():
        act, draw = trial["params"]["activation"], int(trial["name"].split("tune")[1][0])
        if act == "relu":
            s.on_trial_complete(trial_id, {"val_acc": val[act][draw], "test_acc": 1 - val[act][draw]})
    finals = hand_out(s, 6, 2)  # relu's two seeds, elu still tuning
    assert [t["name"] for t in finals.values()] == ["relu-bn-he-s0", "relu-bn-he-s1"]
    assert all(t["tuned"] == {"train.lr": lrs[0]} and t["config"]["train"]["lr"] == lrs[0]
               and t["config"]["train"]["epochs"] == 4 and t["chosen_from"] == "relu-bn-he-tune0-s0"
               for t in finals.values())
    assert s.suggest("id8") is None

    # Saved and restored (as a resume does): nothing handed out twice, the scores kept.
    path = tmp_path / "searcher-state.json"
    s.save(str(path))
    again = searcher()
    again.restore(str(path))
    for trial_id, trial in tuning.items():
        if trial["params"]["activation"] == "elu":
            draw = int(trial["name"].split("tune")[1][0])
            again.on_trial_complete(trial_id, {"val_acc": val["elu"][draw],
                                               "test_acc": 1 - val["elu"][draw]})
    finals = hand_out(again, 8, 2)
    assert [t["name"] for t in finals.values()] == ["elu-bn-he-s0", "elu-bn-he-s1"]
    assert all(t["tuned"] == {"train.lr": lrs[2]} for t in finals.values())
    assert again.suggest("id10") == Searcher.FINISHED


def test_a_cell_whose_tuning_all_failed_ends_its_finals_with_one_line():
    s = searcher()
    tuning = hand_out(s, 0, 6)
    for trial_id in tuning:
        s.on_trial_complete(trial_id, error=True)
    final = s.suggest("id6")["trial"]
    assert final["no_choice"].startswith("no tuning trial of this cell reported val_acc")
    assert final["tuned"] == {}


@pytest.mark.parametrize("scores, mode, chosen", [
    ({"a": 0.2, "b": 0.7, "c": 0.7}, "max", "b"),  # the first of equals
    ({"a": 0.2, "b": 0.7, "c": None}, "min", "a"),
    ({"a": None, "b": float("nan")}, "max", None),
])
def test_choose_takes_the_best_score_and_skips_missing_ones(scores, mode, chosen):
    assert choose(scores, mode) == chosen


OPTUNA_SPACE = SPACE.replace("activation: [relu, elu]", "activation: [relu]").replace(
    "tune: {budget: 3, epochs: 2,", "tune: {algorithm: optuna, budget: 24, seed: 1, epochs: 2,")


def peak_at(lr: float, best: float = 0.02) -> float:
    """A validation score with a known optimum: highest at lr = best, in log space."""
    return 0.9 - (math.log10(lr) - math.log10(best)) ** 2


def run_study(s: StagedSearcher, start: int, stop: int) -> list[float]:
    asked = []
    for i in range(start, stop):
        trial = s.suggest(f"id{i}")["trial"]
        lr = trial["tuned"]["train.lr"]
        assert trial["config"]["train"]["lr"] == lr and 0.003 <= lr <= 0.1
        asked.append(lr)
        s.on_trial_complete(f"id{i}", {"val_acc": peak_at(lr), "test_acc": 1 - peak_at(lr)})
    return asked


def test_optuna_tuning_recovers_a_known_optimum_and_a_resumed_study_asks_what_it_would_have(tmp_path):
    pytest.importorskip("optuna")
    spec = parse_space(OPTUNA_SPACE, "space.yaml")
    assert [t.tuned for t in spec.trials if t.stage == "tune"] == [{}] * 24  # asked at run time
    uninterrupted = run_study(StagedSearcher(spec), 0, 24)
    best = max(uninterrupted, key=peak_at)
    assert abs(math.log10(best / 0.02)) < 0.1  # within 26% of the optimum
    # TPE learns: its later asks are closer to the optimum than its random start.
    assert sum(map(peak_at, uninterrupted[12:])) > sum(map(peak_at, uninterrupted[:12]))

    # Killed after 10 and resumed from the saved state: the study continues from the same
    # history, so it asks exactly what the uninterrupted one asked; nothing is handed out twice.
    first = StagedSearcher(spec)
    before = run_study(first, 0, 10)
    first.save(str(tmp_path / "state.json"))
    resumed = StagedSearcher(spec)
    resumed.restore(str(tmp_path / "state.json"))
    after = run_study(resumed, 10, 24)
    assert before + after == uninterrupted
    final = resumed.suggest("id24")["trial"]
    assert final["name"] == "relu-bn-he-s0" and final["tuned"] == {"train.lr": best}


def test_default_trials_fill_the_wait_for_tuning_and_run_at_the_default():
    s = StagedSearcher(parse_space(SPACE.replace("epochs: 2,", "epochs: 2, default: true,"),
                                   "space.yaml"))
    hand_out(s, 0, 6)  # the tuning trials
    waiting = hand_out(s, 6, 4)  # no cell has ended: the default trials come meanwhile
    assert [t["name"] for t in waiting.values()] == [
        "relu-bn-he-default-s0", "elu-bn-he-default-s0", "relu-bn-he-default-s1",
        "elu-bn-he-default-s1"]
    assert all(t["config"]["train"]["lr"] == 0.1 for t in waiting.values())
    assert s.suggest("id10") is None
