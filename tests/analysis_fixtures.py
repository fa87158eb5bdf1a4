"""Experiment directories for the analysis and report tests, and a check for real ones.

``make_experiment(tmp_path, trials=[...])`` writes the layout of DEVELOPERS.md
("Contracts": ``ninsweep.json``, one trial directory with ``params.json`` /
``result.json`` / ``error.txt``) by hand, with known numbers.

``check_analysable(exp_dir, tmp_path)`` is the hook for experiments made by a *real* tiny
Ray sweep (the sweep tests): it runs every analysis entry point on the directory and
checks the contract between the two modules. Use it like::

    from analysis_fixtures import check_analysable
    exp = check_analysable(result_dir, tmp_path, expect_trials=4, expect_finished=4)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ninsweep import metrics as M

DEFAULT_EPOCHS = 3


def trial_name(activation: str, batchnorm: bool, init: str, seed: int) -> str:
    return f"{activation.replace('_', '')}{'-bn' if batchnorm else ''}{'-' + init if init != 'keras' else ''}-s{seed}"


def epoch_record(epoch: int, test_acc: float, *, train_loss: float = 1.0, test_loss: float = 1.2,
                 train_acc: Optional[float] = None, epoch_time_s: float = 10.0,
                 images_per_s: float = 500.0, iteration: Optional[int] = None,
                 time_total_s: Optional[float] = None) -> dict[str, Any]:
    """One result.json line: our metrics plus the keys Ray adds (config is nested)."""
    return {
        M.EPOCH: epoch, M.TRAIN_LOSS: train_loss,
        M.TRAIN_ACC: test_acc + 0.05 if train_acc is None else train_acc,
        M.TEST_LOSS: test_loss, M.TEST_ACC: test_acc, M.LR: 0.1,
        M.EPOCH_TIME_S: epoch_time_s, M.IMAGES_PER_S: images_per_s,
        "training_iteration": iteration or epoch, "time_total_s": time_total_s or epoch * epoch_time_s + 2.0,
        "timestamp": 1700000000 + epoch, "trial_id": "abc12_00000", "done": False,
        "date": "2024-01-01_00-00-00", "hostname": "test", "node_ip": "127.0.0.1", "pid": 1,
        "config": {"trial": {"name": "ignored"}},
    }


def make_experiment(tmp_path: Path, trials: list[dict[str, Any]], *, name: str = "exp",
                    space_name: Optional[str] = "smoke", manifest: bool = True,
                    epochs: int = DEFAULT_EPOCHS) -> Path:
    """Write an experiment directory under ``tmp_path/name``; return its path.

    Each trial is a dict; every key is optional:
      activation ("relu"), batchnorm (False), init ("keras"), seed (0), extra (other grid
      params, {"train.lr": 0.05}), name (derived from the params), epochs (planned; the
      experiment's ``epochs``), final_acc (fraction, 0.5), done (epochs reported; =
      epochs), final_train_loss (0.5), final_test_loss (0.7), epoch_time_s (10.0),
      images_per_s (500.0),
      state: "started" (default: a directory with ``done`` epochs), "pending" (no
        directory), "error" (error.txt written too),
      records: result.json records written verbatim instead of generated ones,
      tail: raw text appended to result.json (a truncated last line),
      suffix: appended to the directory name, as Ray does ("_2024-01-01_abc"),
      in_manifest: False leaves it out of ninsweep.json (directory only).
    """
    exp = Path(tmp_path) / name
    exp.mkdir(parents=True)
    entries = []
    for spec in trials:
        activation = spec.get("activation", "relu")
        batchnorm = spec.get("batchnorm", False)
        init = spec.get("init", "keras")
        seed = spec.get("seed", 0)
        planned = spec.get("epochs", epochs)
        tname = spec.get("name") or trial_name(activation, batchnorm, init, seed)
        params = {"activation": activation, "batchnorm": batchnorm, "init": init, "seed": seed,
                  **spec.get("extra", {})}
        config = {"model": {"activation": activation, "batchnorm": batchnorm, "init": init},
                  "data": {"source": "synthetic"},
                  "train": {"epochs": planned, "seed": seed}}
        entry = {"name": tname, "params": params, "config": config}
        if spec.get("in_manifest", True):
            entries.append(entry)
        if spec.get("state", "started") == "pending":
            continue
        tdir = exp / (tname + spec.get("suffix", ""))
        tdir.mkdir()
        (tdir / "params.json").write_text(json.dumps({"trial": entry}))
        records = spec.get("records")
        if records is None:
            done = spec.get("done", planned)
            final = spec.get("final_acc", 0.5)
            records = [epoch_record(
                e, final * (0.5 + 0.5 * e / done),
                train_loss=spec.get("final_train_loss", 0.5) * (1 + (done - e)),
                test_loss=spec.get("final_test_loss", 0.7) * (1 + 0.5 * (done - e)),
                epoch_time_s=spec.get("epoch_time_s", 10.0),
                images_per_s=spec.get("images_per_s", 500.0)) for e in range(1, done + 1)]
        text = "".join(json.dumps(r) + "\n" for r in records) + spec.get("tail", "")
        (tdir / "result.json").write_text(text)
        if spec.get("state") == "error":
            (tdir / "error.txt").write_text("Traceback (most recent call last):\n  ...\n"
                                            "RuntimeError: CUDA out of memory\n")
    if manifest:
        (exp / "ninsweep.json").write_text(json.dumps({
            "format": 1, "space_name": space_name, "space_file": f"search_spaces/{space_name}.yaml",
            "space": {"name": space_name}, "trials": entries, "created": "2024-01-01T00:00:00+00:00",
        }))
    return exp


def lab4_trials(accs: dict[str, list[float]], epochs: int = DEFAULT_EPOCHS) -> list[dict[str, Any]]:
    """Trial specs from {"ELU+BN+WI": [final acc % per seed], ...} (lab4 labels)."""
    names = {"ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu", "Maxout": "maxout"}
    out = []
    for label, values in accs.items():
        parts = label.split("+")
        for seed, acc in enumerate(values):
            out.append({"activation": names[parts[0]], "batchnorm": "BN" in parts,
                        "init": "he" if "WI" in parts else "keras", "seed": seed,
                        "final_acc": acc / 100.0, "epochs": epochs})
    return out


def check_analysable(exp_dir: Path, tmp_path: Path, *, expect_trials: Optional[int] = None,
                     expect_finished: Optional[int] = None):
    """Every analysis entry point on a (real) experiment directory; returns the Experiment."""
    import pandas as pd

    from ninsweep import analysis
    from ninsweep.analysis import report

    exp = analysis.load_experiment(exp_dir)
    if expect_trials is not None:
        assert len(exp.trials) == expect_trials, [t.name for t in exp.trials]
    if expect_finished is not None:
        assert exp.counts()[analysis.FINISHED] == expect_finished, exp.counts()
    for t in exp.trials:
        assert t.status in analysis.STATUSES
        h = t.history
        assert list(h[M.EPOCH]) == sorted(set(h[M.EPOCH])), f"{t.name}: epochs not unique/sorted"
        if t.status == analysis.FINISHED:
            assert t.epochs_done == t.epochs_planned
            assert h[M.TEST_ACC].between(0, 1).all()
        if t.status != analysis.PENDING:
            assert t.trial_dir is not None and (t.trial_dir / "params.json").is_file()
    trials = analysis.trial_table(exp)
    assert len(trials) == len(exp.trials)
    configs = analysis.config_table(exp)
    assert configs["n_trials"].sum() == len(exp.trials)
    sig = analysis.significance(exp)
    assert set(sig["config"]) == set(configs["config"])
    assert analysis.format_table(configs, sig)
    paths = analysis.write_csvs(exp, tmp_path / "check-results.csv")
    assert len(pd.read_csv(paths[0])) == len(exp.trials)
    effects = pd.read_csv(paths[2])
    assert {"factor", "level", "baseline", "effect_pct", "ci_low_pct", "ci_high_pct", "p", "n"} <= set(effects.columns)
    md = report.write_report(exp, tmp_path / "check-report")
    assert md.is_file() and md.stat().st_size > 0
    return exp


# ---------------------------------------------------------------- designs with known effects

def factorial_specs(levels: dict[str, list], truth, seeds, *, rng, noise: float = 0.3,
                    seed_sd: float = 0.0, keep=None, missing=(), epochs: int = DEFAULT_EPOCHS
                    ) -> list[dict[str, Any]]:
    """Trial specs (for ``make_experiment`` / ``trial_frame``) of a grid with known effects.

    ``levels``: grid key -> values (activation, batchnorm, init, or a dotted key such as
    train.lr); ``truth(cell) -> accuracy %`` the true cell mean; each seed adds its own offset
    (normal, ``seed_sd``: what pairing by seed removes) and each trial its noise. ``keep(cell)``
    False leaves a cell out of the grid (an incomplete design); ``missing`` lists (cell
    index, seed) pairs that never finished.
    """
    import itertools

    offsets = {s: rng.normal(0.0, seed_sd) if seed_sd else 0.0 for s in seeds}
    specs = []
    cells = [dict(zip(levels, combo)) for combo in itertools.product(*levels.values())]
    cells = [c for c in cells if keep is None or keep(c)]
    for index, cell in enumerate(cells):
        for s in seeds:
            if (index, s) in missing:
                continue
            acc = truth(cell) + offsets[s] + rng.normal(0.0, noise)
            base = {k: cell[k] for k in ("activation", "batchnorm", "init") if k in cell}
            extra = {k: v for k, v in cell.items() if k not in base}
            name = trial_name(base.get("activation", "relu"), base.get("batchnorm", False),
                              base.get("init", "keras"), s)
            if extra:
                name += "-" + "-".join(f"{k}{v}" for k, v in extra.items())
            specs.append({**base, "extra": extra, "seed": s, "final_acc": acc / 100.0,
                          "epochs": epochs, "name": name})
    return specs


def trial_frame(specs: list[dict[str, Any]]):
    """The per-trial table ``analysis.trial_table`` would give for these (finished) specs,
    built in memory: for statistics tests that need many replicated experiments."""
    import pandas as pd

    from ninsweep import analysis

    rows = []
    for spec in specs:
        base = {"activation": spec.get("activation", "relu"), "batchnorm": spec.get("batchnorm", False),
                "init": spec.get("init", "keras")}
        extra = spec.get("extra", {})
        rows.append({"trial": spec.get("name", ""), "config": analysis.config_label(**base, extra=extra),
                     **base, "seed": spec.get("seed", 0), **extra, "status": analysis.FINISHED,
                     "final_test_acc_pct": 100.0 * spec.get("final_acc", 0.5)})
    df = pd.DataFrame(rows)
    extras = [c for c in df.columns if c not in analysis.TRIAL_COLUMNS]
    for col in analysis.TRIAL_COLUMNS:
        if col not in df.columns:
            df[col] = float("nan")
    return df[analysis.TRIAL_COLUMNS[:6] + extras + analysis.TRIAL_COLUMNS[6:]]
