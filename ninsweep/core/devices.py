"""Which device a run trains on, and getting that device ready for a new run. No Ray here.

A Ray trial knows which GPUs Ray granted it (``ray.get_gpu_ids()``, a fraction of a GPU
counts as that GPU); ``trial_device`` turns that and ``train.device`` into the device the
trial trains on, and refuses the combinations that would otherwise go wrong silently: a
trial that holds a GPU but cannot start CUDA would train on CPU at a hundredth of the speed,
and a trial granted no GPU would (Ray 2.60 no longer blanks ``CUDA_VISIBLE_DEVICES`` for
zero-GPU workers) land on cuda:0 unseen by Ray's accounting, so ``hide_gpus`` hides them.

``prepare_device`` runs at the start of every run, because Tune reuses worker processes
(``reuse_actors=True``): whatever the previous trial left in the process (cached GPU memory,
peak-memory counters, torch.compile graphs, cuDNN's benchmark flag) must not leak into the
next one.
"""

from __future__ import annotations

import gc
import os
from typing import Callable, Optional

import torch

from ninsweep.errors import ConfigError, DeviceError

HIDDEN_GPUS = ""  # CUDA_VISIBLE_DEVICES="" leaves CUDA no device at all


def hide_gpus(log: Callable[[str], None] = lambda message: None) -> bool:
    """Hide every GPU from this process; True when CUDA will see none.

    Must run before CUDA starts in the process: the CUDA runtime reads
    ``CUDA_VISIBLE_DEVICES`` once. A reused worker hid them when its first trial started; if
    something started CUDA before that, the GPUs stay visible and the caller must not use
    them (``trial_device`` returns "cpu" for a zero-GPU trial either way).
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = HIDDEN_GPUS
    if torch.cuda.is_initialized():
        log("warning: CUDA started in this worker before its GPUs could be hidden; "
            "training on CPU regardless")
        return False
    return True


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r} requested but this process sees "
                          f"{torch.cuda.device_count()} CUDA device(s), cuda:0 first")
    return torch.device(name)


def trial_device(requested: str, granted_gpus: int, trial: str,
                 cuda_available: Optional[Callable[[], bool]] = None,
                 visible_gpus: Optional[Callable[[], int]] = None) -> str:
    """The device (``cpu``, ``cuda``, ``cuda:N``) a trial granted ``granted_gpus`` GPUs uses.

    Raises ``DeviceError`` (one line) for a trial granted a GPU whose worker cannot start
    CUDA, and for a CUDA device the trial was not granted. The two callables default to
    torch's and are parameters so that tests can stand in for a GPU machine.
    """
    cuda_available = cuda_available or torch.cuda.is_available
    visible_gpus = visible_gpus or torch.cuda.device_count
    if granted_gpus == 0:
        if requested.startswith("cuda"):
            raise DeviceError(f"{trial}: train.device is {requested!r} but the trial asks Ray "
                              "for no GPU (resources.gpus / --gpus-per-trial 0); use device "
                              "auto or cpu, or ask for a GPU")
        return "cpu"
    if requested == "cpu":
        return "cpu"  # an explicit choice; space validation refuses it with GPUs asked for
    if not cuda_available():
        built_for = torch.version.cuda or "none: a CPU-only build"
        raise DeviceError(f"{trial}: Ray granted this trial a GPU but CUDA cannot start in "
                          f"its worker (torch {torch.__version__}, built for CUDA {built_for}); "
                          "check nvidia-smi on the node and that its driver supports that "
                          "CUDA (cluster/README.md, 'GPU drivers and torch')")
    if requested in ("auto", "cuda"):
        return "cuda"
    index = int(requested.split(":", 1)[1])
    visible = visible_gpus()
    if index >= visible:
        raise DeviceError(f"{trial}: train.device is {requested!r} but the trial sees "
                          f"{visible} GPU(s), numbered from cuda:0 (Ray shows a trial only "
                          "the GPUs it granted); use device auto or cuda")
    return requested


def describe_device(device: torch.device) -> str:
    """One line for the log: the device, and the torch / CUDA / cuDNN versions behind it."""
    versions = f"torch {torch.__version__}"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        versions += (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                     f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
        return (f"device cuda:{index} ({props.name}, {props.total_memory / 2**30:.1f} GiB, "
                f"compute capability {props.major}.{props.minor}); {versions}")
    return f"device {device.type} ({torch.get_num_threads()} threads); {versions}"


def prepare_device(device: torch.device, compile_model: bool,
                   cudnn_benchmark: bool = True) -> None:
    """Reset what a previous run in this (reused) process left behind; call before building
    the model.

    - GPU memory: the caching allocator keeps the last trial's blocks and its peak counter,
      so ``peak_gpu_mem_mb`` would report an earlier trial's peak (and another process
      sharing the GPU could not use those blocks): collect, empty the cache, reset the peak.
    - torch.compile: Dynamo keeps the graphs of every earlier model in the process and
      recompiles the same ``forward`` for each new one; past its recompile limit it would
      silently run eager. A fresh start per run keeps each run compiled.
    - cuDNN benchmark: the run's own setting, not whatever the last run chose.
    """
    if compile_model:
        import torch._dynamo as dynamo  # lazily: a second or more to import

        dynamo.reset()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
        gc.collect()  # the previous trial's tensors may sit in reference cycles
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
