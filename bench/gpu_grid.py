"""The lab4 grid on one GPU: 1, 2, 4 and 8 concurrent trainings, throughput, MFU, projection.

Each model is a separate process, as a fractional Ray trial would be (lab4.yaml asks for 0.25
GPU per trial), running ninsweep's own ``Trainer`` on the device: the dataset resident on the
device as uint8 (copied once per process, never per step), augmentation on the device,
channels_last, bf16 autocast; ``--compile`` adds torch.compile. Model i trains the i-th
trial of the lab4 grid (relu-nobn-keras, relu-nobn-he, ..., maxout-bn-he), so a packing of
8 runs the real mix of activations.

Protocol: all workers start together and warm up with one untimed epoch (a CUDA run counts
the host synchronisations of that epoch). Then for each packing P the first P workers train
epochs together until each has --epochs epochs, and keep training until the slowest is done,
so every timed epoch ran with exactly P models on the device. Per model: training images
over the wall time of its epochs (evaluation of the test images included, as in a real
epoch), and model FLOP/s = (train images x 3 x forward FLOP + test images x forward FLOP)
over the same time, forward FLOP counted by torch.utils.flop_counter.FlopCounterMode for
that model's activation. MFU = aggregate FLOP/s over the bf16 peak: the datasheet's
(--bf16-peak-tflops) and a bf16 matrix product measured here. Projection: the 10 trials of
164 epochs (50,000 training + 10,000 test images each, with each trial's own FLOP) scheduled
in order on P slots, each running model getting the measured aggregate FLOP/s of the models
running at that moment divided among them.

No Ray: torch, torchvision and ninsweep's config/data/model/train only (PYTHONPATH=. is
enough). On CPU the same code runs with tiny sizes, so it is tested before any GPU time.

    python bench/gpu_grid.py --device cuda --out gpu_grid.json          # ~1.5 min, H100
    python bench/gpu_grid.py --device cuda --compile --models 4,8
    python bench/gpu_grid.py --device cuda --data jpeg ../shared/data/cifar10-jpeg.tar.gz
    python bench/gpu_grid.py --device cpu --models 1,2 --epochs 1 --train-size 64 --image-size 16
    bash bench/run_gpu.sh        # on the GPU machine: nvidia-smi, then this, into $OUT
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # ninsweep from this checkout, installed or not

from ninsweep import metrics as M  # noqa: E402
from ninsweep.config import DataConfig, ModelConfig, TrialConfig  # noqa: E402
from ninsweep.core.data import load_data  # noqa: E402
from ninsweep.core.model import NIN  # noqa: E402

# The grid of search_spaces/lab4.yaml, in its trial order (tests check the two agree).
GRID = ([(activation, batchnorm, init) for activation in ("relu", "elu")
         for batchnorm in (False, True) for init in ("keras", "he")]
        + [("leaky_relu", True, "he"), ("maxout", True, "he")])
GRID_EPOCHS = 164
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
H100_SXM_BF16_DENSE_TFLOPS = 989.4
PROTOCOL = "GRID "  # prefix of the workers' protocol lines on stdout


def trial_name(activation: str, batchnorm: bool, init: str) -> str:
    return f"{activation}-{'bn' if batchnorm else 'nobn'}-{init}"


def model_config(index: int) -> ModelConfig:
    activation, batchnorm, init = GRID[index % len(GRID)]
    # pool2 "avg": lab4.yaml's (the code behind the report's numbers); tests check they agree.
    return ModelConfig(activation=activation, batchnorm=batchnorm, init=init, pool2="avg")


# -- FLOP and peak --------------------------------------------------------------------------

def forward_flop(cfg: ModelConfig, image_size: int) -> int:
    """FLOP of one image's forward pass, as FlopCounterMode counts them (convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = NIN(cfg).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, image_size, image_size))
    return counter.get_total_flops()


