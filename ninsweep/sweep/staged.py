"""``tune:`` as one Tune run: a Searcher that hands out stage 1's tuning trials, then each
cell's final trials as soon as that cell's tuning has ended, at the draw it chose.

Tune asks ``suggest`` for trials as resources free up; returning None means "none yet"
(a cell still tuning), ``Searcher.FINISHED`` "no more". The choice reads only the
validation metric the space names (``tune.select_on``) from each tuning trial's last result;
the test set never reaches it. The searcher's state (which trial ids it handed out, the
tuning scores) is saved with every Tune snapshot (``save``, written atomically by Tune) and
loaded by resume (``restore``), so a resumed study hands out no trial twice and keeps every
choice it made. Every trial is named in the manifest before Ray starts; only the final
trials' tuned values are decided here, and each final trial's params.json records them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from ray.tune.search import Searcher

from ninsweep.space.schema import (
    DEFAULT_STAGE,
    FINAL_STAGE,
    SEED,
    TRIAL_KEY,
    TUNE_STAGE,
    SweepSpec,
    TrialSpec,
)
from ninsweep.space.search import SIGNIFICANT_DIGITS, Distribution
from ninsweep.sweep import tune_state


def searcher_of(manifest: dict[str, Any]) -> "StagedSearcher":
    """What a pickled StagedSearcher (in tuner.pkl) loads as: one built from the sweep's
    manifest; Tune then loads the state it saved with its snapshot (``restore``)."""
    return StagedSearcher(SweepSpec.from_manifest(manifest, where="tuner.pkl"))


def cell_of(trial: TrialSpec) -> str:
    """The grid cell a trial belongs to, in both stages: its params without the seed."""
    return json.dumps({k: v for k, v in trial.params.items() if k != SEED}, sort_keys=True)


def choose(scores: dict[str, Optional[float]], mode: str) -> Optional[str]:
    """The tuning trial with the best score (the first of equals, in draw order); None when
    none has one (every one failed or diverged)."""
    best, best_name = None, None
    for name, score in scores.items():
        if score is None or (isinstance(score, float) and math.isnan(score)):
            continue
        if best is None or (score > best if mode == "max" else score < best):
            best, best_name = score, name
    return best_name


class StagedSearcher(Searcher):
    def __init__(self, spec: SweepSpec):
        super().__init__(metric=None, mode=None)
        self.select_on, self.select_mode = spec.tune.select_on, spec.tune.mode
        self.algorithm, self.keys, self.seed = spec.tune.algorithm, spec.tune.keys, spec.tune.seed
        # Tuning trial -> its values: drawn before Ray (random), or asked of its cell's study
        # when handed out (optuna; saved with the rest of the state).
        self.values: dict[str, dict[str, Any]] = {}
        self.tuning = [t for t in spec.trials if t.stage == TUNE_STAGE]
        self._tuning_names = {t.name for t in self.tuning}
        self.final = [t for t in spec.trials if t.stage == FINAL_STAGE]
        self.default = [t for t in spec.trials if t.stage == DEFAULT_STAGE]  # need no choice
        self.cells = {t.name: cell_of(t) for t in spec.trials}
        self.suggested: dict[str, str] = {}  # Tune's trial id -> trial name
        self.scores: dict[str, Optional[float]] = {}  # ended tuning trial -> its select_on
        self._manifest = spec.to_manifest()

    def __reduce__(self):
        # In tuner.pkl: rebuilt from the manifest with ninsweep, Tune's basic searcher without
        # it (a colleague who only reads the results never asks it for trials).
        return (tune_state.load_or_fallback, (__name__, "searcher_of", (self._manifest,),
                                              "ray.tune.search", "BasicVariantGenerator"))

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space fixes what is chosen on; Tune's metric/mode are not used

    # -- the stages ---------------------------------------------------------------------------

    def choice_of(self, cell: str) -> tuple[bool, Optional[TrialSpec]]:
        """(whether the cell's tuning has ended, the tuning trial it chose or None)."""
        trials = [t for t in self.tuning if self.cells[t.name] == cell]
        if any(t.name not in self.scores for t in trials):
            return False, None
        chosen = choose({t.name: self.scores[t.name] for t in trials}, self.select_mode)
        return True, next((t for t in trials if t.name == chosen), None)

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        handed_out = set(self.suggested.values())
        for trial in self.tuning:
            if trial.name not in handed_out:
                self.suggested[trial_id] = trial.name
                values = self.tuned_values(trial)
                return {TRIAL_KEY: with_values(trial, values)}
        waiting = False
        for trial in self.final:
            if trial.name in handed_out:
                continue
            ended, chosen = self.choice_of(self.cells[trial.name])
            if not ended:
                waiting = True
                continue
            self.suggested[trial_id] = trial.name
            return {TRIAL_KEY: final_trial(trial, chosen and self.tuned_values(chosen),
                                           chosen and chosen.name, self.select_on)}
        for trial in self.default:  # while cells still tune, and after
            if trial.name not in handed_out:
                self.suggested[trial_id] = trial.name
                return {TRIAL_KEY: with_values(trial, trial.tuned)}
        return None if waiting else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                          error: bool = False) -> None:
        name = self.suggested.get(trial_id)
        if name not in self._tuning_names or name in self.scores:
            return  # a final or default trial: nothing is chosen from it
        value = None if error or not result else result.get(self.select_on)
        self.scores[name] = float(value) if isinstance(value, (int, float)) else None

    def tuned_values(self, trial: TrialSpec) -> dict[str, Any]:
        if self.algorithm == "random":
            return dict(trial.tuned)
        if trial.name not in self.values:
            self.values[trial.name] = self._ask(self.cells[trial.name])
        return self.values[trial.name]

    def _ask(self, cell: str) -> dict[str, Any]:
        """The cell's study's next values. The study is rebuilt from the cell's ended trials
        (values and scores are this searcher's state): a resumed study continues from the
        same history, where Tune's own restore would start Optuna afresh (ray#30861)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = {k: optuna_distribution(d) for k, d in self.keys.items()}
        asked = [t.name for t in self.tuning if self.cells[t.name] == cell and t.name in self.values]
        # Seeded per ask: the same history gives the same values, the first asks differ.
        study = optuna.create_study(direction="maximize" if self.select_mode == "max" else "minimize",
                                    sampler=optuna.samplers.TPESampler(seed=self.seed + len(asked)))
        for name in asked:
            if name not in self.scores:
                continue  # still running: asked, not scored
            score = self.scores[name]
            study.add_trial(optuna.trial.create_trial(
                params=self.values[name], distributions=distributions,
                **({"value": score} if score is not None
                   else {"state": optuna.trial.TrialState.FAIL})))
        trial = study.ask(distributions)
        return {k: rounded(v, self.keys[k]) for k, v in trial.params.items()}

    # -- saved with Tune's snapshot -----------------------------------------------------------

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as handle:
            json.dump({"suggested": self.suggested, "scores": self.scores,
                       "values": self.values}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        self.suggested = dict(state["suggested"])
        self.scores = dict(state["scores"])
        self.values = dict(state.get("values", {}))


def with_values(trial: TrialSpec, values: dict[str, Any]) -> dict[str, Any]:
    """A trial's Ray config with tuned values applied to its recipe."""
    data = trial.to_dict()
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    data["config"] = trial.config.replace(**sections).to_dict()
    data["tuned"] = dict(values)
    return data


