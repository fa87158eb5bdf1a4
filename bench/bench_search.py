"""What ninsweep's layer costs a large random search: trials per minute against plain Ray Tune.

A random search of --trials (default 1000) tiny trials on this machine's CPUs, 1 CPU each:
one grid cell x N log-uniform learning rates, one epoch of 32 synthetic 8x8 images (about
0.05 s of training and testing), a checkpoint every epoch (Tune keeps 2), so that what is
measured is the cost of running a trial, not of training it.

- ninsweep: ``ninsweep run SPACE`` on a temporary space file with ``search: {samples: N}``
  (drawn before Ray, passed to Tune as N grid points), as a user runs it.
- plain Ray Tune, the baseline: a script in this file (``--plain-driver``, its own process, so
  Ray starts fresh) that runs ``tune.Tuner`` with ``param_space={"lr": tune.loguniform(..)}``,
  ``num_samples=N``, ``reuse_actors=True``, and a function trainable that trains the same
  ``TrialConfig`` with ninsweep's ``Trainer`` and reports each epoch with ``tune.report`` and
  a checkpoint, as ninsweep's trainable does. Ray starts as ninsweep starts it (local, on
  127.0.0.1, no dashboard, workers' output kept off the driver). What is left is ninsweep's
  layer: its progress callback and console lines, TensorBoard logger, manifest, trial names,
  per-trial log files, the trainable's restore checks.

Both are timed from the command's start to its exit. Driver CPU time: the driver process's
own user + system time (``getrusage(RUSAGE_SELF)`` at its exit, an atexit hook registered
before ninsweep or Tune is imported), not its children's: Ray's workers are children of the
raylet, not of the driver. Printed beside it, for comparison, is what ``RUSAGE_CHILDREN`` of
this script sees around the command: the driver plus the Ray processes it started and reaped
at shutdown (GCS, raylet, ...) and any of their children those reaped in turn.

The two sides alternate (A B A B) for --rounds rounds; figures are medians.
Starts Ray: runs only in a loopback-only network namespace.

    bash bench/netns.sh python bench/bench_search.py                 # ~4 min on 2 cores
    bash bench/netns.sh python bench/bench_search.py --trials 200 --json out/search.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchutil import ROOT, machine, median, require_loopback_namespace, table, write_json

LR_RANGE = (0.001, 0.1)
RUSAGE_ENV = "NINSWEEP_BENCH_DRIVER_RUSAGE"  # where the driver writes its own CPU time


def space_text(trials: int) -> str:
    return f"""\
name: bench-search
description: {trials} one-epoch trials of a tiny NIN on 8x8 synthetic images (bench_search.py)
seeds: [0]
grid:
  - activation: [relu]
search:
  algorithm: random
  samples: {trials}
  seed: 0
  keys:
    train.lr: {{loguniform: [{LR_RANGE[0]}, {LR_RANGE[1]}]}}
data:
  source: synthetic
  synthetic_train_size: 32
  synthetic_test_size: 16
  synthetic_image_size: 8
train:
  epochs: 1
  batch_size: 32
  lr_milestones: []
  threads: 1
resources:
  cpus: 1
  gpus: 0
checkpoint:
  every: 1
  keep: 2
"""


def record_driver_rusage() -> None:
    """At this process's exit, write its own CPU time (not its children's) to $RUSAGE_ENV."""
    import atexit

    target = os.environ.get(RUSAGE_ENV)

    def dump() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        Path(target).write_text(json.dumps({"user_s": usage.ru_utime, "system_s": usage.ru_stime,
                                            "max_rss_mb": usage.ru_maxrss / 1024}))

    if target:
        atexit.register(dump)  # registered first, so it runs last: after Ray's shutdown


# `ninsweep run ...` with the driver's own CPU time recorded at exit; ninsweep is unchanged.
NINSWEEP_LAUNCHER = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    "from bench_search import record_driver_rusage; record_driver_rusage(); "
    "from ninsweep.cli import main; sys.exit(main(sys.argv[1:]))")


def timed(command: list[str], env: dict, rusage_file: Path) -> dict:
    """Run ``command``; its wall time, exit status, output and CPU times."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=dict(env, **{RUSAGE_ENV: str(rusage_file)}),
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    driver = json.loads(rusage_file.read_text()) if rusage_file.exists() else {}
    return {"wall_s": wall, "returncode": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr,
            "driver_cpu_s": driver.get("user_s", float("nan")) + driver.get("system_s", 0.0),
            "driver_user_s": driver.get("user_s"), "driver_system_s": driver.get("system_s"),
            "driver_max_rss_mb": driver.get("max_rss_mb"),
            "children_cpu_s": (after.ru_utime - before.ru_utime)
            + (after.ru_stime - before.ru_stime)}