def measured_train_flop(cfg: ModelConfig, image_size: int) -> int:
    """FLOP of one image's forward + backward as counted (the first conv needs no input grad)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = NIN(cfg).train()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, image_size, image_size)).sum().backward()
    return counter.get_total_flops() // 2


def matmul_peak_tflops(device: torch.device, size: int, repeats: int = 10) -> tuple[float, str]:
    """TFLOP/s of a size^3 matrix product: bf16 on CUDA, float32 on CPU (what training uses)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(3):  # best of 3 timed batches of products
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    del a, b
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the workers need the memory, not this idle parent
    return 2 * size ** 3 * repeats / best / 1e12, str(dtype).replace("torch.", "")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- projection -----------------------------------------------------------------------------

def interpolate(points: dict[int, float], k: int) -> float:
    """Aggregate FLOP/s with k models running, from the packings measured (linear between
    them, flat beyond them)."""
    known = sorted(points)
    if k <= known[0]:
        return points[known[0]]
    if k >= known[-1]:
        return points[known[-1]]
    upper = next(p for p in known if p >= k)
    lower = max(p for p in known if p <= k)
    if upper == lower:
        return points[lower]
    weight = (k - lower) / (upper - lower)
    return points[lower] + weight * (points[upper] - points[lower])


def schedule_seconds(trial_flop: list[float], slots: int, aggregate: dict[int, float]) -> float:
    """Wall time of trials run in order on ``slots`` slots (a new one starts as one ends), each
    of the k running trials progressing at aggregate(k) / k FLOP/s."""
    queue = list(trial_flop)
    running: list[float] = []
    elapsed = 0.0
    while queue or running:
        while queue and len(running) < slots:
            running.append(queue.pop(0))
        rate = interpolate(aggregate, len(running)) / len(running)
        step = min(running) / rate
        elapsed += step
        running = [left - step * rate for left in running]
        running = [left for left in running if left > 1e-9 * max(trial_flop)]
    return elapsed


def grid_trial_flop(forward: dict[str, int], seeds: int = 1) -> list[float]:
    """FLOP of each lab4 trial, in the space's order (every configuration, then the next
    seed): 164 epochs of 50,000 training (3x forward) + 10,000 test images."""
    return [GRID_EPOCHS * (CIFAR_TRAIN * 3 + CIFAR_TEST) * forward[trial_name(*cell)]
            for _ in range(seeds) for cell in GRID]


# The spaces the projection covers: name -> seeds of the lab4 grid.
PROJECTED_SPACES = {"lab4": 1, "lab4-3seeds": 3}
LAB4_PACKING = 4  # lab4.yaml asks 0.25 GPU per trial: 4 trials on one GPU


# -- the worker process ---------------------------------------------------------------------

