"""Fidelity probe: ELU+BN+WI and plain ReLU trained side by side on the real CIFAR-10 JPEGs.

The report's best and baseline cells (91.67% and 90.50% after 164 epochs) on the lab4 recipe
(pool 2 average, as lab4.yaml), compressed into the time a device check has: both models
train at once (one process each, sharing the device as packed trials do), the first epoch
is timed, and the run length E is then chosen so that both finish before the deadline, with
the learning-rate steps at the same fractions of the run as the reference's 81/164 and
122/164. Test accuracy is reported every epoch. A short run cannot reach the report's
numbers; what it shows is that the real data, the recipe and the device path learn, and
whether ELU+BN+WI leads ReLU as in the report.

No Ray: torch, torchvision and ninsweep only.

    python bench/fidelity_probe.py --archive .carry/data/cifar10-jpeg.tar.gz --budget-s 180 \
        --out probe.json
    python bench/fidelity_probe.py --archive tiny.zip --device cpu --train-size 200 --max-epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_grid import LineReader, WorkerProcess, send, unpack_images  # noqa: E402

from ninsweep import metrics as M  # noqa: E402
from ninsweep.config import DataConfig, TrialConfig, to_dict  # noqa: E402
from ninsweep.core.data import load_data  # noqa: E402

# name -> (model settings, the report's final test accuracy after 164 epochs)
MODELS = {
    "ELU+BN+WI": ({"activation": "elu", "batchnorm": True, "init": "he", "pool2": "avg"}, 91.67),
    "ReLU": ({"activation": "relu", "batchnorm": False, "init": "keras", "pool2": "avg"}, 90.50),
}
REFERENCE_EPOCHS = 164
REFERENCE_MILESTONES = (81, 122)


def scaled_milestones(epochs: int) -> list[int]:
    """The reference's lr steps (epochs 81 and 122 of 164, 0-indexed) at the same fractions
    of a run of ``epochs`` epochs; at least epoch 1 (the first epoch runs before the plan)."""
    first, second = (max(1, round(epochs * m / REFERENCE_EPOCHS)) for m in REFERENCE_MILESTONES)
    return [first, max(first, second)]


def plan_epochs(first_epoch_s: float, seconds_left: float, max_epochs: int) -> int:
    """Epochs in all (the first included) that fit ``seconds_left`` after the first."""
    more = math.floor(max(0.0, seconds_left) / max(first_epoch_s, 1e-6))
    return max(1, min(max_epochs, 1 + more))


# -- worker ---------------------------------------------------------------------------------

def worker_main(spec: dict[str, Any]) -> None:
    from ninsweep.core.train import Trainer

    torch.set_num_threads(spec["threads"])
    started = time.perf_counter()
    trainer = Trainer(TrialConfig.from_dict(spec["config"]))
    send({"event": "ready", "setup_s": time.perf_counter() - started})
    commands = LineReader(sys.stdin.fileno())
    while not trainer.finished:
        result = trainer.train_one_epoch()
        send({"event": "epoch", **{k: result[k] for k in (
            M.EPOCH, M.LR, M.TRAIN_LOSS, M.TRAIN_ACC, M.TEST_LOSS, M.TEST_ACC,
            M.EPOCH_TIME_S, M.IMAGES_PER_S)}})
        if trainer.epoch == 1:  # wait for the plan: the run's length and its lr steps
            command = json.loads(commands.poll(None))
            if command["cmd"] != "plan":  # "stop", or "exit" from a parent that gave up
                break
            # Trainer reads epochs and milestones from its config at every epoch.
            trainer.cfg = trainer.cfg.replace(train={"epochs": command["epochs"],
                                                     "lr_milestones": command["milestones"]})
        line = commands.poll(0)
        if line is not None and json.loads(line)["cmd"] == "stop":
            break
    send({"event": "stopped", "epochs": trainer.epoch})
    commands.poll(None)  # "exit"


# -- parent ---------------------------------------------------------------------------------

class ProbeWorker(WorkerProcess):
    def __init__(self, name: str, spec: dict[str, Any], log_dir: Path) -> None:
        super().__init__(name, Path(__file__).resolve(), spec,
                         log_dir / f"probe-{name.replace('+', '_')}.log")
        self.epochs: list[dict[str, Any]] = []
        self.stopped = False


def prepare_data(args: argparse.Namespace, scratch: Path) -> DataConfig:
    work = Path(args.work_dir) if args.work_dir else scratch
    root = unpack_images(Path(args.archive), work / "images")
    cfg = DataConfig(source="imagefolder", root=str(root), cache_dir=str(work / "cache"),
                     train_subset=args.train_size, test_subset=args.test_size)
    load_data(cfg)  # decode once here; both workers memory-map the cache
    return cfg


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    deadline = began + args.budget_s
    scratch = Path(tempfile.mkdtemp(prefix="ninsweep-probe-"))
    workers: list[ProbeWorker] = []
    plan: Optional[dict[str, Any]] = None
    stopped_early = False
    try:
        data_cfg = prepare_data(args, scratch)
        data_s = time.monotonic() - began
        print(f"probe: data ready in {data_s:.1f} s", flush=True)
        threads = max(1, (os.cpu_count() or 1) // len(MODELS))
        if args.device == "cuda":
            threads = min(threads, 2)
        for name, (model, _) in MODELS.items():
            cfg = TrialConfig.from_dict({
                "model": model, "data": to_dict(data_cfg),
                "train": {"epochs": args.max_epochs, "batch_size": args.batch_size,
                          "device": args.device, "seed": args.seed,
                          # provisional: replaced after the first epoch by the plan
                          "lr_milestones": list(scaled_milestones(args.max_epochs))}})
            workers.append(ProbeWorker(name, {"config": cfg.to_dict(), "threads": threads},
                                       scratch))
        for worker in workers:
            record = worker.receive(max(30.0, deadline - time.monotonic()))
            if record is None or record["event"] != "ready":
                raise RuntimeError(f"probe worker {worker.name} did not start: {record!r}; "
                                   f"its log:\n{worker.log_tail()}")
        # The first epoch of both, at once: its wall time sets the plan.
        for worker in workers:
            worker.epochs.append(_expect_epoch(worker, deadline - time.monotonic() + 60))
        first_epoch_s = max(w.epochs[0][M.EPOCH_TIME_S] for w in workers)
        left = deadline - time.monotonic() - args.margin_s
        epochs = plan_epochs(first_epoch_s, left, args.max_epochs)
        plan = {"epochs": epochs, "milestones": scaled_milestones(epochs),
                "first_epoch_s": first_epoch_s, "seconds_left_at_plan": left}
        print(f"probe: first epoch {first_epoch_s:.1f} s with both models; {epochs} epochs, "
              f"lr steps after epochs {plan['milestones']} "
              f"(reference: {list(REFERENCE_MILESTONES)} of {REFERENCE_EPOCHS})", flush=True)
        for worker in workers:
            worker.send({"cmd": "plan", "epochs": epochs, "milestones": plan["milestones"]})
        # Then every epoch as it ends; past the deadline, stop both between epochs.
        stop_sent = False
        while not all(w.stopped for w in workers):
            for worker in workers:
                if worker.stopped:
                    continue
                record = worker.receive(0.2)
                if record is None:
                    continue
                if record["event"] == "epoch":
                    worker.epochs.append(record)
                    print(f"probe: {worker.name:<10} epoch {record[M.EPOCH]:>3}/{epochs} "
                          f"lr {record[M.LR]:.4g} test acc {100 * record[M.TEST_ACC]:.2f}% "
                          f"({record[M.EPOCH_TIME_S]:.1f} s)", flush=True)
                elif record["event"] == "stopped":
                    worker.stopped = True
            if not stop_sent and time.monotonic() > deadline:
                stop_sent = stopped_early = True
                print("probe: deadline reached; stopping after the current epochs", flush=True)
                for worker in workers:
                    if not worker.stopped:
                        worker.send({"cmd": "stop"})
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return assemble(args, plan, workers, stopped_early, time.monotonic() - began)


def _expect_epoch(worker: ProbeWorker, timeout: float) -> dict[str, Any]:
    record = worker.receive(max(1.0, timeout))
    if record is None or record["event"] != "epoch":
        raise RuntimeError(f"probe worker {worker.name}: no first epoch ({record!r}); its "
                           f"log:\n{worker.log_tail()}")
    print(f"probe: {worker.name:<10} epoch   1 test acc {100 * record[M.TEST_ACC]:.2f}% "
          f"({record[M.EPOCH_TIME_S]:.1f} s)", flush=True)
    return record


def assemble(args, plan, workers, stopped_early, total_s) -> dict[str, Any]:
    models = {}
    for worker in workers:
        model, reference = MODELS[worker.name]
        history = worker.epochs
        models[worker.name] = {
            "model": model, "report_acc_pct_164_epochs": reference,
            "epochs_done": len(history),
            "final_test_acc_pct": 100 * history[-1][M.TEST_ACC] if history else None,
            "best_test_acc_pct": max(100 * r[M.TEST_ACC] for r in history) if history else None,
            "history": history,
        }
    finals = [models[name]["final_test_acc_pct"] for name in MODELS]
    return {
        "format": 1,
        "device": {"type": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
                   "name": (torch.cuda.get_device_name(0) if args.device == "cuda"
                            else "cpu")},
        "settings": {k: v for k, v in vars(args).items() if k != "worker"},
        "plan": plan,
        "reference": {"epochs": REFERENCE_EPOCHS, "milestones": list(REFERENCE_MILESTONES),
                      "gap_pct": MODELS["ELU+BN+WI"][1] - MODELS["ReLU"][1]},
        "models": models,
        "gap_pct": None if None in finals else finals[0] - finals[1],
        "stopped_early": stopped_early,
        "total_s": total_s,
    }


def report(result: dict[str, Any]) -> str:
    plan = result["plan"]
    names = list(result["models"])
    lines = [f"\nfidelity probe on {result['device']['name']}: {', '.join(names)} side by side, "
             f"{plan['epochs']} epochs, lr x0.1 after epochs {plan['milestones']} (the "
             f"reference: {result['reference']['milestones']} of "
             f"{result['reference']['epochs']})" + (" -- stopped early at the deadline"
                                                    if result["stopped_early"] else ""),
             f"{'epoch':>5} {'lr':>7} " + " ".join(f"{n + ' test %':>16}" for n in names)]
    longest = max(len(m["history"]) for m in result["models"].values())
    for index in range(longest):
        cells, lr = [], None
        for name in names:
            history = result["models"][name]["history"]
            if index < len(history):
                cells.append(f"{100 * history[index][M.TEST_ACC]:>16.2f}")
                lr = history[index][M.LR]
            else:
                cells.append(f"{'-':>16}")
        lines.append(f"{index + 1:>5} {lr:>7.4g} " + " ".join(cells))
    for name in names:
        m = result["models"][name]
        lines.append(f"{name}: final {m['final_test_acc_pct']:.2f}% after {m['epochs_done']} "
                     f"epochs (report: {m['report_acc_pct_164_epochs']:.2f}% after 164)")
    if result["gap_pct"] is not None:
        lines.append(f"gap ELU+BN+WI - ReLU: {result['gap_pct']:+.2f} points (report: "
                     f"{result['reference']['gap_pct']:+.2f} after 164 epochs)")
    lines.append(f"probe total {result['total_s']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", "--zip", dest="archive",
                        help="cifar10-jpeg.tar.gz or .zip (train/<class>/*.jpg, "
                             "test/<class>/*.jpg)")
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="seconds for everything, data included")
    parser.add_argument("--margin-s", type=float, default=10.0,
                        help="seconds kept free at the end when planning the epochs")
    parser.add_argument("--max-epochs", type=int, default=REFERENCE_EPOCHS)
    parser.add_argument("--train-size", type=int, help="first N training images (default all)")
    parser.add_argument("--test-size", type=int, help="first N test images (default all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--work-dir", help="unpack and decode the images here and keep them "
                                           "(default: a temporary folder, removed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if not args.archive or not Path(args.archive).is_file():
        parser.error(f"--archive {args.archive}: no such file")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.max_epochs < 1:
        parser.error("--max-epochs: must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return
    out = Path(args.out) if args.out else None
    try:
        result = run(args)
    except Exception as err:
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"format": 1, "error": f"{type(err).__name__}: {err}"[-6000:]},
                                      indent=2) + "\n")
        raise
    print(report(result))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
