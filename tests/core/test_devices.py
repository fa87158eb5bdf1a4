"""The GPU path, tested on a machine without a GPU (issue 14).

No test here needs CUDA. Where a test stands in for a GPU machine it says what it mocks:
``torch.cuda.is_available`` / ``device_count`` (passed to ``trial_device`` as callables),
``ray.get_gpu_ids`` (what Ray would grant the trial's worker), and the ``torch.cuda``
memory functions that ``prepare_device`` calls on a CUDA device. Evaluation precision is
tested for real with CPU bf16 autocast, and compile across reused workers for real with
Dynamo (the "eager" backend: Inductor would take minutes on 2 cores, and the graph cache
under test is Dynamo's, the same for every backend).
"""

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ray_support import ROOT, needs_netns

from ninsweep.config import TrialConfig
from ninsweep.core import devices
from ninsweep.core.train import Trainer
from ninsweep.errors import ConfigError, DeviceError
from ninsweep.space import load_space, parse_space


def tiny(tmp_path, model=None, **train):
    recipe = dict(epochs=1, batch_size=32, eval_batch_size=32, threads=1)
    recipe.update(train)
    return TrialConfig.from_dict({
        "model": model or {"activation": "elu", "batchnorm": True, "init": "he"},
        "data": {"source": "synthetic", "synthetic_train_size": 48, "synthetic_test_size": 40,
                 "synthetic_image_size": 16, "cache_dir": str(tmp_path / "cache")},
        "train": recipe,
    })


def no_cuda():
    return False


def has_cuda():
    return True


# -- 1. a granted GPU that cannot start CUDA fails at once, with one line -------------------

@pytest.mark.parametrize("requested", ["auto", "cuda", "cuda:0"])
def test_a_trial_granted_a_gpu_without_working_cuda_fails_with_one_line(requested):
    # Mocked: Ray granted one GPU (a fraction of one looks the same: one GPU id) and CUDA
    # cannot start in the worker.
    with pytest.raises(DeviceError) as caught:
        devices.trial_device(requested, 1, "elu-bn-he-s0", cuda_available=no_cuda)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("elu-bn-he-s0: Ray granted this trial a GPU")
    assert torch.__version__ in message


def test_a_trial_granted_a_working_gpu_trains_on_it():
    # Mocked: CUDA starts and the worker sees the 1 or 2 GPUs Ray granted.
    assert devices.trial_device("auto", 1, "t", cuda_available=has_cuda) == "cuda"
    assert devices.trial_device("cuda", 1, "t", cuda_available=has_cuda) == "cuda"
    assert devices.trial_device("cuda:1", 2, "t", cuda_available=has_cuda,
                                visible_gpus=lambda: 2) == "cuda:1"
    with pytest.raises(DeviceError, match="sees 1 GPU"):
        devices.trial_device("cuda:1", 1, "t", cuda_available=has_cuda, visible_gpus=lambda: 1)


def test_the_trainable_fails_before_training_when_the_granted_gpu_is_unusable(monkeypatch):
    # Mocked: ray.get_gpu_ids, as in a worker Ray granted 0.25 GPU; this machine has no
    # CUDA, exactly the case of a node whose driver is too old for its torch build.
    import ray

    from ninsweep.sweep.trainable import device_for_trial

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: ["0"])
    with pytest.raises(DeviceError, match="relu-nobn-keras-s0: Ray granted"):
        device_for_trial(TrialConfig(), "relu-nobn-keras-s0")


def test_every_run_logs_its_device_and_versions(tmp_path):
    lines = []
    Trainer(tiny(tmp_path), log=lines.append)
    device_lines = [line for line in lines if line.startswith("device ")]
    assert len(device_lines) == 1
    assert device_lines[0].startswith("device cpu (1 threads)")
    assert f"torch {torch.__version__}" in device_lines[0]


# -- 2. a zero-GPU trial hides the GPUs and trains on CPU ----------------------------------

