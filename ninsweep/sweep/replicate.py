"""``replication:`` as one Tune run: a Searcher that hands out seeds a wave at a time, only to
the configurations whose comparisons are still undecided.

Wave 0 is ``min_seeds`` seeds of every configuration. When every trial handed out has ended,
the searcher rebuilds the trial table from the results Tune gave it (the analysis's own code:
``analysis.sequential.comparison_decisions``, alpha spending over the planned looks) and hands
out the next seed of each configuration in an undecided main effect; when none is left
undecided, or every such configuration has ``max_seeds``, it is finished and the trials it
never handed out are *skipped*. After every wave it writes ``replication.json`` into the
experiment (the waves, the decisions, the skipped trials), which status, export and the
report read. Its state (trials handed out, their results, the waves) is saved with every
Tune snapshot, so ``resume`` continues the same decisions.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

import numpy as np
from ray.tune.search import Searcher

from ninsweep.analysis.results import HISTORY_COLUMNS, Experiment, TrialRecord
from ninsweep.analysis.sequential import (
    ERROR_RATE,
    SEQUENTIAL_METHOD,
    SequentialRule,
    comparison_decisions,
    undecided_configurations,
)
from ninsweep.analysis.tabulate import trial_table
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import ERROR, FINISHED, REPLICATION_FILE
from ninsweep.fmt import first_line
from ninsweep.locations import join, local_path
from ninsweep.metrics import EPOCH
from ninsweep.space.schema import SEED, TRIAL_KEY, SweepSpec
from ninsweep.storage import write_text
from ninsweep.sweep import tune_state

_LOG: dict[str, Callable[[str], None]] = {}  # the run's console line, set by the runner


def set_log(line: Callable[[str], None]) -> None:
    _LOG["line"] = line


def searcher_of(manifest: dict[str, Any], experiment: str) -> "ReplicationSearcher":
    """What a pickled ReplicationSearcher (tuner.pkl) loads as; Tune then loads its state."""
    return ReplicationSearcher(SweepSpec.from_manifest(manifest, where="tuner.pkl"), experiment)


class ReplicationSearcher(Searcher):
    def __init__(self, spec: SweepSpec, experiment: str):
        super().__init__(metric=None, mode=None)
        rep = spec.replication
        self.spec, self.experiment = spec, experiment
        self.rule = SequentialRule(rep.min_seeds, rep.max_seeds, rep.alpha, rep.target_half_width)
        self.by_name = {t.name: t for t in spec.trials}
        self.suggested: dict[str, str] = {}  # Tune's trial id -> trial name
        self.results: dict[str, dict[str, Any]] = {}  # ended trial -> its last result (subset)
        self.queue: list[str] = [t.name for t in spec.trials if t.params[SEED] < rep.min_seeds]
        self.waves: list[list[str]] = [list(self.queue)]  # the trials each wave added
        self.finished = False
        self._manifest = spec.to_manifest()

    def __reduce__(self):
        return (tune_state.load_or_fallback, (__name__, "searcher_of",
                                              (self._manifest, self.experiment),
                                              "ray.tune.search", "BasicVariantGenerator"))

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        if self.queue:
            name = self.queue.pop(0)
            self.suggested[trial_id] = name
            return {TRIAL_KEY: self.by_name[name].to_dict()}
        return Searcher.FINISHED if self.finished else None

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                          error: bool = False) -> None:
        name = self.suggested.get(trial_id)
        if name is None:
            return
        kept = {k: result[k] for k in (*HISTORY_COLUMNS, EPOCH) if result and k in result
                and isinstance(result[k], (int, float))}
        self.results[name] = {**kept, "error": bool(error) or not kept}
        if not self.queue and not self.finished and self._wave_ended():
            self._next_wave()  # here, not in suggest: Tune stops asking after the last trial

    # -- the waves ----------------------------------------------------------------------------

    def _wave_ended(self) -> bool:
        return all(name in self.results for name in self.suggested.values())

    def experiment_so_far(self) -> Experiment:
        """The ended trials as the analysis sees them (a finished trial: its last epoch)."""
        records = []
        for name, result in self.results.items():
            trial = self.by_name[name]
            metrics = {k: np.array([float(result.get(k, math.nan))], dtype=float)
                       for k in (*HISTORY_COLUMNS, EPOCH)}
            done = not result["error"] and result.get(EPOCH, 0) >= trial.config.train.epochs
            records.append(TrialRecord(name, dict(trial.params), trial.config,
                                       FINISHED if done else ERROR, metrics))
        return Experiment(path=local_path(self.experiment), space_name=self.spec.name,
                          manifest=self._manifest, trials=records, spec=self.spec)

    def _next_wave(self) -> None:
        trials = trial_table(self.experiment_so_far())
        undecided = undecided_configurations(trials, self.rule)
        handed_out = set(self.suggested.values())
        added = []
        for config in undecided:
            names = [n for n in trials.loc[trials["config"] == config, "trial"]]
            cell = {k: v for k, v in self.by_name[names[0]].params.items() if k != SEED}
            later = sorted((t for t in self.spec.trials if t.name not in handed_out
                            and {k: v for k, v in t.params.items() if k != SEED} == cell),
                           key=lambda t: t.params[SEED])
            if later:
                added.append(later[0].name)
        order = {t.name: i for i, t in enumerate(self.spec.trials)}
        self.queue = sorted(added, key=order.get)
        if self.queue:
            self.waves.append(list(self.queue))
        else:
            self.finished = True
        self.write_record(trials)
        log = _LOG.get("line")
        if log is not None:
            log(f"replication wave {len(self.waves) - 1}: {len(self.queue)} more seed(s) for "
                f"{', '.join(sorted(undecided))} (a main effect still undecided)" if self.queue else
                f"replication done after wave {len(self.waves) - 1}: every main effect decided "
                f"or at {self.rule.max_seeds} seeds; {len(self.spec.trials) - len(handed_out)} "
                "trials not needed")

    def write_record(self, trials) -> None:
        """``replication.json``: the rule, the waves, the decisions so far, the skipped trials."""
        decisions = comparison_decisions(trials, self.rule)
        handed_out = set(self.suggested.values()) | set(self.queue)
        record = {
            "method": SEQUENTIAL_METHOD, "error_rate": ERROR_RATE,
            "min_seeds": self.rule.min_seeds, "max_seeds": self.rule.max_seeds,
            "alpha": self.rule.alpha, "target_half_width": self.rule.target_half_width,
            "waves": self.waves, "finished": self.finished,
            "decisions": json.loads(decisions.to_json(orient="records")),
            "skipped": ([t.name for t in self.spec.trials if t.name not in handed_out]
                        if self.finished else []),
        }
        target = join(self.experiment, REPLICATION_FILE)
        try:
            write_text(target, json.dumps(record, indent=2))
        except (OSError, NinsweepError) as err:
            # The waves go on (the searcher's state is in Tune's snapshot); the record is
            # written again after the next wave.
            log = _LOG.get("line")
            if log is not None:
                log(f"{target}: cannot write ({first_line(err, 160)}); the sweep goes on")

    # -- saved with Tune's snapshot -----------------------------------------------------------

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as handle:
            json.dump({"suggested": self.suggested, "results": self.results, "queue": self.queue,
                       "waves": self.waves, "finished": self.finished}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        self.suggested, self.results = dict(state["suggested"]), dict(state["results"])
        self.queue, self.waves = list(state["queue"]), [list(w) for w in state["waves"]]
        self.finished = bool(state["finished"])
