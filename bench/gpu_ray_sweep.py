"""Part (d) of the device check: `ninsweep run` through Ray Tune, trials packed on one GPU.

The mission's own path, end to end: the lab4 grid (10 trials) for a few epochs of CIFAR-10,
first at lab4.yaml's 0.25 GPU per trial (Ray packs 4 on the GPU), then the same trials at 1
GPU each (one at a time), both as a user runs them (`python -m ninsweep run`, a local Ray on
127.0.0.1, a new process per run). Read back from each experiment directory, per trial:
the GPU ids Ray granted and the device it trained on (its trial.log), bf16 (train.amp on a
CUDA device), images/s (the Trainer's, per epoch), peak GPU memory, and its start: the
first report's time less its first epoch (CUDA context, data onto the device, model). Per
run: aggregate training images/s over the span from the first epoch's start to the last
epoch's end, the packed / one-at-a-time ratio, the lab4 grid (10 x 164 epochs) projected
at the packed rate, and MFU against the card's bf16 peak. Printed as ratios and
projections; nothing asserts a time.

Data: --archive (cifar10-jpeg.tar.gz or .zip: train/<class>/*.jpg, test/<class>/*.jpg),
unpacked and decoded once before Ray starts so no trial's start includes decoding; or
--synthetic-cifar (50,000 + 10,000 synthetic 32x32 images: the same work per image), or
the space's own data (--tiny: smoke.yaml on CPU, --packed-gpus 0).

    python bench/gpu_ray_sweep.py --archive .carry/data/cifar10-jpeg.tar.gz --out d.json
    python bench/gpu_ray_sweep.py --space smoke --epochs 1 --packed-gpus 0 --single-gpus 0 \\
        --packed-cpus 1 --single-cpus 2          # on CPU, inside bench/netns.sh
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LAB4_TRIALS, LAB4_EPOCHS, CIFAR_TRAIN, CIFAR_TEST = 10, 164, 50_000, 10_000
BF16_PEAK_TFLOPS = 989.4  # H100 / H200 SXM, dense bf16 (datasheet)
GRANTED = re.compile(r"^(?P<trial>\S+): Ray granted GPU ids (?P<ids>\[.*?\]); training on "
                     r"(?P<device>\S+)", re.M)
DEVICE_LINE = re.compile(r"^(?P<trial>\S+): device (?P<line>.*)$", re.M)


# -- one run --------------------------------------------------------------------------------

def run_sweep(args: argparse.Namespace, name: str, gpus: float, cpus: float,
              overrides: list[str], limit_s: float, log_path: Path) -> dict[str, Any]:
    """`python -m ninsweep run` with these resources; stopped (SIGINT, then its process group
    killed) past ``limit_s``. Returns its exit status and wall time."""
    command = [sys.executable, "-m", "ninsweep", "run", args.space, "--name", name,
               "--storage", str(args.storage), "--max-epochs", str(args.epochs),
               "--gpus-per-trial", f"{gpus:g}", "--cpus-per-trial", f"{cpus:g}", "-q"]
    for assignment in overrides:
        command += ["--set", assignment]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    print(f"(d) {name}: {' '.join(command[2:])} (up to {limit_s:.0f} s)", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        # Its own session: on a time-out everything it started (Ray's processes) goes with it.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        cut = False
        try:
            status = process.wait(timeout=max(1.0, limit_s))
        except subprocess.TimeoutExpired:
            cut = True
            process.send_signal(signal.SIGINT)  # ninsweep stops Tune and writes its tables
            try:
                status = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                status = process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of Ray outlived the driver
        except ProcessLookupError:
            pass
    wall = time.monotonic() - started
    # ninsweep's own one-line error, when it refused or failed (e.g. "no GPUs" in this Ray)
    errors = [line for line in log_path.read_text(errors="replace").splitlines()
              if line.startswith("ninsweep: error:")]
    print(f"(d) {name}: exit {status} after {wall:.1f} s" + (" (cut at its limit)" if cut
                                                             else "")
          + (f": {errors[-1]}" if errors else ""), flush=True)
    return {"name": name, "gpus_per_trial": gpus, "cpus_per_trial": cpus, "exit": status,
            "cut": cut, "wall_s": wall, "log": str(log_path),
            "error": errors[-1][:500] if errors else None}


# -- reading an experiment back ------------------------------------------------------------

def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "epoch" in record:
                records.append(record)
    last: dict[int, dict] = {}
    for record in records:  # a restored trial may report an epoch twice: keep the last
        last[record["epoch"]] = record
    return [last[e] for e in sorted(last)]


def trial_summary(trial_dir: Path, forward_flop) -> Optional[dict[str, Any]]:
    params = trial_dir / "params.json"
    if not params.is_file():
        return None
    trial = json.loads(params.read_text())["trial"]
    config = trial["config"]
    records = read_records(trial_dir / "result.json")
    log = (trial_dir / "trial.log").read_text(errors="replace") if (
        trial_dir / "trial.log").is_file() else ""
    granted = GRANTED.search(log)
    device_line = DEVICE_LINE.search(log)
    device = granted["device"] if granted else None
    data = config["data"]
    image_size = data.get("synthetic_image_size", 32) if data["source"] == "synthetic" else 32
    summary = {
        "trial": trial["name"], "epochs": len(records),
        "gpu_ids": granted["ids"] if granted else None, "device": device,
        "device_line": device_line["line"] if device_line else None,
        "bf16": bool(config["train"].get("amp")) and bool(device and device.startswith("cuda")),
        "images_per_s": [r["images_per_s"] for r in records],
        "peak_gpu_mem_mb": max((r.get("peak_gpu_mem_mb") or 0 for r in records), default=0)
        or None,
        "error": (trial_dir / "error.txt").read_text().strip()[:300]
        if (trial_dir / "error.txt").is_file() else None,
    }
    if records:
        first = records[0]
        # The first report's own time covers the trainable's start, epoch 1 and its checkpoint.
        summary["start_s"] = first["time_this_iter_s"] - first["epoch_time_s"]
        end = first["timestamp"]
        begin = end - first["time_total_s"]  # the trial's start (timestamps: whole seconds)
        summary["began"] = begin
        summary["first_epoch_began"] = begin + summary["start_s"]
        summary["ended"] = records[-1]["timestamp"]
        # Training images per epoch: images/s x the time it was measured over is the Trainer's
        # count; the epoch's share of training in epoch_time_s is not reported, so count it.
        train_images, test_images = epoch_images(data)
        summary["train_images"] = train_images * len(records)
        summary["flop"] = len(records) * (3 * train_images + test_images) * forward_flop(
            config["model"], image_size)
        summary["median_images_per_s"] = sorted(summary["images_per_s"])[len(records) // 2]
    return summary


def epoch_images(data: dict[str, Any]) -> tuple[int, int]:
    if data["source"] == "synthetic":
        return data["synthetic_train_size"], data["synthetic_test_size"]
    if data["source"] == "imagefolder":
        root = Path(data["root"])
        train = sum(1 for _ in (root / "train").rglob("*.jpg"))
        test = sum(1 for _ in (root / "test").rglob("*.jpg"))
    else:
        train, test = CIFAR_TRAIN, CIFAR_TEST
    return (min(train, data["train_subset"] or train) - data.get("val_size", 0),
            min(test, data["test_subset"] or test))


def run_summary(experiment: Path, run: dict[str, Any], forward_flop,
                peak_tflops: Optional[float]) -> dict[str, Any]:
    trials = [t for t in (trial_summary(d, forward_flop) for d in sorted(experiment.iterdir())
                          if d.is_dir()) if t] if experiment.is_dir() else []
    trained = [t for t in trials if t["epochs"]]
    result = dict(run, trials=trials, trials_trained=len(trained))
    if not trained:
        return result
    span = max(t["ended"] for t in trained) - min(t["first_epoch_began"] for t in trained)
    span = max(span, 1.0)  # Ray's timestamps are whole seconds
    images = sum(t["train_images"] for t in trained)
    flop = sum(t["flop"] for t in trained)
    epochs = sum(t["epochs"] for t in trained)
    result.update({
        "span_s": span, "train_images": images, "trial_epochs": epochs,
        "aggregate_images_per_s": images / span,
        "aggregate_tflops": flop / span / 1e12,
        "mfu": flop / span / 1e12 / peak_tflops if peak_tflops else None,
        "start_s_max": max(t["start_s"] for t in trained),
        "start_s_first_trial": min(trained, key=lambda t: t["began"])["start_s"],
        "peak_gpu_mem_mb_max": max((t["peak_gpu_mem_mb"] or 0) for t in trained) or None,
        # lab4 at this run's pace: 10 x 164 trial-epochs at the trial-epochs per second seen
        "projected_lab4_minutes": LAB4_TRIALS * LAB4_EPOCHS / (epochs / span) / 60,
    })
    return result


def model_flop_counter():
    from gpu_grid import forward_flop

    from ninsweep.config import ModelConfig

    cache: dict[tuple, int] = {}

    def count(model: dict[str, Any], image_size: int) -> int:
        key = (json.dumps(model, sort_keys=True), image_size)
        if key not in cache:
            cache[key] = forward_flop(ModelConfig(**model), image_size)
        return cache[key]

    return count


# -- the whole part --------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="lab4", help="space file or name (default lab4)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--archive", type=Path, help="CIFAR-10 JPEGs: .tar.gz or .zip")
    data.add_argument("--synthetic-cifar", action="store_true",
                      help="50,000 + 10,000 synthetic 32x32 images instead of real ones")
    parser.add_argument("--packed-gpus", type=float, default=0.25)
    parser.add_argument("--single-gpus", type=float, default=1.0)
    parser.add_argument("--packed-cpus", type=float, default=2.0)
    parser.add_argument("--single-cpus", type=float, default=2.0)
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="seconds for the whole part; the packed run gets up to "
                             "--packed-share of what is left after the data")
    parser.add_argument("--packed-share", type=float, default=0.4)
    parser.add_argument("--bf16-peak-tflops", type=float, default=None,
                        help=f"for MFU (default on CUDA {BF16_PEAK_TFLOPS}; none on CPU)")
    parser.add_argument("--storage", type=Path, help="experiments here (default: a temp dir)")
    parser.add_argument("--work-dir", type=Path,
                        help="unpack and decode the images here and keep them (default: a "
                             "temporary folder); job check's probe leaves them for this part")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs: must be >= 1")
    if args.archive is not None and not args.archive.is_file():
        parser.error(f"--archive {args.archive}: no such file")
    if not 0 < args.packed_share < 1:
        parser.error("--packed-share: between 0 and 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="ninsweep-d-"))
    args.storage = args.storage or scratch / "runs"
    logs = Path(args.out).parent if args.out else scratch
    logs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"format": 1, "settings": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(args).items()}}
    try:
        work = args.work_dir or scratch
        overrides = [f"data.cache_dir={work / 'cache'}"]
        if args.archive is not None:
            from gpu_grid import unpack_images

            from ninsweep.config import DataConfig
            from ninsweep.core.data import load_data

            root = unpack_images(args.archive, work / "images")
            overrides += [f"data.root={root}", "data.source=imagefolder"]  # root first: each
            # --set is validated as it is applied
            load_data(DataConfig(source="imagefolder", root=str(root),
                                 cache_dir=str(work / "cache")))
            result["data"] = {"source": str(args.archive), "root": str(root)}
        elif args.synthetic_cifar:
            overrides += ["data.source=synthetic", f"data.synthetic_train_size={CIFAR_TRAIN}",
                          f"data.synthetic_test_size={CIFAR_TEST}", "data.synthetic_image_size=32"]
            result["data"] = {"source": "synthetic CIFAR-size"}
        else:
            result["data"] = {"source": f"the space's ({args.space})"}
        result["data"]["ready_s"] = time.monotonic() - began
        print(f"(d) data ready in {result['data']['ready_s']:.1f} s: {result['data']['source']}",
              flush=True)

        import torch

        cuda = torch.cuda.is_available() and args.packed_gpus > 0
        peak = args.bf16_peak_tflops or (BF16_PEAK_TFLOPS if cuda else None)
        result["device"] = {"cuda": cuda, "name": torch.cuda.get_device_name(0) if cuda else
                            "cpu", "torch": torch.__version__, "bf16_peak_tflops": peak}
        counter = model_flop_counter()
        left = args.budget_s - (time.monotonic() - began)
        runs = {}
        for key, gpus, cpus, share in (("packed", args.packed_gpus, args.packed_cpus,
                                        args.packed_share),
                                       ("single", args.single_gpus, args.single_cpus, 1.0)):
            limit = (left * share if key == "packed"
                     else args.budget_s - (time.monotonic() - began) - 5)
            run = run_sweep(args, key, gpus, cpus, overrides, limit, logs / f"ray_{key}.log")
            runs[key] = run_summary(args.storage / key, run, counter, peak)
        result["runs"] = runs
        packed, single = runs["packed"], runs["single"]
        if packed.get("aggregate_images_per_s") and single.get("aggregate_images_per_s"):
            result["packed_vs_single"] = (packed["aggregate_images_per_s"]
                                          / single["aggregate_images_per_s"])
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"[-3000:]
        raise
    finally:
        result["total_s"] = time.monotonic() - began
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(result))
    if args.out:
        print(f"wrote {args.out}")
    trained = [r.get("trials_trained", 0) for r in result["runs"].values()]
    return 0 if all(trained) else 1


def report(result: dict[str, Any]) -> str:
    lines = [f"\n(d) ninsweep run through Ray Tune on {result['device']['name']} "
             f"(torch {result['device']['torch']}); data: {result['data']['source']}"]
    header = (f"{'run':<7} {'trial':<20} {'GPU ids':<8} {'device':<7} {'bf16':<5} "
              f"{'epochs':>6} {'images/s':>10} {'peak MiB':>9} {'start s':>8}")
    lines += [header, "-" * len(header)]
    for key, run in result["runs"].items():
        for t in run["trials"]:
            lines.append(
                f"{key:<7} {t['trial']:<20} {str(t['gpu_ids']):<8} {str(t['device']):<7} "
                f"{'on' if t['bf16'] else 'off':<5} {t['epochs']:>6} "
                f"{_num(t.get('median_images_per_s'), ',.0f'):>10} "
                f"{_num(t['peak_gpu_mem_mb'], ',.0f'):>9} {_num(t.get('start_s'), '.2f'):>8}"
                + (f"  error: {t['error'][:80]}" if t["error"] else ""))
    lines.append("")
    for key, run in result["runs"].items():
        lines.append(
            f"{key}: {run['gpus_per_trial']:g} GPU + {run['cpus_per_trial']:g} CPU per trial, "
            f"{run['trials_trained']} trials trained, exit {run['exit']}"
            + (" (cut at its time limit)" if run["cut"] else "")
            + f", {run['wall_s']:.0f} s in all; aggregate "
            f"{_num(run.get('aggregate_images_per_s'), ',.0f')} training images/s over "
            f"{_num(run.get('span_s'), '.0f')} s of epochs, "
            f"{_num(run.get('aggregate_tflops'), '.3f')} TFLOP/s"
            + (f", MFU {run['mfu']:.2%} of {result['device']['bf16_peak_tflops']:g} TFLOP/s bf16"
               if run.get("mfu") is not None else "")
            + f"; slowest trial start {_num(run.get('start_s_max'), '.2f')} s (goal < 5 s)"
            + (f"\n  {run['error']}" if run.get("error") else ""))
    if result.get("packed_vs_single") is not None:
        lines.append(f"packed / one at a time, aggregate images/s: "
                     f"{result['packed_vs_single']:.2f}x (goal >= 2x)")
    packed = result["runs"]["packed"]
    if packed.get("projected_lab4_minutes") is not None:
        lines.append(f"lab4 (10 trials x 164 epochs) at the packed run's pace: "
                     f"{packed['projected_lab4_minutes']:.1f} minutes (goal <= 10; meaningful "
                     "only on CIFAR-size data on the GPU)")
    lines.append(f"part (d) total {result['total_s']:.0f} s")
    return "\n".join(lines)


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
