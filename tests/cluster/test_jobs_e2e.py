"""ninsweep.jobs against a real Ray head on 127.0.0.1, with token authentication on.

These tests start Ray, so they run only inside a loopback-only network namespace:
``NINSWEEP_NETNS=1`` must be set (``tests/run.sh`` does it inside
``unshare -n -p -f --mount-proc``) *and* this process must see no network interface but
``lo``. The head is ``ray start --head --block`` in its own session; teardown stops it with
SIGTERM and then kills, by PID, whatever it started that is still alive. The PID namespace
ends anything left over.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray_support import RAY, alive, descendants, free_port, needs_netns

from ninsweep.cluster import jobs
from ninsweep.errors import NinsweepError

REPO = Path(__file__).resolve().parents[2]


pytestmark = [pytest.mark.ray, pytest.mark.slow, needs_netns]


@pytest.fixture(scope="module")
def head():
    """A one-node Ray cluster: GCS, dashboard and Jobs API on 127.0.0.1, token auth on."""
    tmp = Path(tempfile.mkdtemp(prefix="nsray-", dir="/tmp"))  # short: Ray's socket paths
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(24))
    token.chmod(0o600)
    # The job's `python` is the PATH's, as on a cluster whose nodes run this environment.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token), PATH=path)
    env.pop("RAY_ADDRESS", None)
    gcs_port, dashboard_port, client_port = free_port(), free_port(), free_port()
    log = (tmp / "ray-start.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block",
         "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
         "--port", str(gcs_port), "--dashboard-port", str(dashboard_port),
         "--ray-client-server-port", str(client_port),
         "--num-cpus", "2", "--object-store-memory", "100000000",
         "--disable-usage-stats", "--temp-dir", str(tmp / "ray")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited {proc.returncode}:\n"
                            f"{(tmp / 'ray-start.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for the token
            except OSError:
                if time.monotonic() - started > 120:
                    pytest.fail("the Ray dashboard did not come up in 120 s")
                time.sleep(0.5)
        print(f"\nray head up in {time.monotonic() - started:.1f} s at {address}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_TOKEN_PATH", str(token))
            mp.delenv("RAY_AUTH_TOKEN", raising=False)
            mp.delenv("RAY_AUTH_MODE", raising=False)  # jobs.py must not need it
            yield type("Head", (), {"address": address, "token": token, "tmp": tmp})
    finally:
        pids = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        pids += descendants(proc.pid) if proc.poll() is None else []
        for pid in [proc.pid, *pids]:
            if alive(pid):
                with __import__("contextlib").suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with __import__("contextlib").suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session we created for the head
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


# The driver of a submitted job, standing in for `ninsweep run` until a test needs the real
# sweep: it checks what the job shipped and connects the way sweep.start_ray does.
PROBE = r"""
import sys, pathlib, ray, ninsweep, ninsweep.cluster.jobs
space = pathlib.Path(sys.argv[1])
print("PROBE space", space, space.is_file())
print("PROBE package", pathlib.Path(ninsweep.__file__).resolve())
ray.init(address="auto", runtime_env={"py_modules": [str(pathlib.Path(ninsweep.__file__).parent)],
                                      "excludes": ["__pycache__"]}, logging_level="WARNING")
@ray.remote
def where():
    import ninsweep.cluster.jobs, os
    return ninsweep.cluster.jobs.TAG, os.getcwd()
