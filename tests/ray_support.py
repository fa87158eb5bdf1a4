"""Helpers for tests that start Ray or run the ninsweep command as a subprocess."""

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SPACES = Path(__file__).resolve().parent / "spaces"
FAULT_SPACE = SPACES / "fault.yaml"  # two trials, 6 epochs, a checkpoint every epoch, keep 2

RAY = Path(sys.executable).with_name("ray")


def network_interfaces() -> set[str]:
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return {"?"}
    return {line.split(":", 1)[0].strip() for line in lines}


# Ray may only start inside the loopback-only network namespace that tests/run.sh creates:
# NINSWEEP_NETNS=1 says we are in it, and the interfaces this process sees confirm it.
needs_netns = pytest.mark.skipif(
    os.environ.get("NINSWEEP_NETNS") != "1" or network_interfaces() != {"lo"},
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
        time.sleep(0.1)  # a /proc or file check: cheap, and each wait ends sooner
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def reported_records(trial_dir: Path) -> list[dict]:
    """Ray's raw result.json records (epoch, pid, ...), duplicates kept; a line being
    written is skipped."""
    import json

    path = trial_dir / "result.json"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    return records


def reported_epochs(trial_dir: Path) -> list[int]:
    """The epochs in Ray's result.json, raw: duplicates stay visible."""
    return [record["epoch"] for record in reported_records(trial_dir)]


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


# -- Ray processes started by tests (stopped by PID, never by name) --------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """PIDs below ``pid`` in the process tree, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_pids(pids) -> None:
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def sigkill_driver(driver) -> None:
    """SIGKILL a ``ninsweep`` driver and the Ray processes below it: they outlive a killed
    driver for a while, and a trial might checkpoint again meanwhile."""
    ray_processes = descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    kill_pids(ray_processes)


class RayNode:
    """One ``ray start --block`` in its own session; everything it starts is below its PID."""

    def __init__(self, name: str, args: list[str], env: dict, tmp: Path):
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1",
             "--disable-usage-stats", "--temp-dir", str(tmp / name),
             "--dashboard-agent-listen-port", str(free_port()),
             "--min-worker-port", "0", "--max-worker-port", "0", *args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=tmp)

    def wait_started(self, timeout: float = 120) -> None:
        wait_until(lambda: "Ray runtime started" in self.log_path.read_text(), timeout,
                   f"the Ray {self.name} node to start", self.proc, self.log_path)

    def pids(self) -> set[int]:
        return {self.proc.pid, *descendants(self.proc.pid)}

    def kill(self) -> list[int]:
        """Lose the node: SIGKILL ``ray start`` first (it would stop the rest gracefully),
        then every process it started, all found before the first signal."""
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        kill_pids(pids)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session we created for it
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            pids = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
            pids += descendants(self.proc.pid) if self.proc.poll() is None else []
            kill_pids([self.proc.pid, *pids])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def one_line_error(capsys) -> str:
    """The command's error, asserted to be ninsweep's one line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("ninsweep: error: ") and "\n" not in err, err
    return err


def write_images(root: Path, classes: dict[str, int], size: int = 16) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (size, size), (index * 20 % 255, 40, 90)).save(folder / f"{index}.png")


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    """A space file in ``tmp_path`` from YAML text (dedented)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_bench(name: str):
    """A script of bench/ as a module (its sibling modules importable while it loads)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module