def failed(what: str, run: dict) -> RuntimeError:
    return RuntimeError(f"{what} exited {run['returncode']}:\n{run['stdout'][-3000:]}\n"
                        f"{run['stderr'][-3000:]}")


def run_ninsweep(space: Path, storage: Path, name: str, env: dict) -> dict:
    run = timed([sys.executable, "-c", NINSWEEP_LAUNCHER, "run", str(space), "--storage",
                 str(storage), "--name", name], env, storage.parent / f"{name}.rusage.json")
    if run["returncode"] != 0:
        raise failed(f"ninsweep run {space.name}", run)
    experiment = storage / name
    manifest = json.loads((experiment / "ninsweep.json").read_text())
    epoch_times = []
    for result_file in experiment.glob("*/result.json"):
        records = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        if records and records[-1].get("epoch") == 1:
            epoch_times.append(records[-1]["epoch_time_s"])
    return {**_summary(run), "trials": len(manifest["trials"]), "finished": len(epoch_times),
            "epoch_time_s": sum(epoch_times)}


def run_plain(base: dict, trials: int, storage: Path, name: str, env: dict) -> dict:
    config_file = storage.parent / f"{name}.config.json"
    config_file.write_text(json.dumps(base))
    out = storage.parent / f"{name}.out.json"
    run = timed([sys.executable, str(Path(__file__)), "--plain-driver", str(config_file),
                 "--trials", str(trials), "--storage", str(storage), "--name", name,
                 "--json", str(out)], env, storage.parent / f"{name}.rusage.json")
    if run["returncode"] != 0:
        raise failed("the plain Tune script", run)
    return {**_summary(run), **json.loads(out.read_text())}


def _summary(run: dict) -> dict:
    return {k: v for k, v in run.items() if k not in ("stdout", "stderr", "returncode")}


# -- the plain Ray Tune script (--plain-driver) ---------------------------------------------

def plain_tune(config_file: str, trials: int, storage: str, name: str, out: str) -> None:
    import ray
    from ray import tune

    base = json.loads(Path(config_file).read_text())

    def trainable(config: dict[str, Any]) -> None:
        # ninsweep's training loop, unwrapped: the trial's config with the drawn lr, one
        # Trainer, a checkpoint with every epoch's report (what ninsweep's trainable saves).
        from ninsweep.config import TrialConfig
        from ninsweep.core.checkpoint import save_checkpoint
        from ninsweep.core.train import Trainer
        from ninsweep.errors import TrainingDiverged

        cfg = TrialConfig.from_dict(base).replace(train={"lr": config["lr"]})
        trainer = Trainer(cfg)

        def report(metrics: dict[str, float], trainer: Trainer) -> None:
            with tempfile.TemporaryDirectory() as directory:
                save_checkpoint(trainer.state_dict(),
                                Path(directory) / f"state-epoch-{trainer.epoch:05d}.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

        try:
            trainer.fit(on_epoch_end=report)
        except TrainingDiverged as err:  # ninsweep ends such a trial with one report too
            tune.report({"diverged": str(err)})

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             logging_level="WARNING", log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"lr": tune.loguniform(*LR_RANGE)},
            tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        grid = tuner.fit()
    finally:
        ray.shutdown()
    metrics = [r.metrics or {} for r in grid]
    Path(out).write_text(json.dumps({
        "trials": len(grid), "errors": grid.num_errors,
        "finished": sum(1 for m in metrics if m.get("epoch") == 1),
        "diverged": sum(1 for m in metrics if m.get("diverged")),
        "epoch_time_s": sum(m.get("epoch_time_s", 0.0) for m in metrics)}))