def optuna_distribution(distribution: Distribution):
    """Optuna's distribution for one of ours (qloguniform is refused when the space loads)."""
    import optuna

    kind, args = distribution.kind, distribution.args
    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(args))
    if kind == "randint":
        return optuna.distributions.IntDistribution(args[0], args[1] - 1)
    if kind == "quniform":
        return optuna.distributions.FloatDistribution(args[0], args[1], step=args[2])
    return optuna.distributions.FloatDistribution(args[0], args[1], log=kind == "loguniform")


def rounded(value: Any, distribution: Distribution) -> Any:
    """Optuna's float as a random draw is written: 4 significant digits (readable names,
    CSVs); a stepped or chosen value stays as it is."""
    if distribution.kind in ("uniform", "loguniform") and isinstance(value, float):
        return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), distribution.args[0]),
                   distribution.args[1])
    return value


def final_trial(trial: TrialSpec, chosen: Optional[dict[str, Any]], chosen_from: Optional[str],
                select_on: str) -> dict[str, Any]:
    """A final trial's Ray config: its cell's chosen values applied to its recipe."""
    data = trial.to_dict()
    if chosen is None:
        # The trainable ends such a trial like a configuration error, with this line.
        data["no_choice"] = (f"no tuning trial of this cell reported {select_on} (each failed or "
                           "diverged): nothing to choose its values from")
        return data
    data = with_values(trial, chosen)
    data["chosen_from"] = chosen_from
    return data
