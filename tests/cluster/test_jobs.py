"""ninsweep.jobs without a cluster: what a submission ships, the storage rule (ninsweep.storage),
the auth token, errors on unreachable addresses, and the CLI glue against a fake Jobs client."""

from __future__ import annotations

import argparse
import shlex
import shutil
import socket
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ninsweep.cli import cluster as cli
from ninsweep.cli import main
from ninsweep.cli.parsers import add_jobs_arguments, add_submit_arguments
from ninsweep.cluster import jobs
from ninsweep.errors import NinsweepError
from ninsweep.user_code import SECRET_EXCLUDES

REPO = Path(__file__).resolve().parents[2]
LAB4 = REPO / "search_spaces" / "lab4.yaml"


# -- helpers --------------------------------------------------------------------------


@pytest.fixture()
def project(tmp_path):
    """A fake checkout: package, spaces, and everything that must never ship."""
    root = tmp_path / "proj"
    (root / "ninsweep").mkdir(parents=True)
    (root / "ninsweep" / "__init__.py").write_text("")
    (root / "ninsweep" / "data.py").write_text("# must ship despite the /data exclude\n")
    (root / "search_spaces").mkdir()
    shutil.copy(LAB4, root / "search_spaces" / "lab4.yaml")
    (root / "pyproject.toml").write_text("[project]\nname = 'ninsweep'\n")
    junk = {
        ".venv/lib/python3.11/site-packages/torch/big.so": "x",
        ".git/HEAD": "ref: refs/heads/main\n",
        "runs/lab4/elu-bn-he-s0/checkpoint_000001/state.pt": "x",
        "data/cifar-10-batches-py/data_batch_1": "x",
        ".data/cache.u8": "x",
        "ninsweep/__pycache__/jobs.cpython-311.pyc": "x",
        ".pytest_cache/v/cache/lastfailed": "{}",
        "notes/ignored-by-gitignore.txt": "x",
    }
    for rel, text in junk.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / ".gitignore").write_text("/notes/\n")
    return root


def _packed(working_dir: str, excludes) -> list[str]:
    """The files Ray would upload for this working_dir (Ray's own packer, offline)."""
    from ray._private.runtime_env.packaging import create_package

    target = Path(working_dir).parent / f"pkg-{time.monotonic_ns()}.zip"
    create_package(working_dir, target, include_gitignore=True, excludes=list(excludes))
    try:
        return [n for n in zipfile.ZipFile(target).namelist() if not n.endswith("/")]
    finally:
        target.unlink()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what a submission ships ------------------------------------------------------------


SECRETS = (".env", ".env.production", ".envrc", ".netrc", ".aws/credentials", ".aws/config",
           ".ssh/id_rsa", ".ssh/id_ed25519.pub", "server.pem", "tls.key", "deploy/cert.p12",
           ".config/gcloud/application_default_credentials.json", ".git-credentials",
           "gcp-service-account.json", ".kube/config", ".docker/config.json")


def _plant_secrets(root: Path) -> None:
    for rel in SECRETS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("SECRET\n")


def test_submission_ships_the_package_and_the_space_only(project):
    _plant_secrets(project)
    _plant_secrets(project / "ninsweep")  # even inside the package folder
    with jobs.prepare_submission(str(project / "search_spaces" / "lab4.yaml"),
                                 storage="/mnt/ninsweep/experiments", name="lab4-a",
                                 extra_args=["--max-epochs", "2"],
                                 working_dir=project, submission_id="sub-1") as sub:
        assert sub.submission_id == "sub-1"
        staging = Path(sub.runtime_env["working_dir"])
        assert staging != project and not staging.is_relative_to(project)
        assert sub.runtime_env["py_modules"] == [str(jobs.package_dir())]
        assert shlex.split(sub.entrypoint) == [
            "python", "-m", "ninsweep", "run", "lab4.yaml", "--address", "auto",
            "--storage", "/mnt/ninsweep/experiments", "--name", "lab4-a", "--max-epochs", "2"]
        assert sub.metadata["ninsweep"] == "1"
        assert sub.metadata["space"] == "lab4"
        assert sub.metadata["name"] == "lab4-a"
        assert all(isinstance(v, str) for v in sub.metadata.values())
        assert _packed(str(staging), sub.runtime_env["excludes"]) == ["lab4.yaml"]
        # The package upload, with the same excludes, through Ray's own packer: a package
        # folder that holds secrets ships its code and none of them.
        shipped = _packed(str(project / "ninsweep"), sub.runtime_env["excludes"])
    assert "__init__.py" in shipped and "data.py" in shipped
    assert not any("__pycache__" in name for name in shipped)
    leaked = [name for name in shipped if "SECRET" in (project / "ninsweep" / name).read_text()]
    assert leaked == []