def test_a_zero_gpu_trial_hides_the_gpus_before_cuda_starts():
    # A fresh process, like a new Ray worker on a GPU node: CUDA_VISIBLE_DEVICES names a GPU
    # (Ray 2.60 leaves it as the node has it) and ray.get_gpu_ids is mocked to return [].
    script = (
        "import ray, torch\n"
        "ray.get_gpu_ids = lambda: []\n"
        "from ninsweep.config import TrialConfig\n"
        "from ninsweep.sweep.trainable import device_for_trial\n"
        "cfg = device_for_trial(TrialConfig(), 'relu-nobn-keras-s0')\n"
        "import os\n"
        "print('device', cfg.train.device)\n"
        "print('visible', repr(os.environ['CUDA_VISIBLE_DEVICES']))\n"
        "print('cuda started', torch.cuda.is_initialized())\n"
        "print('gpus', torch.cuda.device_count())\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert "device cpu" in out and "visible ''" in out and "gpus 0" in out
    assert "cuda started False" in out
    assert "relu-nobn-keras-s0: Ray granted GPU ids []; training on cpu" in out


def test_a_zero_gpu_trial_refuses_an_explicit_cuda_device():
    with pytest.raises(DeviceError, match="asks Ray for no GPU"):
        devices.trial_device("cuda", 0, "t", cuda_available=has_cuda)
    # "auto" on a zero-GPU trial is CPU even where CUDA works (mocked): Ray did not count it.
    assert devices.trial_device("auto", 0, "t", cuda_available=has_cuda) == "cpu"


# -- 3. peak memory per trial; 6. cudnn benchmark from the config --------------------------

@pytest.mark.parametrize("benchmark", [True, False])
def test_prepare_device_resets_the_previous_trials_memory_and_sets_cudnn(monkeypatch,
                                                                         benchmark):
    # Mocked: the torch.cuda memory functions (no GPU here); the device object is a real
    # torch.device("cuda:0"), which needs no GPU to exist.
    calls = []
    monkeypatch.setattr(devices.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device: calls.append(("reset_peak", str(device))))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not benchmark)
    devices.prepare_device(torch.device("cuda:0"), compile_model=False,
                           cudnn_benchmark=benchmark)
    # Freed blocks go back before the peak is reset, so the peak starts at this trial's own.
    assert calls == ["collect", "empty_cache", ("reset_peak", "cuda:0")]
    assert torch.backends.cudnn.benchmark is benchmark


def test_the_trainer_prepares_its_device_from_its_config_before_building_the_model(
        tmp_path, monkeypatch):
    import ninsweep.core.train as train_module

    seen = []
    real_build = train_module.build_model  # the NIN, or a model factory's module
    monkeypatch.setattr(train_module, "prepare_device",
                        lambda device, compile_model, cudnn_benchmark: seen.append(
                            ("prepare", device.type, compile_model, cudnn_benchmark)))
    monkeypatch.setattr(train_module, "build_model",
                        lambda config: seen.append("model") or real_build(config=config))
    Trainer(tiny(tmp_path, cudnn_benchmark=False))
    assert seen == [("prepare", "cpu", False, False), "model"]


def test_prepare_device_on_cpu_leaves_cuda_alone(monkeypatch):
    def forbidden(*args):
        raise AssertionError("touched torch.cuda on a CPU run")

    monkeypatch.setattr(torch.cuda, "empty_cache", forbidden)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", forbidden)
    devices.prepare_device(torch.device("cpu"), compile_model=False)


# -- 4. evaluation in fp32 -----------------------------------------------------------------

def test_evaluation_computes_logits_in_fp32_while_training_keeps_bf16(tmp_path):
    # CPU bf16 autocast stands in for CUDA's: forcing trainer.amp on CPU takes the same code
    # path a CUDA run takes (the Trainer only enables amp on CUDA by itself).
    trainer = Trainer(tiny(tmp_path))
    trainer.amp = True
    dtypes = []
    trainer.model.register_forward_hook(lambda module, args, output: dtypes.append(
        (module.training, output.dtype)))
    trainer.train_one_epoch()
    assert {d for training, d in dtypes if training} == {torch.bfloat16}
    assert {d for training, d in dtypes if not training} == {torch.float32}

    # And the figures are those of a full-fp32 evaluation of the same weights.
    with_amp = trainer.evaluate()
    trainer.amp = False
    assert trainer.evaluate() == with_amp


# -- 5. torch.compile across reused workers ------------------------------------------------

@pytest.mark.slow
def test_compiled_runs_in_one_reused_process_stay_compiled(tmp_path, monkeypatch):
    # One process trains three compiled models in turn, as a reused Ray worker does. Without
    # a fresh Dynamo per run, the third model's forward exceeds Dynamo's recompile limit (8)
    # and would silently run eager; fail_on_recompile_limit_hit turns that into an error
    # here. Backend "eager": see the module docstring.
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    for model in ({"activation": "relu"}, {"activation": "elu", "batchnorm": True},
                  {"activation": "maxout", "batchnorm": True, "init": "he"}):
        trainer = Trainer(tiny(tmp_path, model=model, compile=True))
        assert trainer.step_model is not trainer.model  # compiled
        trainer.fit()
    torch._dynamo.reset()


def test_compile_off_keeps_other_compiled_graphs(monkeypatch):
    import torch._dynamo

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    devices.prepare_device(torch.device("cpu"), compile_model=False)
    assert resets == []
    devices.prepare_device(torch.device("cpu"), compile_model=True)
    assert resets == [1]


# -- 6. device settings are checked before Ray starts --------------------------------------

def test_cudnn_benchmark_is_a_train_setting():
    assert TrialConfig().train.cudnn_benchmark is True
    cfg = TrialConfig.from_dict({"train": {"cudnn_benchmark": False}})
    assert cfg.train.cudnn_benchmark is False
    with pytest.raises(ConfigError, match="train.cudnn_benchmark: expected true or false"):
        TrialConfig.from_dict({"train": {"cudnn_benchmark": "no"}})


def test_a_cuda_index_beyond_the_visible_devices_is_one_line(monkeypatch):
    # Mocked: a process that sees one CUDA device.
    from ninsweep.core.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", has_cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"^train.device: 'cuda:1' requested but this "
                                          r"process sees 1 CUDA device\(s\)"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize("device", ["cuda:x", "cpu:0", "cuda:", "gpu"])
