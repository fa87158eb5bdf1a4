"""Images/s of ninsweep's training loop against a plain PyTorch loop over the same model, CPU.

Baseline: the loop anyone would write, in this file: the NIN of ``ninsweep.core.model`` in
channels_last, the training images normalised once into a float32 NHWC tensor, each batch a
gather plus a permute (a channels_last view), cross-entropy, SGD (Nesterov, the recipe's
lr / momentum / weight decay), nothing else: no augmentation, no metrics, no host syncs. It
is the floor for this model on this machine, so every cost ninsweep adds shows up.
Ours: ``Trainer.train_one_epoch`` on the same images, batch size, model settings and thread
count: on-device crop + flip augmentation from uint8, loss/accuracy sums, evaluation.
With --ray, two more rows: the same Trainer inside a one-trial Ray Tune run started by
ninsweep's own ``start_ray`` and trainable (checkpoint every epoch, as lab4.yaml), with the
trial's threads left to Ray as a sweep leaves them; and, as that row's like-for-like
baseline, the Trainer in a fresh process without Ray (a trial is a fresh process: both
train one warm-up epoch and report the second).

"train images/s" is training images over training time (evaluation excluded; the Trainer's
own images_per_s metric, measured the same way for the baseline); "epoch" adds evaluation
of the test images by each loop. Each round runs every loop for one epoch (after one untimed
warm-up epoch), in A B A B order (reversed on odd rounds). Figures are medians over the
rounds; "ratio" is the median of the per-round ratios (each pair ran seconds apart, under the
same load from other processes), so a shared machine's noise hits both sides alike. Short
epochs and many rounds beat long epochs and few on a busy machine.

    python bench/bench_train_loop.py                          # ~1.5 min on 2 cores
    python bench/bench_train_loop.py --train-size 2048 --rounds 9 --activation maxout
    bash bench/netns.sh python bench/bench_train_loop.py --ray   # starts Ray: netns only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchutil import machine, median, require_loopback_namespace, table, write_json

from ninsweep import metrics as M
from ninsweep.config import TrialConfig
from ninsweep.core.data import ImageData, load_data
from ninsweep.core.model import NIN
from ninsweep.core.train import Trainer


class PlainLoop:
    """A plain channels_last PyTorch loop: the baseline."""

    def __init__(self, cfg: TrialConfig, data: ImageData) -> None:
        self.batch_size = cfg.train.batch_size
        self.eval_batch_size = cfg.train.eval_batch_size
        torch.manual_seed(cfg.train.seed)
        self.model = NIN(cfg.model).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
            nesterov=cfg.train.nesterov, weight_decay=cfg.train.weight_decay)
        mean = torch.tensor(data.mean).view(1, 1, 1, -1)
        std = torch.tensor(data.std).view(1, 1, 1, -1)

        def normalised(images: torch.Tensor) -> torch.Tensor:
            return ((images.permute(0, 2, 3, 1).float() - mean) / std).contiguous()

        self.train_x, self.train_y = normalised(data.train_images), data.train_labels.clone()
        self.test_x, self.test_y = normalised(data.test_images), data.test_labels.clone()
        self.generator = torch.Generator().manual_seed(cfg.train.seed)

    def train_epoch(self) -> tuple[int, float]:
        """(images, seconds) of one shuffled pass over the training images."""
        self.model.train()
        started = time.perf_counter()
        order = torch.randperm(len(self.train_y), generator=self.generator)
        for index in order.split(self.batch_size):
            images = self.train_x[index].permute(0, 3, 1, 2)  # NHWC memory = channels_last
            loss = F.cross_entropy(self.model(images), self.train_y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return len(self.train_y), time.perf_counter() - started

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        started = time.perf_counter()
        for start in range(0, len(self.test_y), self.eval_batch_size):
            stop = start + self.eval_batch_size
            F.cross_entropy(self.model(self.test_x[start:stop].permute(0, 3, 1, 2)),
                            self.test_y[start:stop])
        return time.perf_counter() - started


def plain_round(loop: PlainLoop) -> dict[str, float]:
    images, train_s = loop.train_epoch()
    eval_s = loop.evaluate()
    return {"train_images_per_s": images / train_s, "epoch_s": train_s + eval_s}


def trainer_round(trainer: Trainer) -> dict[str, float]:
    started = time.perf_counter()
    result = trainer.train_one_epoch()
    return {"train_images_per_s": result[M.IMAGES_PER_S],
            "epoch_s": time.perf_counter() - started}


def fresh_process_round(cfg: TrialConfig) -> dict[str, float]:
    """A new Python process trains a new Trainer for one warm-up and one timed epoch."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg.to_dict())],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(config: str) -> None:
    trainer = Trainer(TrialConfig.from_dict(json.loads(config)))
    trainer.train_one_epoch()
    result = trainer.train_one_epoch()
    print(json.dumps({"train_images_per_s": result[M.IMAGES_PER_S],
                      "epoch_s": result[M.EPOCH_TIME_S]}))