def test_the_secret_list_is_the_one_list_and_covers_the_usual_files():
    # One place: EXCLUDES (every upload) carries SECRET_EXCLUDES whole.
    assert set(SECRET_EXCLUDES) <= set(jobs.EXCLUDES)
    for pattern in (".env", ".aws", ".ssh", "*.pem", "*.key", ".netrc"):
        assert pattern in SECRET_EXCLUDES


# Issue 23: what a user's factory package may hold besides its code.
MORE_SECRETS = (".boto", ".s3cfg", "hf_token", ".bash_history", ".zsh_history",
                ".python_history", ".cache/huggingface/token", ".config/gh/hosts.yml",
                ".kaggle/kaggle.json", ".huggingface/token", "vault.kdbx", "store.jks",
                "wallet.keystore", "putty.ppk", ".vault-token", "rclone.conf",
                ".databrickscfg", "sub/.boto", "sub/.s3cfg", "sub/hf_token",
                "sub/.bash_history", "sub/deep/.aws/credentials", "sub/deep/api.token")


def test_a_factory_package_ships_its_code_and_none_of_its_secrets(tmp_path):
    from ninsweep.sweep.ray_cluster import cluster_runtime_env

    package = tmp_path / "proj" / "mynets"
    for rel in ("__init__.py", "model.py", "sub/__init__.py", "sub/deep/layers.py"):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text("def net(num_classes=10): ...\n")
    for rel in (*SECRETS, *MORE_SECRETS):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text("SECRET\n")
    space = tmp_path / "proj" / "fac.yaml"
    space.write_text("model: {factory: 'mynets.model:net'}\ngrid:\n  - width: [4]\n")
    (package / "model.py").write_text("def net(width=4, num_classes=10): ...\n")
    code = ("__init__.py", "model.py", "sub/__init__.py", "sub/deep/layers.py")
    with jobs.prepare_submission(str(space), storage="/mnt/x", working_dir=tmp_path / "proj",
                                 submission_id="sub-1") as sub:
        assert str(package) in sub.runtime_env["py_modules"]  # submit ships the package
        assert sorted(_packed(str(package), sub.runtime_env["excludes"])) == sorted(code)
    # `run --address` ships it by the same list.
    env = cluster_runtime_env([str(package)])
    assert sorted(_packed(str(package), env["excludes"])) == sorted(code)


def test_space_outside_the_project_is_staged(project, tmp_path):
    outside = tmp_path / "elsewhere" / "my space.yaml"
    outside.parent.mkdir()
    shutil.copy(LAB4, outside)
    with jobs.prepare_submission(str(outside), storage="s3://bucket/ninsweep",
                                 working_dir=project) as sub:
        staging = Path(sub.runtime_env["working_dir"])
        assert sub.staged and sub.notes
        assert staging != project and staging.is_dir()
        assert (staging / "my space.yaml").read_text() == LAB4.read_text()
        # The package ships as a py_module, so the job imports ninsweep on any cluster.
        assert sub.runtime_env["py_modules"] == [str(Path(jobs.__file__).resolve().parents[1])]
        assert shlex.split(sub.entrypoint)[4] == "my space.yaml"
        assert _packed(str(staging), sub.runtime_env["excludes"]) == ["my space.yaml"]
    assert not staging.exists(), "the staging directory outlives the submission"


def test_space_in_an_excluded_directory_is_staged(project):
    hidden = project / "runs" / "tweaked.yaml"
    shutil.copy(LAB4, hidden)
    with jobs.prepare_submission(str(hidden), storage="/mnt/x", working_dir=project) as sub:
        assert sub.staged
        assert sub.space_path == "tweaked.yaml"


def test_space_by_name_ships_without_the_checkout():
    with jobs.prepare_submission("lab4", storage="gs://bucket/x") as sub:
        assert sub.runtime_env["working_dir"] != str(REPO)
        assert sub.space_path == "lab4.yaml"
        assert sub.submission_id.startswith("ninsweep-lab4-")


@pytest.mark.parametrize("storage, fragment", [
    (None, "needs --storage"),
    ("runs", "absolute path"),
    ("~/ninsweep-results", "absolute path"),
    ("file://runs", "absolute path"),
])
def test_submission_refuses_storage_the_cluster_would_lose(storage, fragment):
    with pytest.raises(NinsweepError, match=fragment):
        with jobs.prepare_submission("lab4", storage=storage):
            pass