def test_malformed_devices_are_refused(device):
    with pytest.raises(ConfigError, match="train.device"):
        TrialConfig.from_dict({"train": {"device": device}})


SPACE = """
name: dev
grid: [{{activation: [relu]}}]
train: {{device: {device}}}
resources: {{gpus: {gpus}}}
"""


@pytest.mark.parametrize("device, gpus, problem", [
    ("'cuda:1'", 0.25, "sees only the 1 GPU"),
    ("'cuda:2'", 2, "sees only the 2 GPU"),
    ("cuda", 0, "asks Ray for no GPU"),
    ("cpu", 0.5, "would leave idle"),
])
def test_a_space_whose_device_no_trial_could_use_fails_before_ray(device, gpus, problem):
    with pytest.raises(ConfigError) as caught:
        parse_space(SPACE.format(device=device, gpus=gpus), "dev.yaml")
    message = str(caught.value)
    assert message.startswith("dev.yaml: train.device: ") and problem in message
    assert "\n" not in message


def test_a_space_with_a_usable_device_loads():
    for device, gpus in (("'cuda:1'", 2), ("cuda", 0.25), ("auto", 0), ("cpu", 0)):
        parse_space(SPACE.format(device=device, gpus=gpus), "dev.yaml")


def test_gpus_per_trial_zero_is_refused_for_a_cuda_space():
    spec = parse_space(SPACE.format(device="cuda", gpus=0.25), "dev.yaml")
    with pytest.raises(ConfigError, match="^--gpus-per-trial: 'cuda' in trial"):
        spec.with_overrides(gpus_per_trial=0)
    # The lab4 spaces (device auto) run anywhere.
    load_space(ROOT / "search_spaces" / "lab4.yaml").with_overrides(gpus_per_trial=0)


# -- the same through Ray: a node that advertises a GPU it does not have -------------------

FAKE_GPU_SPACE = """
name: fakegpu
grid: [{activation: [relu]}]
data: {source: synthetic, synthetic_train_size: 64, synthetic_test_size: 32,
       synthetic_image_size: 16}
train: {epochs: 1, batch_size: 32, eval_batch_size: 32, threads: 1}
resources: {cpus: 1, gpus: 0.5}
failure: {max_retries: 1}
"""


@pytest.mark.ray
@pytest.mark.slow
@needs_netns
def test_ray_trials_on_a_node_whose_gpu_cannot_start_cuda(tmp_path):
    # A real Ray node started with --num-gpus 1 on this CPU machine: Ray grants trials "GPU
    # 0" and sets CUDA_VISIBLE_DEVICES, exactly as on a GPU node whose driver cannot run
    # this torch; nothing is mocked. A 0.5-GPU trial must fail at once with the one line
    # (and Tune's one retry fails the same way); with --gpus-per-trial 0 the same space
    # trains on CPU with the GPUs hidden, although the node's CUDA_VISIBLE_DEVICES names one.
    import secrets
    import tempfile

    from ray_support import RayNode, cli_env, free_port, ninsweep

    tmp = Path(tempfile.mkdtemp(prefix="nsg-", dir="/tmp"))  # short: Ray's socket paths
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(24))
    token.chmod(0o600)
    env = cli_env(tmp_path)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), CUDA_VISIBLE_DEVICES="0",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.pop("RAY_ADDRESS", None)
    space = tmp_path / "fakegpu.yaml"
    space.write_text(FAKE_GPU_SPACE)
    port = free_port()
    head = RayNode("head", ["--head", "--port", str(port), "--include-dashboard=false",
                            "--ray-client-server-port", str(free_port()), "--num-cpus", "2",
                            "--num-gpus", "1", "--object-store-memory", "80000000",
                            "--memory", "3000000000"], env, tmp)
    try:
        head.wait_started()
        address = f"127.0.0.1:{port}"
        storage = tmp_path / "runs"
        done = ninsweep("run", space, "--address", address, "--storage", storage,
                        "--name", "granted", env=env, timeout=600)
        assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
        error = (storage / "granted" / "relu-nobn-keras-s0" / "error.txt").read_text()
        assert "DeviceError: relu-nobn-keras-s0: Ray granted this trial a GPU but CUDA cannot start" in error
        assert not list((storage / "granted" / "relu-nobn-keras-s0").glob("checkpoint_*"))  # no epoch
        # The progress line (on stderr, with the errors) names the problem, not just the file.
        assert "relu-nobn-keras-s0: error: ninsweep.errors.DeviceError: relu-nobn-keras-s0: " \
               "Ray granted this trial a GPU" in done.stderr

        done = ninsweep("run", space, "--address", address, "--storage", storage,
                        "--name", "zero", "--gpus-per-trial", "0", env=env, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        # The trial's own lines: in its trial log, not on the console.
        output = (storage / "zero" / "relu-nobn-keras-s0" / "trial.log").read_text()
        assert "relu-nobn-keras-s0: Ray granted GPU ids []; training on cpu" in output
        assert "relu-nobn-keras-s0: device cpu (1 threads)" in output
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)
