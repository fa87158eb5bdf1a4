"""Helpers for tests that start Ray or run the ninsweep command as a subprocess."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = Path(__file__).resolve().parent / "spaces"

# Ray may only start inside the loopback-only network namespace that tests/run.sh creates.
needs_netns = pytest.mark.skipif(
    os.environ.get("NINSWEEP_NETNS") != "1",
    reason="starts Ray: run through tests/run.sh (a loopback-only network namespace, as root)")


def cli_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", NINSWEEP_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONUNBUFFERED="1")
    return env


def ninsweep(*args, env=None, timeout=300, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ninsweep", *map(str, args)], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_ninsweep(*args, env=None, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "ninsweep", *map(str, args)], env=env,
                            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True)


def wait_until(predicate, timeout: float, what: str, process=None, log: Path = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.25)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def reported_epochs(trial_dir: Path) -> list[int]:
    """The epochs in Ray's result.json, raw: duplicates stay visible."""
    import json

    path = trial_dir / "result.json"
    if not path.exists():
        return []
    epochs = []
    for line in path.read_text().splitlines():
        try:
            epochs.append(json.loads(line)["epoch"])
        except (ValueError, KeyError):
            pass  # a line being written
    return epochs


def read_tensorboard(path: Path) -> tuple[dict[str, list[float]], set[str]]:
    """Scalars and hyperparameter names of one TensorBoard event file, parsed from its
    TFRecord framing (no TensorBoard install needed)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    scalars: dict[str, list[float]] = {}
    hparams: set[str] = set()
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        record = data[offset + 12:offset + 12 + length]
        offset += 12 + length + 4
        event = Event.FromString(record)
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append(value.simple_value)
            elif value.tag == "_hparams_/session_start_info":
                plugin = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                hparams.update(plugin.session_start_info.hparams.keys())
    return scalars, hparams