def test_submission_refuses_address_in_extra_args():
    with pytest.raises(NinsweepError, match="--address"):
        with jobs.prepare_submission("lab4", storage="/mnt/x",
                                     extra_args=["--address", "10.0.0.1:6379"]):
            pass


def test_submission_validates_the_space_locally(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [{activation: [nope]}]\nbogus_key: 1\n")
    with pytest.raises(NinsweepError, match="bad.yaml"):
        with jobs.prepare_submission(str(bad), storage="/mnt/x"):
            pass


# -- storage rule -------------------------------------------------------------------------
























# -- addresses, auth token, unreachable clusters ---------------------------------------


def test_address_normalization(monkeypatch):
    monkeypatch.delenv(jobs.ADDRESS_ENV, raising=False)
    assert jobs.normalize_address(None) == jobs.DEFAULT_ADDRESS
    assert jobs.normalize_address("head:8265") == "http://head:8265"
    assert jobs.normalize_address("https://ray.example.org/") == "https://ray.example.org"
    monkeypatch.setenv(jobs.ADDRESS_ENV, "http://10.0.0.5:8265")
    assert jobs.normalize_address(None) == "http://10.0.0.5:8265"
    for bad in ("auto", "ray://head:10001", "ftp://head", "http://head:notaport"):
        with pytest.raises(NinsweepError):
            jobs.normalize_address(bad)


def test_unreachable_address_is_one_fast_line():
    address = f"http://127.0.0.1:{_closed_port()}"
    for call in (lambda: jobs.list_jobs(address),
                 lambda: jobs.job_status(address, "ninsweep-x"),
                 lambda: jobs.stop_job(address, "ninsweep-x"),
                 lambda: jobs.submit_sweep(address, "lab4", storage="/mnt/x", out=None)):
        start = time.monotonic()
        with pytest.raises(NinsweepError) as err:
            call()
        assert time.monotonic() - start < 3
        message = str(err.value)
        assert address in message and "\n" not in message


def test_unroutable_address_times_out_quickly():
    start = time.monotonic()
    with pytest.raises(NinsweepError, match=r"10\.255\.255\.1"):
        jobs.connect("http://10.255.255.1:8265", timeout=0.3)
    assert time.monotonic() - start < 3


@pytest.fixture()
def token_env(tmp_path, monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the real user
    return monkeypatch


def test_auth_token_sent_whenever_one_is_configured(token_env, tmp_path):
    assert jobs.auth_headers() == {}
    token_env.setenv("RAY_AUTH_TOKEN", "tok-env")
    assert jobs.auth_headers() == {"Authorization": "Bearer tok-env"}
    token_env.delenv("RAY_AUTH_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("tok-file\n")
    token_env.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.auth_headers() == {"Authorization": "Bearer tok-file"}
    token_env.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers() == {}


def test_auth_token_from_the_default_file(token_env, tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("tok-home")
    assert jobs.auth_headers() == {"Authorization": "Bearer tok-home"}


def test_unreadable_token_file_is_a_user_error(token_env, tmp_path):
    token_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(NinsweepError, match="auth token"):
        jobs.auth_headers()


def test_missing_jobs_sdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "requests", None)
    with pytest.raises(NinsweepError, match=r"pip install 'ninsweep\[cluster\]'"):
        jobs.connect("http://127.0.0.1:8265")


# -- against a fake Jobs client ---------------------------------------------------------


def _info(sid, status, metadata=None, start=1_700_000_000_000, end=None, message=""):
    return SimpleNamespace(submission_id=sid, job_id=None, status=status,
                           metadata=metadata, start_time=start, end_time=end,
                           message=message, entrypoint=f"python -m ninsweep run {sid}")


class FakeClient:
    ninsweep_address = "http://127.0.0.1:8265"

    def __init__(self, statuses=("RUNNING", "SUCCEEDED"), logs="line 1\nline 2\n",
                 tail_fails=False):
        self.statuses = list(statuses)
        self.logs = logs
        self.tail_fails = tail_fails
        self.submitted = []
        self.stopped = []

    def get_job_status(self, job_id):
        if job_id == "missing":
            raise RuntimeError("Request failed with status code 404: Job missing does not exist.")
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def get_job_logs(self, job_id):
        return self.logs

    async def tail_job_logs(self, job_id):
        if self.tail_fails:
            raise RuntimeError("WebSocket connection closed unexpectedly")
        for line in self.logs.splitlines(keepends=True):
            yield line

    def list_jobs(self):
        return [
            _info("ninsweep-b", "RUNNING", {"ninsweep": "1", "space": "lab4", "name": "b"},
                  start=1_700_000_100_000),
            _info("raysubmit_other", "SUCCEEDED", {"owner": "someone else"}),
            _info("ninsweep-a", "SUCCEEDED", {"ninsweep": "1", "space": "smoke", "name": "a"},
                  start=1_700_000_000_000, end=1_700_000_065_000),
            _info("driver", "RUNNING", None),
        ]

    def get_job_info(self, job_id):
        if job_id == "missing":
            raise RuntimeError("Request failed with status code 404: Job missing does not exist.")
        return _info(job_id, "RUNNING", {"ninsweep": "1", "space": "lab4"})

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        return True

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        return kwargs["submission_id"]


@pytest.fixture()
def fake(monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(jobs, "connect", lambda address=None, **kw: client)
    return client


def test_list_jobs_shows_only_ours_oldest_first(fake):
    rows = jobs.list_jobs("http://127.0.0.1:8265")
    assert [r["job_id"] for r in rows] == ["ninsweep-a", "ninsweep-b"]
    assert rows[0]["space"] == "smoke" and rows[0]["duration_s"] == 65.0
    table = jobs.format_jobs_table(rows)
    assert "raysubmit_other" not in table and "1:05" in table
    assert jobs.format_jobs_table([]) == "no ninsweep jobs on this cluster"


def test_unknown_job_is_one_line(fake):
    with pytest.raises(NinsweepError, match="no job missing on the Ray cluster"):
        jobs.job_status(None, "missing")


def test_sdk_errors_are_told_apart_by_type_and_state_not_text(fake):
    from ray.exceptions import AuthenticationError

    def refuse(job_id):
        raise AuthenticationError("whatever the server wrote")

    fake.get_job_info = refuse
    fake.ninsweep_token_sent = False
    with pytest.raises(NinsweepError, match="requires an auth token"):
        jobs.job_status(None, "ninsweep-b")
    fake.ninsweep_token_sent = True
    with pytest.raises(NinsweepError, match="rejected this auth token"):
        jobs.job_status(None, "ninsweep-b")

    def server_error(job_id):  # a job the cluster lists, failing for another reason
        raise RuntimeError("Request failed with status code 404: Not Found.")

    fake.get_job_info = server_error
    with pytest.raises(NinsweepError) as err:
        jobs.job_status(None, "ninsweep-b")
    assert "no job" not in str(err.value) and "status code 404" in str(err.value)


@pytest.mark.parametrize("tail_fails", [False, True])
def test_wait_for_job_streams_logs_until_terminal(tail_fails):
    client = FakeClient(statuses=("RUNNING", "RUNNING", "SUCCEEDED"), tail_fails=tail_fails)
    chunks = []
    status = jobs.wait_for_job(client, "ninsweep-a", out=chunks.append, poll_s=0.01)
    assert status == "SUCCEEDED"
    assert "".join(chunks) == "line 1\nline 2\n"


def test_wait_for_job_unknown_id():
    with pytest.raises(NinsweepError, match="no job missing"):
        jobs.wait_for_job(FakeClient(), "missing", out=lambda s: None)


def test_submit_sweep_submits_and_prints_how_to_follow(fake):
    lines = []
    job_id = jobs.submit_sweep("http://127.0.0.1:8265", "lab4", storage="/mnt/x",
                               extra_args=["--max-epochs", "1"], out=lines.append)
    (call,) = fake.submitted
    assert call["submission_id"] == job_id
    assert call["metadata"]["ninsweep"] == "1"
    assert "--max-epochs 1" in call["entrypoint"]
    assert any(f"ninsweep jobs logs {job_id} --follow" in line for line in lines)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="ninsweep")
    sub = parser.add_subparsers(dest="command", required=True)
    add_submit_arguments(sub.add_parser("submit"))
    add_jobs_arguments(sub.add_parser("jobs"))
    return parser.parse_args(argv)


def test_cli_glue(fake):
    args = _parse(["submit", "lab4", "--storage", "s3://b/x", "--wait",
                   "--max-epochs", "3", "--gpus-per-trial", "0.5", "--data-dir", "/mnt/d"])
    assert args.space == "lab4" and args.wait and args.address is None
    out = []
    assert cli.command_submit(args, out=out.append) == 0
    assert fake.submitted[0]["entrypoint"].endswith(
        "--max-epochs 3 --data-dir /mnt/d --gpus-per-trial 0.5")
    assert out[-1].endswith(": SUCCEEDED")

    out.clear()
    assert cli.command_jobs(_parse(["jobs", "list", "--address", "head:8265"]),
                            out=out.append) == 0
    assert "ninsweep-a" in out[0]
    assert cli.command_jobs(_parse(["jobs", "stop", "ninsweep-b"]), out=out.append) == 0
    assert fake.stopped == ["ninsweep-b"]
    assert cli.command_jobs(_parse(["jobs", "status", "ninsweep-b"]), out=out.append) == 0
    assert out[-1].startswith("ninsweep-b: RUNNING")
    assert cli.command_jobs(_parse(["jobs", "logs", "ninsweep-b"]), out=out.append) == 0
    assert out[-1] == "line 1\nline 2"
    with pytest.raises(SystemExit):
        _parse(["jobs"])


def test_resume_submission_runs_resume_on_the_cluster(project):
    sub = jobs.prepare_resume("/mnt/ninsweep/experiments/lab4", working_dir=project)
    assert shlex.split(sub.entrypoint) == [
        "python", "-m", "ninsweep", "resume", "/mnt/ninsweep/experiments/lab4",
        "--address", "auto"]
    assert "working_dir" not in sub.runtime_env  # the manifest on the cluster has the space
    assert sub.runtime_env["py_modules"] == [str(jobs.package_dir())]
    assert sub.metadata["ninsweep"] == "1" and sub.metadata["name"] == "lab4"
    assert sub.metadata["resume"] == "1"
    assert jobs.prepare_resume("s3://b/exp/lab4/").metadata["name"] == "lab4"
    with pytest.raises(NinsweepError, match="--resume runs/lab4"):
        jobs.prepare_resume("runs/lab4")


def test_cli_submit_resume(fake):
    assert cli.command_submit(_parse(["submit", "--resume", "/mnt/e/lab4"]), out=[].append) == 0
    assert " resume /mnt/e/lab4 " in fake.submitted[-1]["entrypoint"]
    with pytest.raises(NinsweepError, match="drop: space, --max-epochs"):
        cli.command_submit(_parse(["submit", "lab4", "--resume", "/mnt/e/lab4",
                                   "--max-epochs", "2"]), out=[].append)
    with pytest.raises(NinsweepError, match="needs a SPACE"):
        cli.command_submit(_parse(["submit", "--storage", "/mnt/e"]), out=[].append)


def test_submit_and_jobs_are_ninsweep_subcommands(fake):
    assert main(["jobs", "list"]) == 0
    assert main(["submit", "lab4", "--storage", "/mnt/x", "--max-epochs", "1"]) == 0
    assert fake.submitted[-1]["entrypoint"].endswith("--storage /mnt/x --max-epochs 1")
    assert main(["submit", "lab4"]) == 2  # NinsweepError: no --storage


def test_autoscaling_reaches_run_and_resume_on_the_cluster(fake):
    assert cli.command_submit(_parse(["submit", "lab4", "--storage", "/mnt/x", "--autoscaling"]),
                              out=[].append) == 0
    assert fake.submitted[-1]["entrypoint"].endswith("--storage /mnt/x --autoscaling")
    assert cli.command_submit(_parse(["submit", "--resume", "/mnt/x/lab4", "--autoscaling"]),
                              out=[].append) == 0
    assert fake.submitted[-1]["entrypoint"].endswith("resume /mnt/x/lab4 --address auto --autoscaling")


def test_a_model_factorys_module_ships_with_the_job(project, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "jobnets_e2e12.py").write_text(
        "from torch import nn\ndef net(width: int):\n    return nn.Linear(width, 10)\n")
    (study / "s.yaml").write_text('model: {factory: "jobnets_e2e12:net"}\ngrid:\n'
                                  "  - width: [4, 8]\n")
    try:
        with jobs.prepare_submission(str(study / "s.yaml"), storage="s3://bucket/ninsweep",
                                     working_dir=project) as sub:
            assert sub.runtime_env["py_modules"] == [str(Path(jobs.__file__).resolve().parents[1]),
                                                     str(study / "jobnets_e2e12.py")]
            assert any("jobnets_e2e12.py" in note for note in sub.notes)
    finally:
        sys.modules.pop("jobnets_e2e12", None)