# -- the benchmark --------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="random-search samples")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--plain-driver", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_driver:  # the baseline's own process (run by run_plain)
        record_driver_rusage()
        plain_tune(args.plain_driver, args.trials, args.storage, args.name, args.json)
        return
    require_loopback_namespace("python bench/bench_search.py")
    from ninsweep.space import load_space

    cpus = os.cpu_count() or 1
    ours, plains = [], []
    with tempfile.TemporaryDirectory(prefix="ninsweep-bench-") as scratch:
        scratch = Path(scratch)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",
                   NINSWEEP_CACHE_DIR=str(scratch / "cache"))
        space = scratch / "bench-search.yaml"
        space.write_text(space_text(args.trials))
        spec = load_space(space)
        base = spec.trials[0].to_dict()["config"]  # every trial's config but its lr
        for round_index in range(args.rounds):
            ours.append(run_ninsweep(space, scratch / "ninsweep", f"round-{round_index}", env))
            plains.append(run_plain(base, args.trials, scratch / "plain", f"round-{round_index}",
                                    env))
            print(f"round {round_index + 1}/{args.rounds}: ninsweep run {ours[-1]['wall_s']:.1f} s"
                  f" ({ours[-1]['finished']}/{ours[-1]['trials']} trials finished), plain Ray "
                  f"Tune {plains[-1]['wall_s']:.1f} s ({plains[-1]['finished']}/"
                  f"{plains[-1]['trials']})", flush=True)

    def figures(runs: list[dict]) -> dict:
        wall = median(r["wall_s"] for r in runs)
        trials = runs[0]["trials"]
        return {"trials": trials, "finished": min(r["finished"] for r in runs), "wall_s": wall,
                "trials_per_min": 60 * trials / wall,
                "driver_cpu_s": median(r["driver_cpu_s"] for r in runs),
                "driver_cpu_ms_per_trial": 1000 * median(r["driver_cpu_s"] for r in runs) / trials,
                "children_cpu_ms_per_trial":
                    1000 * median(r["children_cpu_s"] for r in runs) / trials,
                "epoch_time_ms_per_trial": 1000 * median(r["epoch_time_s"] for r in runs) / trials,
                "driver_max_rss_mb": median(r["driver_max_rss_mb"] for r in runs)}

    mine, plain = figures(ours), figures(plains)
    ratio = mine["trials_per_min"] / plain["trials_per_min"]
    rows = [("plain Ray Tune (baseline)", plain["trials"], plain["wall_s"], plain["trials_per_min"],
             1.0, plain["driver_cpu_ms_per_trial"], plain["children_cpu_ms_per_trial"]),
            ("ninsweep run", mine["trials"], mine["wall_s"], mine["trials_per_min"], ratio,
             mine["driver_cpu_ms_per_trial"], mine["children_cpu_ms_per_trial"])]
    print()
    print(table(["random search", "trials", "wall s", "trials/min", "x plain",
                 "driver CPU ms/trial", "RUSAGE_CHILDREN ms/trial"], rows,
                ["", "d", ".1f", ".1f", ".3f", ".1f", ".1f"]))
    print(f"\nninsweep / plain Tune, trials per minute: {ratio:.3f}x (goal >= 0.9x); "
          f"{mine['trials']} trials of 1 CPU on {cpus} CPUs, training + test "
          f"{mine['epoch_time_ms_per_trial']:.0f} ms per trial (ninsweep) and "
          f"{plain['epoch_time_ms_per_trial']:.0f} ms (plain); median of {args.rounds} "
          f"round(s).\ndriver CPU: the driver process's own user + system time "
          f"(getrusage(RUSAGE_SELF) at its exit; Ray's workers are the raylet's children, not "
          f"the driver's); RUSAGE_CHILDREN: the driver plus the Ray processes it reaped.")
    write_json(args.json, {"machine": machine(), "settings": vars(args), "ratio": ratio,
                           "ninsweep": mine, "plain": plain,
                           "rounds": {"ninsweep": ours, "plain": plains}})


if __name__ == "__main__":
    main()