class LineReader:
    """Lines from a file descriptor, unbuffered, with a non-blocking poll."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def has_line(self) -> bool:
        return b"\n" in self.buffer

    def poll(self, timeout: Optional[float]) -> Optional[str]:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def send(record: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(record) + "\n")
    sys.stdout.flush()


def worker_main(spec: dict[str, Any]) -> None:
    from ninsweep.core.checkpoint import save_checkpoint
    from ninsweep.core.train import Trainer
    from ninsweep.experiment_dir import CHECKPOINT_FILE

    torch.set_num_threads(spec["threads"])
    if spec["config"]["train"]["compile"] and spec.get("compile_backend"):
        # Trainer calls torch.compile(model); this picks its backend ("eager" for a quick
        # CPU test of the compiled path, or a bad name to test that a failure is reported).
        import functools

        torch.compile = functools.partial(torch.compile, backend=spec["compile_backend"])
    started = time.perf_counter()
    cfg = TrialConfig.from_dict(spec["config"])
    trainer = Trainer(cfg)
    device = trainer.device
    _synchronize(device)
    setup_s = time.perf_counter() - started

    started = time.perf_counter()
    syncs = None
    if device.type == "cuda":
        # Count the host synchronisations of one epoch: a per-step copy of data from the host
        # (or a per-step .item()) would show as hundreds; the epoch's own are a handful.
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_one_epoch()
        torch.cuda.set_sync_debug_mode("default")
        syncs = sum(1 for w in caught if "synchroniz" in str(w.message))
    else:
        trainer.train_one_epoch()
    warmup_s = time.perf_counter() - started
    # DeviceLoader keeps each split as one uint8 tensor on the training device.
    stored = [getattr(loader, "_images", None) for loader in (trainer.train_loader,
                                                               trainer.test_loader)]
    data_bytes = sum(t.numel() * t.element_size() for t in stored if t is not None)
    data_device = stored[0].device.type if stored[0] is not None else None
    send({"event": "ready", "setup_s": setup_s, "warmup_s": warmup_s, "host_syncs": syncs,
          "steps_per_epoch": len(trainer.train_loader),
          "data_on_device_mb": data_bytes / 2**20, "data_device": data_device,
          "gpu_reserved_mb": (torch.cuda.memory_reserved(device) / 2**20
                              if device.type == "cuda" else None)})

    commands = LineReader(sys.stdin.fileno())
    while True:
        command = json.loads(commands.poll(None))
        if command["cmd"] == "exit":
            return
        if command["cmd"] == "checkpoint":
            path = Path(spec["scratch"], f"ckpt-{spec['index']}", CHECKPOINT_FILE)
            times = []
            for _ in range(command.get("repeats", 3)):
                begun = time.perf_counter()
                save_checkpoint(trainer.state_dict(), path)  # device -> host copy included
                times.append(time.perf_counter() - begun)
            send({"event": "checkpoint", "save_s": sorted(times)[len(times) // 2],
                  "size_mb": path.stat().st_size / 2**20})
            continue
        # "run": epochs until told to stop (checked between epochs)
        torch.set_num_threads(command["threads"])
        stop = False
        while not stop:
            begun = time.monotonic()
            result = trainer.train_one_epoch()  # ends with .item(): the device is synced
            ended = time.monotonic()
            send({"event": "epoch", "start": begun, "end": ended, "wall_s": ended - begun,
                  "train_images": trainer.train_loader.num_images,
                  "test_images": trainer.test_loader.num_images,
                  "train_images_per_s": result[M.IMAGES_PER_S],
                  "peak_gpu_mem_mb": (torch.cuda.max_memory_reserved(device) / 2**20
                                      if device.type == "cuda" else None)})
            line = commands.poll(0)
            stop = line is not None and json.loads(line)["cmd"] == "stop"
        send({"event": "stopped"})


# -- the parent -----------------------------------------------------------------------------

class WorkerProcess:
    """A child process of ``script --worker SPEC`` speaking the line protocol on stdout.

    Its stderr goes to ``log_path``; ``name`` is what errors call it. The probe of
    bench/fidelity_probe.py runs its workers through this class too.
    """

    def __init__(self, name: str, script: Path, spec: dict[str, Any], log_path: Path,
                 env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.log_path = log_path
        env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"),
            env=env, cwd=ROOT)
        self.reader = LineReader(self.process.stdout.fileno())

    def send(self, command: dict[str, Any]) -> None:
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()

    def receive(self, timeout: Optional[float]) -> Optional[dict[str, Any]]:
        """The next protocol record, or None after ``timeout`` seconds without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                line = self.reader.poll(left)
            except EOFError:
                raise RuntimeError(f"worker {self.name} died; its log:\n"
                                   + self.log_tail()) from None
            if line is None:
                return None
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"cmd": "exit"})
                self.process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class Worker(WorkerProcess):
    def __init__(self, index: int, spec: dict[str, Any], log_dir: Path) -> None:
        self.index = index
        # All workers compile at once: Inductor's default pool (one process per core, per
        # worker) would put 8 x cores compilers on the machine.
        env = dict(os.environ)
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(spec.get("compile_threads", 1)))
        super().__init__(trial_name(*GRID[index % len(GRID)]),
                         Path(__file__).resolve(), spec, log_dir / f"worker-{index}.log", env)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        record = self.receive(timeout)
        if record is None or record["event"] != event:
            raise RuntimeError(f"worker {self.index} ({self.name}): expected {event!r}, got "
                               f"{record!r}; its log:\n{self.log_tail()}")
        return record


