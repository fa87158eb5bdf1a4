"""What Ray and the sweep runner cost: the smoke sweep's wall time against its training time.

Ours: ``ninsweep run smoke`` as a user runs it (a fresh process, a local Ray instance on
127.0.0.1, 10 trials of 2 epochs, 1 CPU each, a checkpoint every epoch), timed from the
command's start to its exit. From its output: "first trial running X s after start". From
each trial's result.json: the training + evaluation time of its epochs (epoch_time_s).

Baselines, in the same run:
- ideal: the trials' summed epoch_time_s divided by the parallelism (trials at once: the
  machine's CPUs over the CPUs per trial, at most the number of trials); a sweep with no
  overhead at all would take this long.
- no Ray: the same 10 trial configurations (read from the experiment's manifest), each a
  ``Trainer(...).fit()`` in a pool of as many spawned processes as the parallelism, each
  process with as many torch threads as a trial has CPUs; what a plain script would do.

A comparison row, --compare-reuse (on by default): ``ninsweep run`` with Tune's
``reuse_actors`` forced off for that run only (a launcher in this file; ninsweep itself is
unchanged), so every trial starts a new Python + Ray + torch worker process, as ninsweep did
before it asked Tune to hand a finished trial's process to the next trial.

The kinds of run alternate (A B C A B C) for --rounds rounds; figures are medians.
Starts Ray: runs only in a loopback-only network namespace.

    bash bench/netns.sh python bench/bench_sweep.py                 # ~4 min on 2 cores
    bash bench/netns.sh python bench/bench_sweep.py --space smoke --rounds 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import ROOT, machine, median, require_loopback_namespace, table, write_json

FIRST_TRIAL = re.compile(r"first trial running ([0-9.]+) s after start")


# `ninsweep run ...` with Tune's actor reuse forced off, for the comparison row only.
NO_REUSE_LAUNCHER = (
    "import sys; from ray import tune; _TuneConfig = tune.TuneConfig; "
    "tune.TuneConfig = lambda *a, **k: _TuneConfig(*a, **dict(k, reuse_actors=False)); "
    "from ninsweep.cli import main; sys.exit(main(sys.argv[1:]))")


def run_sweep(space: str, storage: Path, name: str, cache_dir: Path,
              no_reuse: bool = False) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", NINSWEEP_CACHE_DIR=str(cache_dir),
               PYTHONUNBUFFERED="1")
    launcher = ["-c", NO_REUSE_LAUNCHER] if no_reuse else ["-m", "ninsweep"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *launcher, "run", space, "--storage",
                           str(storage), "--name", name], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ninsweep run {space} exited {done.returncode}:\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    match = FIRST_TRIAL.search(done.stdout)
    experiment = storage / name
    epoch_times: dict[str, float] = {}
    trial_totals: dict[str, float] = {}
    for result_file in sorted(experiment.glob("*/result.json")):
        last: dict[int, dict] = {}
        for line in result_file.read_text().splitlines():
            record = json.loads(line)
            last[record["epoch"]] = record  # keep the last record of each epoch
        epoch_times[result_file.parent.name] = sum(r["epoch_time_s"] for r in last.values())
        trial_totals[result_file.parent.name] = max(r["time_total_s"] for r in last.values())
    manifest = json.loads((experiment / "ninsweep.json").read_text())
    if len(epoch_times) != len(manifest["trials"]):
        raise RuntimeError(f"{experiment}: {len(epoch_times)} of {len(manifest['trials'])} "
                           "trials left results")
    return {"wall_s": wall, "first_trial_s": float(match.group(1)) if match else float("nan"),
            "epoch_time_s": epoch_times, "trial_time_total_s": trial_totals,
            "trials": manifest["trials"], "cpus_per_trial": manifest["space"].get(
                "resources", {}).get("cpus", 1)}


def _plain_trial(args: tuple[dict, int, str]) -> float:
    config, threads, cache_dir = args
    os.environ["NINSWEEP_CACHE_DIR"] = cache_dir
    import torch

    torch.set_num_threads(threads)
    from ninsweep.config import TrialConfig
    from ninsweep.core.train import Trainer

    started = time.perf_counter()
    Trainer(TrialConfig.from_dict(config)).fit()
    return time.perf_counter() - started


def run_plain(trials: list[dict], parallelism: int, threads: int, cache_dir: Path) -> dict:
    """The same trials without Ray: a spawned pool, one Trainer.fit() per trial."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(parallelism) as pool:
        times = pool.map(_plain_trial, [(t["config"], threads, str(cache_dir)) for t in trials],
                         chunksize=1)
    return {"wall_s": time.perf_counter() - started, "trial_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="smoke", help="a space name or YAML file")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare-reuse", action=argparse.BooleanOptionalAction, default=True,
                        help="add the row with Tune's reuse_actors forced off (default on)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    require_loopback_namespace("python bench/bench_sweep.py")
    cpus = os.cpu_count() or 1

    sweeps, plains, reused = [], [], []
    with tempfile.TemporaryDirectory(prefix="ninsweep-bench-") as scratch:
        scratch = Path(scratch)
        cache_dir = scratch / "cache"
        for round_index in range(args.rounds):
            sweep = run_sweep(args.space, scratch / "results", f"round-{round_index}", cache_dir)
            sweeps.append(sweep)
            parallelism = max(1, min(len(sweep["trials"]), int(cpus // sweep["cpus_per_trial"])))
            threads = max(1, int(sweep["cpus_per_trial"]))
            plains.append(run_plain(sweep["trials"], parallelism, threads, cache_dir))
            line = (f"round {round_index + 1}/{args.rounds}: ninsweep run {sweep['wall_s']:.1f} s "
                    f"(first trial at {sweep['first_trial_s']:.1f} s), no Ray "
                    f"{plains[-1]['wall_s']:.1f} s")
            if args.compare_reuse:
                reused.append(run_sweep(args.space, scratch / "results",
                                        f"round-{round_index}-no-reuse", cache_dir, True))
                line += f", reuse_actors off {reused[-1]['wall_s']:.1f} s"
            print(line, flush=True)

    trials = len(sweeps[0]["trials"])
    ideal = median(sum(s["epoch_time_s"].values()) / parallelism for s in sweeps)
    wall = median(s["wall_s"] for s in sweeps)
    plain_wall = median(p["wall_s"] for p in plains)
    first = median(s["first_trial_s"] for s in sweeps)
    rows = [(f"ideal: sum of epoch times / {parallelism} (baseline)", ideal, "", 1.0),
            (f"no Ray: {parallelism} processes, Trainer.fit() each", plain_wall, "",
             ideal / plain_wall),
            ("ninsweep run (Ray Tune)", wall, first, ideal / wall)]
    if reused:
        reuse_wall = median(s["wall_s"] for s in reused)
        rows.append(("ninsweep run, Tune reuse_actors forced off", reuse_wall,
                     median(s["first_trial_s"] for s in reused), ideal / reuse_wall))
    print()
    print(table(["smoke sweep", "wall s", "first trial s", "ideal / wall"], rows,
                ["", ".1f", ".1f", ".3f"]))
    print(f"\n{trials} trials, {parallelism} at a time on {cpus} CPUs; time from `ninsweep run` "
          f"to the first trial running: {first:.1f} s (median of {args.rounds}); trial "
          f"time inside Ray (Tune's time_total_s, summed / {parallelism}): "
          f"{median(sum(s['trial_time_total_s'].values()) / parallelism for s in sweeps):.1f} s.")
    write_json(args.json, {"machine": machine(), "settings": vars(args),
                           "parallelism": parallelism, "ideal_s": ideal, "ninsweep_run_s": wall,
                           "no_ray_s": plain_wall, "first_trial_s": first,
                           "no_reuse_actors_s": median(s["wall_s"] for s in reused) if reused
                           else None,
                           "sweeps": [{k: v for k, v in s.items() if k != "trials"}
                                      for s in sweeps],
                           "no_ray": plains})


if __name__ == "__main__":
    main()
