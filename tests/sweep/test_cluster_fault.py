"""Losing a worker node mid-trial: Tune reschedules the trial from its latest checkpoint.

A real two-node Ray cluster on this machine, inside the loopback-only network namespace of
tests/run.sh: a head (1 CPU) and a worker node (1 CPU), each ``ray start --block`` in its
own session with its own temp dir, limited object store and memory, token auth on. The
sweep (``ninsweep run tests/spaces/fault.yaml --address ...``, two trials of one CPU) puts
one trial on each node. Once the trial on the worker node has reported two epochs (and the
one on the head at least one), the test kills that node -- ``ray start``, its raylet, agents
and workers, every PID of its process tree, with SIGKILL. Tune sees the trial's actor fail
(in Ray 2.60 within a second or two, as ``ActorUnavailableError`` on the broken connection:
long before the GCS declares the node dead after its failed health checks), counts a
failure against ``failure.max_retries``, and starts the trial again on the head once that
has a free CPU (the old placement group's CPU on the dead node still counts as taken). The
trial continues from its latest checkpoint; the sweep finishes with every trial complete
and every epoch exactly once in each history.

Which node ran a trial: both nodes are 127.0.0.1, so the ``pid`` Tune writes into each
result.json record is looked up in the worker node's process tree.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ray_support import SPACES, RayNode, cli_env, free_port, needs_netns, reported_records, start_ninsweep, wait_until

from ninsweep import metrics as M
from ninsweep.analysis import load_history
from ninsweep.space import load_space

FAULT_SPACE = SPACES / "fault.yaml"


pytestmark = [pytest.mark.ray, pytest.mark.slow, needs_netns]


@pytest.fixture
def cluster(tmp_path):
    """A head and a worker node, 1 CPU each, token auth on; both stopped by PID afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="nsf-", dir="/tmp"))  # short: Ray's socket paths
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(24))
    token.chmod(0o600)
    env = cli_env(tmp_path)  # the nodes' workers run the trials: same data cache as the driver
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    limits = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", "80000000",
              "--memory", "3000000000"]
    nodes: list[RayNode] = []
    started = time.monotonic()
    try:
        head = RayNode("head", ["--head", "--port", str(port), "--include-dashboard=false",
                                "--ray-client-server-port", str(free_port()), *limits],
                       env, tmp)
        nodes.append(head)
        head.wait_started()
        worker = RayNode("worker", ["--address", f"127.0.0.1:{port}", *limits], env, tmp)
        nodes.append(worker)
        worker.wait_started()
        print(f"\ntwo-node Ray cluster up in {time.monotonic() - started:.1f} s "
              f"(head 127.0.0.1:{port})")
        yield type("Cluster", (), {"address": f"127.0.0.1:{port}", "env": env, "head": head,
                                   "worker": worker, "tmp": tmp})
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_losing_the_worker_node_mid_trial_reschedules_it_from_its_checkpoint(cluster, tmp_path):
    spec = load_space(FAULT_SPACE)
    epochs = spec.trials[0].config.train.epochs
    names = [trial.name for trial in spec.trials]
    storage = tmp_path / "results"
    experiment = storage / spec.name
    log = tmp_path / "run.log"
    env = dict(cluster.env, NINSWEEP_SHARED_STORAGE="1")  # one machine: both nodes see it

    started = time.monotonic()
    driver = start_ninsweep("run", FAULT_SPACE, "--address", cluster.address,
                            "--storage", storage, env=env, log=log)
    # Every PID seen in each node's process tree while the sweep runs: a trial's process
    # lives for seconds, far longer than a poll.
    on_head: set[int] = set()
    on_worker: set[int] = set()

    def watch() -> None:
        on_head.update(cluster.head.pids())
        if cluster.worker.proc.poll() is None:
            on_worker.update(cluster.worker.pids())

    def trial_on_worker(min_epochs: int):
        for name in names:
            records = reported_records(experiment / name)
            if len(records) >= min_epochs and records[-1]["pid"] in on_worker:
                return name
        return None

    def other_trial_reporting(victim):
        return victim and reported_records(experiment / next(n for n in names if n != victim))

    try:
        # The other trial must have reported too: its records are what show it on the head
        # (an empty history would prove nothing) and what the survivor checks compare with.
        wait_until(lambda: watch() or other_trial_reporting(trial_on_worker(2)), 180,
                   "two epochs of the trial on the worker node and one of the other",
                   driver, log)
        victim = trial_on_worker(2)
        survivor = next(name for name in names if name != victim)
        survivor_records = reported_records(experiment / survivor)
        assert survivor_records, f"{survivor} has reported nothing"
        assert survivor_records[-1]["pid"] in on_head, \
            "the other trial is not on the head: the sweep was not spread across both nodes"

        killed_at = time.monotonic()
        killed = set(cluster.worker.kill())
        before = [r[M.EPOCH] for r in reported_records(experiment / victim)]
        assert max(before) < epochs, "the trial finished before its node could be lost"
        print(f"{victim}: worker node killed ({len(killed)} processes) after epoch "
              f"{max(before)}, {killed_at - started:.1f} s into the sweep")

        wait_until(lambda: watch() or any(r["pid"] not in killed
                                          for r in reported_records(experiment / victim)),
                   150, f"{victim} to report again after the node loss", driver, log)
        print(f"{victim}: reporting again {time.monotonic() - killed_at:.1f} s after the kill")
        deadline = time.monotonic() + 240
        while driver.poll() is None:
            assert time.monotonic() < deadline, "the sweep did not end\n" + log.read_text()[-4000:]
            watch()
            time.sleep(0.25)
        assert driver.returncode == 0, log.read_text()[-4000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
    wall = time.monotonic() - started
    output = log.read_text()
    print(f"sweep with a lost node: {wall:.1f} s")

    assert f"{len(names)}/{len(names)} trials finished, 0 errored" in output, output[-4000:]
    for name in names:
        assert list(load_history(experiment / name)[M.EPOCH]) == list(range(1, epochs + 1)), name

    # The survivor never stopped: one process, each epoch once.
    survivor_records = reported_records(experiment / survivor)
    assert [r[M.EPOCH] for r in survivor_records] == list(range(1, epochs + 1))
    assert len({r["pid"] for r in survivor_records}) == 1

    # The victim: epochs 1..k on the worker node, then k'+1..N in a new process on the head,
    # where k' is its latest checkpoint: with a checkpoint every epoch at most the epoch in
    # flight when the node died (recorded but not yet checkpointed) is redone.
    records = reported_records(experiment / victim)
    before_kill = [r[M.EPOCH] for r in records if r["pid"] in killed]
    after = [r for r in records if r["pid"] not in killed]
    assert before_kill == list(range(1, len(before_kill) + 1)), records
    assert len({r["pid"] for r in after}) == 1, "more than one restart"
    assert after[0]["pid"] in on_head, "the trial did not continue on the head node"
    # An epoch the dying node checkpointed but never got into result.json comes back from
    # the checkpoint's history (marked replayed), not trained again.
    replayed = [r[M.EPOCH] for r in after if r.get(M.REPLAYED)]
    trained = [r for r in after if not r.get(M.REPLAYED)]
    resumed_at = trained[0][M.EPOCH]
    assert replayed == list(range(len(before_kill) + 1, resumed_at)), records
    assert [r[M.EPOCH] for r in trained] == list(range(resumed_at, epochs + 1))
    assert 1 < resumed_at <= len(before_kill) + len(replayed) + 1, f"restarted from epoch {resumed_at}"
    assert len(before_kill) + 1 - resumed_at <= spec.checkpoint.every, "epochs redone"
    trial_log = (experiment / victim / "trial.log").read_text()  # the trial's own output
    assert f"{victim}: resumed after epoch {resumed_at - 1}" in trial_log, trial_log[-4000:]
    assert len(records) - epochs <= spec.checkpoint.every