def run_packing(workers: list[Worker], epochs: int, threads: int, deadline: float
                ) -> dict[str, Any]:
    """Train with ``len(workers)`` models at once; per-model figures over fully shared epochs."""
    for worker in workers:
        worker.send({"cmd": "run", "threads": threads})
    epochs_of: dict[int, list[dict]] = {w.index: [] for w in workers}
    stop_at = None
    stopped: set[int] = set()
    while len(stopped) < len(workers):
        pending = [w for w in workers if w.index not in stopped]
        if not any(w.reader.has_line() for w in pending):  # wait for any of them
            select.select([w.reader.fd for w in pending], [], [], 0.5)
        for worker in pending:
            while worker.index not in stopped:
                record = worker.receive(0)
                if record is None:
                    break
                if record["event"] == "stopped":
                    stopped.add(worker.index)
                elif record["event"] == "epoch":
                    epochs_of[worker.index].append(record)
        if stop_at is None and (all(len(e) >= epochs for e in epochs_of.values())
                                or time.monotonic() > deadline):
            stop_at = time.monotonic()
            for worker in workers:
                worker.send({"cmd": "stop"})
    per_model = []
    for worker in workers:
        timed = [e for e in epochs_of[worker.index] if e["end"] <= stop_at]
        if not timed:  # cut by the time limit before one shared epoch ended
            timed = epochs_of[worker.index][:1]
        wall = sum(e["wall_s"] for e in timed)
        train_images = sum(e["train_images"] for e in timed)
        test_images = sum(e["test_images"] for e in timed)
        per_model.append({"worker": worker.index, "trial": worker.name, "epochs": len(timed),
                          "wall_s": wall, "train_images": train_images,
                          "test_images": test_images, "images_per_s": train_images / wall,
                          "train_images_per_s": sorted(e["train_images_per_s"] for e in timed)[
                              len(timed) // 2],
                          "peak_gpu_mem_mb": timed[-1]["peak_gpu_mem_mb"],
                          "partial": len(timed) < epochs})
    return {"models": len(workers), "per_model": per_model}


def unpack_images(archive: Path, root: Path) -> Path:
    """The image folder (train/<class>/*.jpg, test/<class>/*.jpg) inside ``archive``, a .zip
    or a .tar[.gz] (cifar10-jpeg.tar.gz: the zip's images in 18.5 MiB instead of 60.3),
    unpacked under ``root``; the folders may sit one level down.

    A ``root`` that already holds this archive's images (its marker names the archive's
    name, size and mtime) is used as it is: the device check's second job finds what the
    first unpacked (and decoded, in the same work folder) on a machine kept warm.
    """
    stat = archive.stat()
    marker = root / ".unpacked-from"
    identity = f"{archive.name} {stat.st_size} {stat.st_mtime_ns}\n"
    if not (marker.is_file() and marker.read_text() == identity):
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(root)
        else:
            with tarfile.open(archive) as opened:
                opened.extractall(root, filter="data")  # no paths outside root, no devices
        marker.write_text(identity)
    if (root / "train").is_dir():
        return root
    inner = [p for p in root.iterdir() if (p / "train").is_dir()]
    if not inner:
        raise ValueError(f"{archive}: no train/ folder inside")
    return inner[0]


def prepare_data(args: argparse.Namespace, scratch: Path) -> DataConfig:
    cache_dir = str(scratch / "cache")
    if args.data[0] == "synthetic":
        cfg = DataConfig(source="synthetic", cache_dir=cache_dir,
                         synthetic_train_size=args.train_size, synthetic_test_size=args.test_size,
                         synthetic_image_size=args.image_size)
    else:
        root = unpack_images(Path(args.data[1]), scratch / "images")
        cfg = DataConfig(source="imagefolder", root=str(root), cache_dir=cache_dir,
                         train_subset=args.train_size, test_subset=args.test_size)
    load_data(cfg)  # decode once here; every worker memory-maps the cache
    return cfg


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="1,2,4,8",
                        help="packings: how many models train at once, comma-separated")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per model and packing")
    parser.add_argument("--data", nargs="+", default=["synthetic"], metavar="SOURCE",
                        help="synthetic (default), or: jpeg PATH (cifar10-jpeg.tar.gz or .zip)")
    parser.add_argument("--train-size", type=int, default=10_000, help="training images per epoch")
    parser.add_argument("--test-size", type=int,
                        help="test images per epoch (default: train size / 5, CIFAR's ratio)")
    parser.add_argument("--image-size", type=int, default=32, help="synthetic image size")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend with --compile (default: inductor)")
    parser.add_argument("--cudnn-benchmark", choices=("on", "off"), default="on",
                        help="train.cudnn_benchmark of every worker (default on, as in a sweep)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                        help="any other TrialConfig setting, e.g. --set train.amp=false")
    parser.add_argument("--bf16-peak-tflops", type=float,
                        help=f"datasheet peak for MFU (default on CUDA: "
                             f"{H100_SXM_BF16_DENSE_TFLOPS}, H100 SXM dense bf16; none on CPU)")
    parser.add_argument("--peak-size", type=int,
                        help="matrix size of the measured peak (default 8192 CUDA, 1024 CPU)")
    parser.add_argument("--time-limit", type=float, default=180.0,
                        help="seconds: no packing starts that would not get half-way, and a "
                             "running one is cut short at the limit")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.data[0] == "synthetic" and len(args.data) == 1:
        pass
    elif args.data[0] in ("jpeg", "jpeg-zip") and len(args.data) == 2:
        if not Path(args.data[1]).is_file():
            parser.error(f"--data {args.data[0]} {args.data[1]}: no such file")
    else:
        parser.error("--data takes 'synthetic' or 'jpeg PATH' (a .zip or .tar.gz)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    args.packings = sorted({int(p) for p in args.models.split(",")})
    if min(args.packings) < 1:
        parser.error("--models: packings must be >= 1")
    args.test_size = args.test_size or max(1, args.train_size // 5)
    if args.train_size < args.batch_size:  # tiny test runs: one batch per epoch
        print(f"note: batch size {args.train_size}, the whole --train-size", file=sys.stderr)
        args.batch_size = args.train_size
    if args.bf16_peak_tflops is None and args.device == "cuda":
        args.bf16_peak_tflops = H100_SXM_BF16_DENSE_TFLOPS
    args.peak_size = args.peak_size or (8192 if args.device == "cuda" else 1024)
    return args


def trial_settings(args: argparse.Namespace, data: DataConfig, index: int) -> dict[str, Any]:
    cfg = TrialConfig(model=model_config(index), data=data).to_dict()
    cfg["train"].update(epochs=10**6, batch_size=args.batch_size, device=args.device,
                        compile=args.compile, amp=True, channels_last=True,
                        cudnn_benchmark=args.cudnn_benchmark == "on")
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        section, _, field = key.partition(".")
        try:
            cfg[section][field] = json.loads(value)
        except (KeyError, json.JSONDecodeError):
            cfg[section][field] = value
    return TrialConfig.from_dict(cfg).to_dict()  # validated here, once


def threads_for(args: argparse.Namespace, models: int) -> int:
    cores = os.cpu_count() or 1
    if args.device == "cuda":
        return max(1, min(2, cores // models))  # the GPU does the work; Python launches it
    return max(1, cores // models)


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    deadline = began + args.time_limit
    device = torch.device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="ninsweep-gpu-grid-"))
    workers: list[Worker] = []
    try:
        data_cfg = prepare_data(args, scratch)
        data_s = time.monotonic() - began
        image_size = data_cfg.synthetic_image_size if data_cfg.source == "synthetic" else 32
        forward = {trial_name(*cell): forward_flop(model_config(i), image_size)
                   for i, cell in enumerate(GRID)}
        # The grid is CIFAR-10: 32x32, whatever size this run trains at.
        forward_cifar = (forward if image_size == 32 else
                         {trial_name(*cell): forward_flop(model_config(i), 32)
                          for i, cell in enumerate(GRID)})
        counted_train = {name: measured_train_flop(model_config(i), image_size)
                         for i, name in enumerate(forward)}
        measured_peak, peak_dtype = matmul_peak_tflops(device, args.peak_size)
        print(f"measured {peak_dtype} matmul peak ({args.peak_size}^3): {measured_peak:.1f} "
              f"TFLOP/s; data ready in {data_s:.1f} s", flush=True)

        max_models = max(args.packings)
        for index in range(max_models):
            spec = {"index": index, "config": trial_settings(args, data_cfg, index),
                    "threads": threads_for(args, max_models), "scratch": str(scratch),
                    "compile_backend": args.compile_backend,
                    "compile_threads": max(1, (os.cpu_count() or 1) // max_models)}
            workers.append(Worker(index, spec, scratch))
        ready = [w.expect("ready", max(30.0, deadline - time.monotonic())) for w in workers]
        print(f"{max_models} workers ready {time.monotonic() - began:.1f} s after start "
              f"(set-up {max(r['setup_s'] for r in ready):.1f} s, warm-up epoch "
              f"{max(r['warmup_s'] for r in ready):.1f} s)", flush=True)

        packings, skipped = [], []
        last_round_s, previous = None, 1
        for models in args.packings:
            left = deadline - time.monotonic()
            # A round with twice the models takes about twice as long once the GPU is busy;
            # one that could finish at least half its epochs runs, cut at the limit if need be.
            estimate = None if last_round_s is None else last_round_s * models / previous
            if left <= 0 or (estimate is not None and estimate > 2 * left):
                skipped.append(models)
                print(f"{models} models: skipped, {left:.0f} s left of --time-limit", flush=True)
                continue
            round_began = time.monotonic()
            packing = run_packing(workers[:models], args.epochs, threads_for(args, models),
                                  deadline)
            last_round_s, previous = time.monotonic() - round_began, models
            summarise(packing, forward, args.bf16_peak_tflops, measured_peak)
            packings.append(packing)
            print(f"{models} models: {packing['aggregate_images_per_s']:,.0f} images/s, "
                  f"{packing['aggregate_tflops']:.2f} TFLOP/s ({last_round_s:.1f} s)", flush=True)

        checkpoint = None
        if time.monotonic() < deadline and packings:
            workers[0].send({"cmd": "checkpoint", "repeats": 3})
            checkpoint = workers[0].expect("checkpoint", 60)
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)

    return assemble(args, device, forward, forward_cifar, counted_train, measured_peak,
                    peak_dtype, ready, packings, skipped, checkpoint, time.monotonic() - began)


def summarise(packing: dict[str, Any], forward: dict[str, int], datasheet: Optional[float],
              measured: float) -> None:
    for model in packing["per_model"]:
        flop = (model["train_images"] * 3 + model["test_images"]) * forward[model["trial"]]
        model["tflops"] = flop / model["wall_s"] / 1e12
    packing["aggregate_images_per_s"] = sum(m["images_per_s"] for m in packing["per_model"])
    packing["aggregate_tflops"] = sum(m["tflops"] for m in packing["per_model"])
    packing["mfu_datasheet"] = packing["aggregate_tflops"] / datasheet if datasheet else None
    packing["mfu_measured_peak"] = packing["aggregate_tflops"] / measured


def assemble(args, device, forward, forward_cifar, counted_train, measured_peak, peak_dtype,
             ready, packings, skipped, checkpoint, total_s) -> dict[str, Any]:
    trial_flop = grid_trial_flop(forward_cifar)
    grid_flop = sum(trial_flop)
    aggregate = {p["models"]: p["aggregate_tflops"] * 1e12 for p in packings}
    for packing in packings:
        seconds = schedule_seconds(trial_flop, packing["models"], aggregate)
        packing["projected_grid_minutes"] = seconds / 60
        packing["projected_grid_minutes_flat"] = grid_flop / aggregate[packing["models"]] / 60
        packing["projected_grid_minutes_by_images"] = (
            len(GRID) * GRID_EPOCHS * CIFAR_TRAIN / packing["aggregate_images_per_s"] / 60)
        packing["projected_minutes"] = {
            space: schedule_seconds(grid_trial_flop(forward_cifar, seeds), packing["models"],
                                    aggregate) / 60
            for space, seeds in PROJECTED_SPACES.items()}
    best = min(packings, key=lambda p: p["projected_grid_minutes"]) if packings else None
    epoch_s = None
    if best and checkpoint:
        # A full CIFAR epoch of worker 0's model at the best packing's per-model speed.
        model = next(m for m in best["per_model"] if m["worker"] == 0)
        epoch_s = ((CIFAR_TRAIN * 3 + CIFAR_TEST) * forward_cifar[model["trial"]]
                   / (model["tflops"] * 1e12))
        checkpoint = dict(checkpoint, cifar_epoch_s=epoch_s,
                          share_of_epoch=checkpoint["save_s"] / epoch_s)
    syncs = [r["host_syncs"] for r in ready if r["host_syncs"] is not None]
    return {
        "format": 1,
        "device": {"type": device.type,
                   "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                   else _cpu_name(), "torch": torch.__version__,
                   "cuda": torch.version.cuda, "cpu_cores": os.cpu_count()},
        "settings": {key: value for key, value in vars(args).items() if key != "worker"},
        "peak": {"datasheet_tflops": args.bf16_peak_tflops, "measured_tflops": measured_peak,
                 "measured_dtype": peak_dtype, "measured_size": args.peak_size},
        "flop": {"forward_per_image": forward,
                 "train_per_image": {k: 3 * v for k, v in forward.items()},
                 "forward_per_image_cifar": forward_cifar,
                 "counted_forward_backward_per_image": counted_train,
                 "grid_total": grid_flop, "grid_trials": len(GRID), "grid_epochs": GRID_EPOCHS},
        "workers": {"setup_s": max(r["setup_s"] for r in ready),
                    "warmup_epoch_s": max(r["warmup_s"] for r in ready),
                    "steps_per_epoch": ready[0]["steps_per_epoch"],
                    "host_syncs_per_epoch": max(syncs) if syncs else None,
                    "data_on_device_mb": ready[0]["data_on_device_mb"],
                    "data_device": ready[0]["data_device"],
                    "gpu_reserved_mb_after_warmup": [r["gpu_reserved_mb"] for r in ready]},
        "packings": packings,
        "skipped_packings": skipped,
        "best": None if best is None else {
            "models": best["models"], "projected_grid_minutes": best["projected_grid_minutes"],
            "aggregate_images_per_s": best["aggregate_images_per_s"],
            "aggregate_tflops": best["aggregate_tflops"], "mfu_datasheet": best["mfu_datasheet"],
            "mfu_measured_peak": best["mfu_measured_peak"]},
        "checkpoint": checkpoint,
        "total_s": total_s,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    flop = result["flop"]["forward_per_image"]
    lines = [
        f"\n{result['device']['name']} ({result['device']['type']}), torch "
        f"{result['device']['torch']}; bf16 autocast on CUDA, channels_last, compile "
        f"{'on' if s['compile'] else 'off'}; data {' '.join(s['data'])}: {s['train_size']} "
        f"train + {s['test_size']} test images per epoch, batch {s['batch_size']}",
        "forward GFLOP per image (FlopCounterMode): " + ", ".join(
            f"{name} {value / 1e9:.3f}" for name, value in flop.items()
            if name in ("relu-nobn-keras", "maxout-bn-he")) + "; training = 3x forward",
        f"peak: datasheet {_num(result['peak']['datasheet_tflops'], '.1f')} TFLOP/s, measured "
        f"{result['peak']['measured_dtype']} matmul {result['peak']['measured_tflops']:.1f} "
        "TFLOP/s" + ("" if result["device"]["type"] == "cuda" else
                     " (on CPU: MKL's sgemm, which can trail the convolutions' own speed, e.g. "
                     "on AMD processors; CPU MFU is indicative only)"), ""]
    header = (f"{'models':>6}  {'trial':<20} {'epochs':>6} {'images/s':>10} {'train img/s':>11} "
              f"{'TFLOP/s':>8} {'GPU MiB':>8}")
    lines += [header, "-" * len(header)]
    for packing in result["packings"]:
        for model in packing["per_model"]:
            lines.append(f"{packing['models']:>6}  {model['trial']:<20} {model['epochs']:>6} "
                         f"{model['images_per_s']:>10,.0f} {model['train_images_per_s']:>11,.0f} "
                         f"{model['tflops']:>8.2f} {_num(model['peak_gpu_mem_mb'], ',.0f'):>8}"
                         + ("  (cut by --time-limit)" if model["partial"] else ""))
    lines.append("")
    header = (f"{'models':>6}  {'aggregate images/s':>18} {'TFLOP/s':>8} {'MFU datasheet':>13} "
              f"{'MFU measured':>12} {'grid minutes':>12}")
    lines += [header, "-" * len(header)]
    for packing in result["packings"]:
        lines.append(f"{packing['models']:>6}  {packing['aggregate_images_per_s']:>18,.0f} "
                     f"{packing['aggregate_tflops']:>8.2f} "
                     f"{_num(packing['mfu_datasheet'], '.2%'):>13} "
                     f"{packing['mfu_measured_peak']:>12.2%} "
                     f"{packing['projected_grid_minutes']:>12,.1f}")
    if result["skipped_packings"]:
        lines.append(f"skipped (time limit): {result['skipped_packings']}")
    best = result["best"]
    if best:
        lines.append(f"\nbest packing: {best['models']} models at once: the 10-trial, "
                     f"{GRID_EPOCHS}-epoch lab4 grid projects to "
                     f"{best['projected_grid_minutes']:.1f} minutes on this device "
                     f"(goal < 10; {result['flop']['grid_total']:.3g} FLOP)")
        best_packing = next(p for p in result["packings"] if p["models"] == best["models"])
        lines.append("projected wall time at that packing: " + ", ".join(
            f"{space} {minutes:.1f} min" for space, minutes in
            best_packing["projected_minutes"].items()))
    w = result["workers"]
    if w["host_syncs_per_epoch"] is not None:
        lines.append(f"host synchronisations in a warm-up epoch: {w['host_syncs_per_epoch']} "
                     f"for {w['steps_per_epoch']} steps; data resident on the device: "
                     f"{w['data_on_device_mb']:.1f} MiB uint8 per model")
    if result["checkpoint"]:
        c = result["checkpoint"]
        lines.append(f"checkpoint: {c['size_mb']:.1f} MB, {1000 * c['save_s']:.0f} ms per save"
                     + (f" = {c['share_of_epoch']:.2%} of a CIFAR epoch at the best packing"
                        if c.get("share_of_epoch") is not None else ""))
    lines.append(f"total {result['total_s']:.0f} s")
    return "\n".join(lines)


def _num(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return
    try:
        result = run(args)
    except Exception as err:  # a worker died (e.g. torch.compile failed): say so in --out
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(
                {"format": 1, "error": f"{type(err).__name__}: {err}"[-6000:],
                 "settings": {k: v for k, v in vars(args).items() if k != "worker"}},
                indent=2) + "\n")
        raise
    print(report(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if not result["packings"]:
        sys.exit("no packing was measured within --time-limit")


if __name__ == "__main__":
    main()