print("PROBE worker", ray.get(where.remote()))
print("PROBE nodes", len([n for n in ray.nodes() if n["Alive"]]))
"""


def _probe_entrypoint(space_path: str) -> str:
    import shlex

    return shlex.join(["python", "-c", PROBE, space_path])


def _run(head, submission, timeout=180) -> tuple[str, str]:
    client = jobs.connect(head.address)
    job_id = client.submit_job(entrypoint=_probe_entrypoint(submission.space_path),
                               submission_id=submission.submission_id,
                               runtime_env=submission.runtime_env,
                               metadata=submission.metadata)
    chunks: list[str] = []
    status = jobs.wait_for_job(client, job_id, out=chunks.append, timeout=timeout)
    return status, "".join(chunks)


def test_job_gets_the_project_and_connects_with_the_token(head, tmp_path):
    started = time.monotonic()
    with jobs.prepare_submission("lab4", storage=str(tmp_path / "exp")) as sub:
        status, logs = _run(head, sub)
    print(f"probe job: {status} in {time.monotonic() - started:.1f} s")
    assert status == "SUCCEEDED", logs
    assert "PROBE space lab4.yaml True" in logs  # the space alone, not the checkout
    package_line = next(line for line in logs.splitlines() if line.startswith("PROBE package"))
    assert str(REPO) not in package_line, "the job imported the checkout, not what it shipped"
    assert "PROBE worker ('ninsweep'" in logs
    assert "PROBE nodes 1" in logs


def test_space_outside_the_project_runs_from_the_staged_copy(head, tmp_path):
    space = tmp_path / "elsewhere.yaml"
    shutil.copy(REPO / "search_spaces" / "lab4.yaml", space)
    with jobs.prepare_submission(str(space), storage=str(tmp_path / "exp")) as sub:
        assert sub.staged
        status, logs = _run(head, sub)
    assert status == "SUCCEEDED", logs
    assert "PROBE space elsewhere.yaml True" in logs
    package_line = next(line for line in logs.splitlines() if line.startswith("PROBE package"))
    assert str(REPO) not in package_line, "the job imported the checkout, not its py_module"
    assert "PROBE worker ('ninsweep'" in logs


def test_list_shows_only_ninsweep_jobs_and_stop_works(head, monkeypatch, capsys):
    client = jobs.connect(head.address)
    other = client.submit_job(entrypoint="echo not ours")
    ours = client.submit_job(entrypoint="sleep 120", submission_id=jobs.new_submission_id("x"),
                             metadata={jobs.TAG: "1", "space": "x", "name": "x"})
    ids = [row["job_id"] for row in jobs.list_jobs(head.address)]
    assert ours in ids and other not in ids

    from ninsweep import cli  # the command line

    capsys.readouterr()
    assert cli.main(["jobs", "list", "--address", head.address]) == 0
    listing = capsys.readouterr().out
    assert ours in listing and other not in listing
    deadline = time.monotonic() + 60
    while jobs.job_status(head.address, ours)["status"] == "PENDING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert jobs.stop_job(head.address, ours) is True
    assert jobs.wait_for_job(client, ours, out=lambda s: None, timeout=60) == "STOPPED"
    with pytest.raises(NinsweepError, match="no job ninsweep-nope"):
        jobs.job_status(head.address, "ninsweep-nope")


def test_missing_or_wrong_token_is_one_line(head, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    with pytest.raises(NinsweepError, match="requires an auth token"):
        jobs.list_jobs(head.address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    with pytest.raises(NinsweepError, match="rejected this auth token"):
        jobs.list_jobs(head.address)


@pytest.mark.skipif(not (REPO / "search_spaces" / "smoke.yaml").is_file()
                    or not (REPO / "ninsweep" / "__main__.py").is_file(),
                    reason="needs search_spaces/smoke.yaml and `python -m ninsweep`")
def test_smoke_sweep_submitted_and_succeeds(head, tmp_path):
    storage = tmp_path / "experiments"
    started = time.monotonic()
    job_id = jobs.submit_sweep(head.address, "search_spaces/smoke.yaml", storage=str(storage),
                               name="smoke-e2e", extra_args=["--max-epochs", "1"], out=None)
    chunks: list[str] = []
    status = jobs.wait_for_job(jobs.connect(head.address), job_id, out=chunks.append,
                               timeout=300)
    print(f"smoke sweep job: {status} in {time.monotonic() - started:.1f} s")
    assert status == "SUCCEEDED", "".join(chunks)[-4000:]
    assert (storage / "smoke-e2e" / "ninsweep.json").is_file()
    (row,) = [r for r in jobs.list_jobs(head.address) if r["job_id"] == job_id]
    assert row["space"] == "smoke" and row["name"] == "smoke-e2e"

    # `submit --resume` of the finished experiment: a job that restores it and ends well.
    started = time.monotonic()
    resume_id = jobs.submit_resume(head.address, str(storage / "smoke-e2e"), out=None)
    chunks = []
    status = jobs.wait_for_job(jobs.connect(head.address), resume_id, out=chunks.append,
                               timeout=300)
    print(f"resume job: {status} in {time.monotonic() - started:.1f} s")
    assert status == "SUCCEEDED", "".join(chunks)[-4000:]
