"""How long `ninsweep export / status / report` take on a large experiment, against a bare read.

The experiment is fake but has the real layout (DEVELOPERS.md "Contracts"): a manifest and
one trial directory per trial with Ray's params.json and a result.json of one JSON line per
epoch holding our metrics plus Ray's own keys (the nested config among them), written from
the record of tests/analysis_fixtures.py. The grid is lab4's activation x BatchNorm x init
times five learning rates (80 configs); the seeds make up the trial count.

Baseline, measured in the same run: a fresh Python process that imports pandas (as the
issue measured it) and json-parses every line of every result.json in a bare loop -- the
least any reader of these files does. Ours: `python -m ninsweep export` (the three CSVs,
factor effects included), `status`, and with --report `report`, each a fresh process.
Commands alternate with the baseline, --repeats times; figures are medians.

Goals (issue 13): export on 1,600 trials x 164 epochs at <= 1.5x the bare loop; 10,000
trials x 164 epochs within a minute on 2 cores.

    python bench/bench_analysis.py                          # 1,600 x 164, ~2 min on 2 cores
    python bench/bench_analysis.py --trials 10000 --repeats 1
    python bench/bench_analysis.py --trials 1600 --report         # report too (figures: slow)
    python bench/bench_analysis.py --trials 80 --epochs 3 --repeats 1   # what the suite runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from analysis_fixtures import epoch_record, trial_name  # noqa: E402
from benchutil import ROOT, median  # noqa: E402

ACTIVATIONS = ["relu", "elu", "leaky_relu", "maxout"]
LRS = [0.1, 0.05, 0.2, 0.02, 0.01]

BARE_LOOP = """
import json, os, sys
import pandas  # what any analysis script starts with
lines = 0
for entry in os.scandir(sys.argv[1]):
    path = os.path.join(entry.path, "result.json")
    if entry.is_dir() and os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)
                lines += 1
print(lines)
"""


def make_fake_experiment(root: Path, trials: int, epochs: int) -> Path:
    """Write the experiment directory; return its path. One template line per epoch."""
    exp = root / "bench-exp"
    exp.mkdir(parents=True)
    cells = list(itertools.product(ACTIVATIONS, [False, True], ["keras", "he"], LRS))
    seeds = -(-trials // len(cells))
    template = json.dumps(epoch_record(1, 0.5)).replace('"epoch": 1,', '"epoch": %d,')
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "training_iteration", "time_total_s"):
        template = template.replace(f'"{key}": {json.dumps(epoch_record(1, 0.5)[key])}', f'"{key}": %r')
    entries = []
    for i, ((act, bn, init, lr), seed) in enumerate(itertools.product(cells, range(seeds))):
        if i >= trials:
            break
        name = f"{trial_name(act, bn, init, seed)}-lr{lr}"
        params = {"activation": act, "batchnorm": bn, "init": init, "seed": seed, "train.lr": lr}
        config = {"model": {"activation": act, "batchnorm": bn, "init": init},
                  "data": {"source": "synthetic"}, "train": {"epochs": epochs, "seed": seed, "lr": lr}}
        entry = {"name": name, "params": params, "config": config}
        entries.append(entry)
        final = 0.80 + 0.02 * bn + 0.01 * (init == "he") + 0.003 * ACTIVATIONS.index(act) + 0.001 * (seed % 7)
        tdir = exp / name
        tdir.mkdir()
        (tdir / "params.json").write_text(json.dumps({"trial": entry}))
        lines = [template % (e, round(2.0 / (1 + e), 6), round(final * e / epochs + 0.04, 6),
                             round(2.2 / (1 + e), 6), round(final * (0.5 + 0.5 * e / epochs), 6), e,
                             round(10.0 * e + 2.0, 3)) for e in range(1, epochs + 1)]
        (tdir / "result.json").write_text("\n".join(lines) + "\n")
    (exp / "ninsweep.json").write_text(json.dumps({
        "format": 1, "space_name": "bench", "space_file": "bench.yaml", "space": {"name": "bench"},
        "trials": entries, "created": "2024-01-01T00:00:00+00:00"}))
    return exp


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1600)
    parser.add_argument("--epochs", type=int, default=164)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="time `ninsweep report` too")
    parser.add_argument("--workdir", type=Path, help="where to write the fake experiment (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-analysis-", dir=args.workdir))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        start = time.perf_counter()
        exp = make_fake_experiment(root, args.trials, args.epochs)
        size = sum(f.stat().st_size for f in exp.rglob("result.json")) / 1e6
        print(f"fake experiment: {args.trials} trials x {args.epochs} epochs, written in "
              f"{time.perf_counter() - start:.1f} s ({size:.0f} MB)")
        commands = {
            "bare loop": [sys.executable, "-c", BARE_LOOP, str(exp)],
            "export": [sys.executable, "-m", "ninsweep", "export", str(exp), "-o", str(root / "out.csv")],
            "status": [sys.executable, "-m", "ninsweep", "status", str(exp)],
        }
        if args.report:
            commands["report"] = [sys.executable, "-m", "ninsweep", "report", str(exp), "-o", str(root / "report")]
        samples: dict[str, list[float]] = {k: [] for k in commands}
        lines = None
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                elapsed, out = timed(cmd, env)
                samples[name].append(elapsed)
                if name == "bare loop":
                    lines = int(out.strip())
        assert lines == args.trials * args.epochs, lines
        base = median(samples["bare loop"])
        print(f"{'command':<10} {'median s':>9} {'x bare loop':>12}   (cores: {os.cpu_count()}, "
              f"{args.repeats} alternating runs)")
        result = {"trials": args.trials, "epochs": args.epochs, "cores": os.cpu_count(),
                  "repeats": args.repeats, "median_s": {}, "ratio": {}, "samples": samples}
        for name in commands:
            m = median(samples[name])
            result["median_s"][name] = m
            result["ratio"][name] = m / base
            print(f"{name:<10} {m:>9.2f} {m / base:>12.2f}")
        effects = (root / "out-effects.csv").read_text().splitlines()
        print(f"effects CSV: {len(effects) - 1} rows")
        result["effects_rows"] = len(effects) - 1
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
