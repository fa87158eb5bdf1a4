"""What checkpointing costs per epoch, how big a checkpoint is, and a trial worker's memory.

Checkpoint time. Baseline: ``torch.save(model.state_dict())``, the weights alone, the least
any checkpoint writes. Ours: what the Ray trainable does after every epoch (lab4.yaml's
``checkpoint.every: 1``): ``Trainer.state_dict()`` (model, optimizer with its momentum
buffers, every RNG, the metrics history) written atomically by ``save_checkpoint``, then
Tune's copy of the checkpoint directory into the trial's storage (timed here as a file copy,
which is what Tune does for local storage). Both run on a Trainer that has trained a few
steps, alternating, --repeats times; figures are medians. The share of an epoch uses a
CIFAR-10 epoch (50,000 training + 10,000 test images) at the training speed measured here;
bench/gpu_grid.py measures the same save on the GPU, where epochs are short.

Memory per trial worker: a fresh process per measurement, peak and final resident memory.
Baseline: torch imported, the same NIN + SGD, a few training steps on a batch made in place
(no dataset). Ours: a ``Trainer`` on CIFAR-size data (50,000 + 10,000 synthetic 32x32
images, memory-mapped from ninsweep's cache as in every trial) doing the same steps through
its DeviceLoader plus one evaluation batch. "anonymous" is memory no other process can
share (unlike the libraries' and the memory-mapped cache's clean file pages): what each
extra trial on a node adds.

    python bench/bench_checkpoint.py                        # ~1 min on 2 cores
    python bench/bench_checkpoint.py --activation maxout --batchnorm --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchutil import machine, median, rss_mb, table, write_json

from ninsweep import metrics as M
from ninsweep.config import TrialConfig
from ninsweep.core.checkpoint import save_checkpoint
from ninsweep.core.data import load_data
from ninsweep.core.model import NIN, count_parameters
from ninsweep.core.train import Trainer
from ninsweep.experiment_dir import CHECKPOINT_FILE

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


def trial_config(args: argparse.Namespace, cache_dir: str, train_size: int,
                 test_size: int) -> TrialConfig:
    return TrialConfig.from_dict({
        "model": {"activation": args.activation, "batchnorm": args.batchnorm,
                  "init": "he" if args.batchnorm else "keras"},
        "data": {"source": "synthetic", "cache_dir": cache_dir,
                 "synthetic_train_size": train_size, "synthetic_test_size": test_size,
                 "synthetic_image_size": 32},
        "train": {"device": "cpu", "threads": args.threads, "epochs": 1000},
    })


def train_steps(trainer: Trainer, steps: int) -> None:
    """``steps`` training steps exactly as ``Trainer.train_one_epoch`` takes them."""
    trainer.model.train()
    batches = trainer.train_loader.epoch(trainer.data_generator)
    for _, (images, labels) in zip(range(steps), batches):
        loss = F.cross_entropy(trainer.step_model(images), labels)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()


# -- checkpoint time and size ---------------------------------------------------------------

def checkpoint_figures(args: argparse.Namespace, scratch: Path) -> dict:
    cfg = trial_config(args, str(scratch / "cache-small"), args.train_size, 500)
    trainer = Trainer(cfg, data=load_data(cfg.data))
    # A real epoch: its speed gives the epoch time, and the history has an entry to save.
    result = trainer.train_one_epoch()
    eval_started = time.perf_counter()
    trainer.evaluate()
    eval_images_per_s = 500 / (time.perf_counter() - eval_started)
    train_images_per_s = result[M.IMAGES_PER_S]

    weights_path = scratch / "weights.pt"
    ckpt_dir = scratch / "ninsweep-ckpt"
    storage = scratch / "trial-storage"

    def baseline() -> float:
        started = time.perf_counter()
        torch.save(trainer.model.state_dict(), weights_path)
        return time.perf_counter() - started

    def ours() -> tuple[float, float]:
        started = time.perf_counter()
        save_checkpoint(trainer.state_dict(), ckpt_dir / CHECKPOINT_FILE)
        saved = time.perf_counter()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.copytree(ckpt_dir, storage)  # Tune's copy into the trial directory
        return saved - started, time.perf_counter() - saved

    baseline(), ours()  # warm-up: page cache, allocator
    base_s, save_s, copy_s = [], [], []
    for _ in range(args.repeats):
        base_s.append(baseline())
        saved, copied = ours()
        save_s.append(saved)
        copy_s.append(copied)
    epoch_s = CIFAR_TRAIN / train_images_per_s + CIFAR_TEST / eval_images_per_s
    return {
        "parameters": count_parameters(trainer.model),
        "weights_mb": weights_path.stat().st_size / 2**20,
        "checkpoint_mb": (ckpt_dir / CHECKPOINT_FILE).stat().st_size / 2**20,
        "weights_save_s": median(base_s),
        "checkpoint_save_s": median(save_s),
        "tune_copy_s": median(copy_s),
        "train_images_per_s": train_images_per_s,
        "eval_images_per_s": eval_images_per_s,
        "cifar_epoch_s": epoch_s,
        "samples": {"weights_save_s": base_s, "checkpoint_save_s": save_s, "tune_copy_s": copy_s},
    }


# -- memory per worker ----------------------------------------------------------------------

def memory_worker(kind: str, args: argparse.Namespace, cache_dir: str) -> None:
    """Runs in a fresh process; prints one JSON line of memory figures."""
    torch.set_num_threads(args.threads)
    stages = {"after import": rss_mb()}
    cfg = trial_config(args, cache_dir, args.memory_train_size, args.memory_test_size)
    if kind == "baseline":
        torch.manual_seed(0)
        model = NIN(cfg.model).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        stages["model built"] = rss_mb()
        images = torch.randn(cfg.train.batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (cfg.train.batch_size,))
        for _ in range(args.steps):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        stages["after training steps"] = rss_mb()
        with torch.no_grad():
            model.eval()
            model(torch.randn(cfg.train.eval_batch_size, 3, 32, 32)
                  .to(memory_format=torch.channels_last))
    else:
        trainer = Trainer(cfg)
        stages["model built"] = rss_mb()
        train_steps(trainer, args.steps)
        stages["after training steps"] = rss_mb()
        with torch.no_grad():  # one evaluation batch, as Trainer.evaluate runs it
            trainer.model.eval()
            images, _ = next(trainer.test_loader.epoch(None))
            trainer.step_model(images)
    stages["after an eval batch"] = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kind": kind, "peak_rss_mb": peak, "stages": stages}))


def memory_figures(args: argparse.Namespace, cache_dir: str) -> dict:
    def run(kind: str) -> dict:
        command = [sys.executable, __file__, "--memory-worker", kind, "--cache-dir", cache_dir,
                   "--threads", str(args.threads), "--steps", str(args.steps),
                   "--memory-train-size", str(args.memory_train_size),
                   "--memory-test-size", str(args.memory_test_size),
                   "--activation", args.activation] + (["--batchnorm"] if args.batchnorm else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    runs: dict[str, list[dict]] = {"baseline": [], "trainer": []}
    for _ in range(args.memory_repeats):
        for kind in runs:
            runs[kind].append(run(kind))
    figures = {}
    for kind, records in runs.items():
        final = [r["stages"]["after an eval batch"] for r in records]
        figures[kind] = {"peak_rss_mb": median(r["peak_rss_mb"] for r in records),
                         "rss_mb": median(f["rss"] for f in final),
                         "private_mb": median(f["private"] for f in final),
                         "anonymous_mb": median(f["anonymous"] for f in final),
                         "shared_mb": median(f["shared"] for f in final),
                         "stages": records[-1]["stages"]}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-size", type=int, default=256,
                        help="images of the one epoch whose speed sets the CIFAR epoch time")
    parser.add_argument("--repeats", type=int, default=7, help="checkpoint saves per side")
    parser.add_argument("--memory-repeats", type=int, default=2, help="worker processes per side")
    parser.add_argument("--steps", type=int, default=3, help="training steps in each worker")
    parser.add_argument("--memory-train-size", type=int, default=CIFAR_TRAIN,
                        help="training images of each memory worker (default CIFAR-10's)")
    parser.add_argument("--memory-test-size", type=int, default=CIFAR_TEST)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--memory-worker", choices=("baseline", "trainer"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(args.memory_worker, args, args.cache_dir)
        return

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ninsweep-bench-") as scratch:
        scratch = Path(scratch)
        cache_dir = str(scratch / "cache")
        started = time.perf_counter()
        load_data(trial_config(args, cache_dir, args.memory_train_size,
                               args.memory_test_size).data)
        print(f"NIN {args.activation}{' + BN' if args.batchnorm else ''}, {args.threads} "
              f"threads, torch {torch.__version__}; {args.memory_train_size} + "
              f"{args.memory_test_size} image synthetic cache built in "
              f"{time.perf_counter() - started:.1f} s\n", flush=True)
        ckpt = checkpoint_figures(args, scratch)
        memory = memory_figures(args, cache_dir)

    epoch_s = ckpt["cifar_epoch_s"]
    ours_s = ckpt["checkpoint_save_s"] + ckpt["tune_copy_s"]
    print(table(
        ["checkpoint per epoch", "MB", "save s", "ratio", "share of a CIFAR epoch"],
        [("torch.save(model.state_dict()) (baseline)", ckpt["weights_mb"],
          ckpt["weights_save_s"], 1.0, f"{100 * ckpt['weights_save_s'] / epoch_s:.3f}%"),
         ("Trainer.state_dict + save_checkpoint", ckpt["checkpoint_mb"],
          ckpt["checkpoint_save_s"], ckpt["checkpoint_save_s"] / ckpt["weights_save_s"],
          f"{100 * ckpt['checkpoint_save_s'] / epoch_s:.3f}%"),
         ("  + Tune's copy into trial storage", "", ours_s, ours_s / ckpt["weights_save_s"],
          f"{100 * ours_s / epoch_s:.3f}%")],
        ["", ".2f", ".4f", ".2f", ""]))
    print(f"\n{ckpt['parameters']:,} parameters; a CIFAR-10 epoch here takes {epoch_s:.0f} s "
          f"({ckpt['train_images_per_s']:.0f} train images/s, {ckpt['eval_images_per_s']:.0f} "
          f"eval images/s on {args.threads} threads); medians of {args.repeats} saves.\n")
    base_mem = memory["baseline"]
    ours_mem = memory["trainer"]
    print(table(
        ["memory per trial worker", "peak RSS MiB", "RSS MiB", "anonymous MiB", "ratio"],
        [("torch + NIN + SGD, no data (baseline)", base_mem["peak_rss_mb"], base_mem["rss_mb"],
          base_mem["anonymous_mb"], 1.0),
         (f"Trainer on {args.memory_train_size} + {args.memory_test_size} images",
          ours_mem["peak_rss_mb"], ours_mem["rss_mb"],
          ours_mem["anonymous_mb"], ours_mem["anonymous_mb"] / base_mem["anonymous_mb"])],
        ["", ",.0f", ",.0f", ",.0f", ".2f"]))
    data_mb = (args.memory_train_size + args.memory_test_size) * 3 * 32 * 32 / 2**20
    print(f"\nThe Trainer adds {ours_mem['anonymous_mb'] - base_mem['anonymous_mb']:.0f} MiB of "
          f"anonymous memory; the uint8 images are {data_mb:.0f} MiB (memory-mapped from the "
          f"cache, channels_last; on CPU DeviceLoader reads them in place). {args.steps} training steps "
          f"of batch 128 and one evaluation batch of 500 per worker; medians of "
          f"{args.memory_repeats} processes each.")
    write_json(args.json, {"machine": machine(), "settings": vars(args), "checkpoint": ckpt,
                           "memory": memory})


if __name__ == "__main__":
    main()