class RayTrial:
    """The Trainer inside a one-trial Tune run, through ninsweep's start_ray and trainable."""

    def __init__(self, cfg: TrialConfig, cpus: int, storage: Path, leave_threads_to_ray: bool):
        from ninsweep.sweep.ray_cluster import start_ray

        start_ray(None, log=lambda message: None)
        self.cfg = cfg.replace(train={"threads": None}) if leave_threads_to_ray else cfg
        self.cpus = cpus
        self.storage = storage
        self.runs = 0
        self.threads_seen: list[int] = []

    def round(self) -> dict[str, float]:
        """A fresh trial: one warm-up epoch, one timed (images/s as the trial reported it)."""
        from ray import tune

        from ninsweep.sweep.trainable import make_trainable

        self.runs += 1
        threads_file = self.storage / f"threads-{self.runs}.txt"
        ninsweep_trial = make_trainable(checkpoint_every=1)

        def bench_trial(config):
            threads_file.write_text(str(torch.get_num_threads()))  # what Ray gave the trial
            ninsweep_trial(config)

        cfg = self.cfg.replace(train={"epochs": 2})
        tuner = tune.Tuner(
            tune.with_resources(bench_trial, {"cpu": self.cpus}),
            param_space={"trial": {"name": "bench", "params": {}, "config": cfg.to_dict()}},
            run_config=tune.RunConfig(name=f"round-{self.runs}", storage_path=str(self.storage),
                                      verbose=0))
        result = tuner.fit()[0]
        if result.error is not None:
            raise RuntimeError(f"the Ray trial failed: {result.error}")
        history = result.metrics_dataframe
        timed = history[history[M.EPOCH] == 2].iloc[-1]
        self.threads_seen.append(int(threads_file.read_text()))
        return {"train_images_per_s": float(timed[M.IMAGES_PER_S]),
                "epoch_s": float(timed[M.EPOCH_TIME_S])}

    def close(self) -> None:
        import ray

        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=256, help="synthetic training images")
    parser.add_argument("--test-size", type=int, default=64, help="synthetic test images")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for every loop (default: all cores)")
    parser.add_argument("--rounds", type=int, default=15, help="timed epochs per loop")
    parser.add_argument("--ray", action="store_true",
                        help="add the Trainer inside a Ray Tune trial (starts Ray: netns only)")
    parser.add_argument("--ray-threads", choices=("ray", "explicit"), default="ray",
                        help="the trial's torch threads: left to Ray as in a sweep (default), "
                             "or set to --threads through train.threads")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    if args.ray:
        require_loopback_namespace("python bench/bench_train_loop.py --ray")

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ninsweep-bench-") as scratch:
        cfg = TrialConfig.from_dict({
            "model": {"activation": args.activation, "batchnorm": args.batchnorm},
            "data": {"source": "synthetic", "cache_dir": str(Path(scratch, "cache")),
                     "synthetic_train_size": args.train_size,
                     "synthetic_test_size": args.test_size,
                     "synthetic_image_size": args.image_size},
            "train": {"batch_size": args.batch_size, "threads": args.threads, "device": "cpu",
                      "epochs": 1000},
        })
        data = load_data(cfg.data)
        print(f"NIN {args.activation}{' + BN' if args.batchnorm else ''}, {args.train_size} "
              f"train / {args.test_size} test synthetic images {args.image_size}x"
              f"{args.image_size}, batch {args.batch_size}, {args.threads} threads, "
              f"torch {torch.__version__}, {args.rounds} rounds\n", flush=True)

        plain = PlainLoop(cfg, data)
        trainer = Trainer(cfg, data=data)
        loops = {"plain": lambda: plain_round(plain), "trainer": lambda: trainer_round(trainer)}
        ray_trial = None
        if args.ray:
            ray_trial = RayTrial(cfg, args.threads, Path(scratch, "ray"),
                                 leave_threads_to_ray=args.ray_threads == "ray")
            loops["process"] = lambda: fresh_process_round(cfg)
            loops["ray"] = ray_trial.round
        plain_round(plain), trainer_round(trainer)  # warm-up: allocator, oneDNN primitives
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in loops}
        try:
            for round_index in range(args.rounds):
                order = list(loops) if round_index % 2 == 0 else list(reversed(loops))
                for name in order:
                    samples[name].append(loops[name]())
                line = "  ".join(f"{name} {samples[name][-1]['train_images_per_s']:.1f}"
                                 for name in loops)
                print(f"round {round_index + 1}/{args.rounds}: train images/s {line}", flush=True)
        finally:
            if ray_trial is not None:
                ray_trial.close()

    medians = {name: {key: median(s[key] for s in runs) for key in runs[0]}
               for name, runs in samples.items()}

    def paired(name: str, key: str, against: str = "plain") -> float:
        """Median over rounds of this round's ours / baseline (epoch_s: baseline / ours)."""
        pairs = zip(samples[name], samples[against])
        if key == "epoch_s":
            return median(base[key] / ours[key] for ours, base in pairs)
        return median(ours[key] / base[key] for ours, base in pairs)

    labels = {"plain": "plain PyTorch loop, channels_last (baseline)",
              "trainer": "ninsweep Trainer, no Ray",
              "process": "ninsweep Trainer, fresh process, no Ray",
              "ray": "ninsweep Trainer in a Ray Tune trial"}
    rows = []
    for name, figures in medians.items():
        threads = args.threads
        if name == "ray" and ray_trial is not None:
            threads = median(ray_trial.threads_seen)
        rows.append((labels[name], threads, figures["train_images_per_s"],
                     paired(name, "train_images_per_s"), figures["epoch_s"],
                     paired(name, "epoch_s")))
    print()
    print(table(["loop", "threads", "train images/s", "ratio", "epoch s", "ratio"], rows,
                ["", "g", ",.1f", ".3f", ".2f", ".3f"]))
    print(f"\nmedians of {args.rounds} interleaved rounds; ratio = median of the rounds' "
          f"ours / baseline (goal >= 0.97); epoch = training + evaluation of {args.test_size} "
          "images.")
    if "ray" in samples:
        print(f"Ray trial against the fresh process without Ray: "
              f"{paired('ray', 'train_images_per_s', 'process'):.3f}")
    write_json(args.json, {
        "machine": machine(), "settings": vars(args), "medians": medians, "samples": samples,
        "ratio": {name: paired(name, "train_images_per_s") for name in samples},
        "ratio_of_medians": {name: m["train_images_per_s"]
                             / medians["plain"]["train_images_per_s"]
                             for name, m in medians.items()}})


if __name__ == "__main__":
    main()
