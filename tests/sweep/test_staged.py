"""The searcher behind ``tune:`` without Ray running: what it hands out, when, and what it
chooses (on the validation split only), across a save and restore."""

from __future__ import annotations

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
