"""Submit sweeps to a Ray cluster through the Ray Jobs API, and look after them there.

Two jobs: building a submission (``prepare_submission``, ``prepare_resume``: what ships, the
command the cluster runs) and talking to the cluster through the Ray Jobs SDK's public API
(``JobSubmissionClient``, ``JobStatus``, ``JobDetails``). The one private use of Ray, a
timeout on the SDK's HTTP requests, is ``_bounded_client``, which says why. Storage
questions are ``storage.py``'s, the ``submit`` and ``jobs`` commands ``cli.py``'s.

``ninsweep submit SPACE --address http://HEAD:8265`` ships the ``ninsweep`` package (as a
``py_modules`` entry) and the space file (alone in the job's ``working_dir``) to the cluster,
never the rest of the checkout, and runs ``python -m ninsweep run SPACE --address auto``
there, on the head node, as a Ray job: the sweep keeps running when the laptop that
submitted it goes to sleep. ``user_code.SECRET_EXCLUDES`` keeps keys and credentials out of both
uploads besides.
Jobs carry the metadata tag ``{"ninsweep": "1"}``; ``ninsweep jobs list`` shows only those.

The address is the Ray dashboard's HTTP address. Clusters built from ``cluster/`` never
expose it publicly: reach it through ``ray dashboard cluster/aws-gpu.yaml`` (an SSH tunnel)
or ``kubectl port-forward``, which both give ``http://127.0.0.1:8265`` (the default).

Token authentication: since Ray 2.52 a cluster started with ``RAY_AUTH_MODE=token`` refuses
requests without its token. The token is sent whenever one is configured here
(``auth_headers``), unless ``RAY_AUTH_MODE=disabled``.

The Jobs SDK needs ``ray[default]`` (the ``ninsweep[cluster]`` extra); it is imported
lazily, and its absence is a one-line error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import getpass
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from ninsweep import __version__, fmt
from ninsweep.errors import NinsweepError
from ninsweep.fmt import first_line
from ninsweep.locations import is_uri, local_path
from ninsweep.space.loader import load_space, resolve_space_path
from ninsweep.space.schema import check_experiment_name
from ninsweep.user_code import SHIP_EXCLUDES, package_dir
from ninsweep.waits import connect_timeout, probe_tcp, request_timeout

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # the variable Ray's own `ray job` CLI reads
TAG = "ninsweep"  # metadata key marking our jobs; value "1"

# What never ships (credentials, keys, histories; environments, caches, data) is
# user_code.SECRET_EXCLUDES / SHIP_EXCLUDES, the one list every upload applies
# (tests/cluster/test_jobs.py packs them with Ray's own packer).
EXCLUDES = SHIP_EXCLUDES


# --------------------------------------------------------------------------------------
# What a submission ships


@dataclass(frozen=True)
class Submission:
    """Everything ``JobSubmissionClient.submit_job`` gets, built without a cluster."""

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    space_path: str  # the space's path on the cluster, relative to the job's working dir
    staged: bool = False  # True: the space lived outside the project and was staged
    notes: tuple[str, ...] = field(default=())


def project_root() -> Optional[Path]:
    """The source checkout ninsweep runs from (holds ``ninsweep/`` and ``pyproject.toml``
    or ``search_spaces/``), or None for an installed package in site-packages."""
    root = package_dir().parent
    if (root / "ninsweep" / "__init__.py").is_file() and (
            (root / "pyproject.toml").is_file() or (root / "search_spaces").is_dir()):
        return root
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "space"


def new_submission_id(space_name: str) -> str:
    """``ninsweep-<space>-<UTC time>-<random>``: readable, sortable, unique."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"ninsweep-{_slug(space_name)}-{stamp}-{secrets.token_hex(3)}"


def _check_cluster_storage_arg(storage: Optional[str], what: str = "--storage") -> None:
    if storage is None:
        raise NinsweepError(
            "submit needs --storage: the job's working directory on the cluster is "
            "temporary; give a shared path every node mounts (/mnt/ninsweep/experiments) "
            "or a URI (s3://BUCKET/ninsweep)")
    if is_uri(storage):
        return
    if not local_path(storage).startswith("/"):
        raise NinsweepError(
            f"{what} {storage}: a submitted job needs an absolute path on the cluster "
            "(/mnt/ninsweep/experiments) or a URI (s3://BUCKET/ninsweep); a relative or ~ "
            "path would land in the job's temporary working directory")


def _load_space(space: str) -> tuple[Path, Any]:
    path = resolve_space_path(space)
    return path, load_space(path)


@contextlib.contextmanager
def prepare_submission(space: str, *, storage: Optional[str] = None,
                       name: Optional[str] = None, extra_args: Sequence[str] = (),
                       working_dir: Optional[os.PathLike] = None,
                       submission_id: Optional[str] = None) -> Iterator[Submission]:
    """Validate the space here, then describe the job that runs it on a cluster.

    A context manager: the space file is copied into a temporary staging directory that
    ships as the job's working_dir, with the ninsweep package as a ``py_modules`` entry;
    nothing else of the checkout travels. The staging directory lives until the ``with``
    block ends, i.e. past the upload. ``working_dir``: the project the space is judged
    against for the "outside the project" note (default: this checkout).
    """
    _check_cluster_storage_arg(storage)
    if name is not None:
        check_experiment_name(name)
    extra = [str(arg) for arg in extra_args]
    for arg in extra:
        if arg == "--address" or arg.startswith("--address="):
            raise NinsweepError("submit runs the sweep with --address auto on the cluster; "
                                "drop --address from the extra arguments")
    space_file, spec = _load_space(space)
    space_file = space_file.resolve()
    root = Path(working_dir).resolve() if working_dir is not None else project_root()

    metadata = {TAG: "1", "space": str(spec.name), "space_file": space_file.name,
                "name": name or str(spec.name), "storage": storage or "",
                "ninsweep_version": __version__}
    with contextlib.suppress(Exception):
        metadata["submitted_by"] = getpass.getuser()
    env_vars = {
        "PYTHONUNBUFFERED": "1",
        # sweep.start_ray calls ray.init(runtime_env=...) inside the job; let its keys win
        # over the job's instead of failing on the overlap (both ship the same package).
        "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
    }
    notes = []
    staging = None
    try:
        # What the job needs and nothing else: the space file (in a fresh staging folder,
        # the job's working_dir) and the ninsweep package (a py_module). Never the checkout
        # around them, which holds .env files, keys, data and results.
        staging = Path(tempfile.mkdtemp(prefix="ninsweep-submit-"))
        shutil.copy2(space_file, staging / space_file.name)
        remote_space = space_file.name
        runtime_env = {"working_dir": str(staging), "py_modules": [str(package_dir())],
                       "excludes": list(EXCLUDES), "env_vars": env_vars}
        staged = True
        if root is not None and not space_file.is_relative_to(root):
            notes.append(f"{space_file} is outside the project: shipped a copy of it")

        if spec.code:
            # A model factory's module: the job's driver imports it to check the space, its
            # workers to build the model (sweep.start_ray passes no runtime_env in a job).
            runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), *spec.code]
            notes.append("shipped " + ", ".join(Path(p).name for p in spec.code))
        command = ["python", "-m", "ninsweep", "run", remote_space, "--address", "auto"]
        if storage:
            command += ["--storage", storage]
        if name:
            command += ["--name", name]
        command += extra
        yield Submission(
            submission_id=submission_id or new_submission_id(str(spec.name)),
            entrypoint=shlex.join(command),
            runtime_env=runtime_env,
            metadata=metadata,
            space_path=remote_space,
            staged=staged,
            notes=tuple(notes),
        )
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def prepare_resume(experiment: str, *, working_dir: Optional[os.PathLike] = None,
                   submission_id: Optional[str] = None,
                   extra_args: Sequence[str] = ()) -> Submission:
    """The job that resumes ``experiment`` (a path on the cluster or a URI) there: the
    project ships as for a new sweep and runs ``python -m ninsweep resume EXPERIMENT``."""
    _check_cluster_storage_arg(experiment, what="--resume")
    name = experiment.rstrip("/").rsplit("/", 1)[-1] or "experiment"
    env_vars = {"PYTHONUNBUFFERED": "1", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}
    # The manifest on the cluster holds the space: only the package travels.
    runtime_env = {"py_modules": [str(package_dir())], "excludes": list(EXCLUDES),
                   "env_vars": env_vars}
    metadata = {TAG: "1", "space": "", "name": name, "storage": experiment.rstrip("/"),
                "resume": "1", "ninsweep_version": __version__}
    with contextlib.suppress(Exception):
        metadata["submitted_by"] = getpass.getuser()
    return Submission(
        submission_id=submission_id or new_submission_id(f"{name}-resume"),
        entrypoint=shlex.join(["python", "-m", "ninsweep", "resume", experiment,
                               "--address", "auto", *extra_args]),
        runtime_env=runtime_env, metadata=metadata, space_path="")


# --------------------------------------------------------------------------------------
# Connecting


def _job_submission():
    try:
        import requests  # noqa: F401  (what ray[default] adds for the Jobs SDK)
        from ray import job_submission
    except ImportError:
        raise NinsweepError("submitting to a Ray cluster needs the Ray Jobs SDK: "
                            "pip install 'ninsweep[cluster]'") from None
    return job_submission


def normalize_address(address: Optional[str]) -> str:
    """``http(s)://HOST:PORT`` of a Ray dashboard; a bare ``HOST[:PORT]`` gets http://."""
    address = (address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS).strip().rstrip("/")
    if address in ("auto", "local") or address.startswith("ray://"):
        raise NinsweepError(
            f"--address {address}: submit talks to the Ray dashboard's HTTP address, "
            "e.g. http://127.0.0.1:8265 (after `ray dashboard CLUSTER.yaml` or "
            "`kubectl port-forward svc/HEAD-svc 8265:8265`)")
    if "://" not in address:
        address = "http://" + address
    parsed = urllib.parse.urlsplit(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise NinsweepError(f"--address {address}: expected http://HOST:PORT of the Ray "
                            "dashboard (port 8265 by default)")
    try:
        parsed.port
    except ValueError:
        raise NinsweepError(f"--address {address}: bad port") from None
    return address


def _preflight(address: str, timeout: float) -> None:
    """Fail in ``timeout`` seconds on an unreachable address instead of hanging for minutes
    (Ray's client sets no timeout; a firewalled port would block a connect for ~2 min)."""
    parsed = urllib.parse.urlsplit(address)
    probe_tcp(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), timeout,
              f"the Ray dashboard at {address}",
              "is the cluster up and the SSH tunnel / port-forward running?")


def auth_headers() -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when a Ray auth token is configured here.

    Read where Ray's documentation says Ray reads it ("Ray token authentication"):
    ``$RAY_AUTH_TOKEN``, else the file ``$RAY_AUTH_TOKEN_PATH`` names (unreadable or empty is
    an error, as in Ray), else ``~/.ray/auth_token``. Ray has no public function for this
    (its loader lives in ``ray._raylet``), and its client attaches the token only when this
    process has ``RAY_AUTH_MODE=token``; here it goes whenever one is configured, unless
    ``RAY_AUTH_MODE=disabled``.
    """
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        named = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
        token_file = Path(named) if named else Path.home() / ".ray" / "auth_token"
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if named:
                raise NinsweepError(f"cannot read the Ray auth token: no file {token_file} "
                                    "(RAY_AUTH_TOKEN_PATH)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise NinsweepError(f"cannot read the Ray auth token: {token_file}: "
                                f"{fmt.reason(err)}") from None
        if named and not token:
            raise NinsweepError(f"cannot read the Ray auth token: {token_file} is empty "
                                "(RAY_AUTH_TOKEN_PATH)")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _authentication_error() -> type:
    try:
        from ray.exceptions import AuthenticationError  # public since token auth (Ray 2.52)
    except ImportError:
        return type("NoAuthenticationError", (Exception,), {})  # an older Ray: never raised
    return AuthenticationError


def _job_exists(client, job_id: str) -> bool:
    """Whether the cluster knows ``job_id`` (a submission id or a job id); True when it
    cannot tell, so a failure we cannot explain is reported as it came."""
    try:
        return any(job_id in (job.submission_id, job.job_id) for job in client.list_jobs())
    except Exception:
        return True


@contextlib.contextmanager
def _sdk_errors(address: str, *, token_sent: bool, client=None,
                job_id: Optional[str] = None) -> Iterator[None]:
    """Turn the Jobs SDK's failures into one-line NinsweepErrors, told apart by their type
    and by what we know, not by their text."""
    authentication_error = _authentication_error()
    try:
        yield
    except NinsweepError:
        raise
    except authentication_error:
        # Ray raises it for HTTP 401 (no token) and 403 (a wrong one) alike.
        if token_sent:
            raise NinsweepError(
                f"the Ray cluster at {address} rejected this auth token; use the "
                "cluster's token (`ray get-auth-token` on the head) in RAY_AUTH_TOKEN "
                "or ~/.ray/auth_token") from None
        raise NinsweepError(
            f"the Ray cluster at {address} requires an auth token: set RAY_AUTH_TOKEN "
            "or save the cluster's token (`ray get-auth-token` on the head) to "
            "~/.ray/auth_token") from None
    except OSError as err:  # requests' connection errors and timeouts, Ray's ConnectionError
        raise NinsweepError(f"cannot reach the Ray dashboard at {address}: "
                            f"{first_line(err)}") from None
    except (RuntimeError, ValueError) as err:
        # The SDK raises RuntimeError for any HTTP error, its status only in the text: ask
        # the cluster's job list whether the job is there instead of reading it.
        if job_id is not None and client is not None and not _job_exists(client, job_id):
            raise NinsweepError(f"no job {job_id} on the Ray cluster at {address}") from None
        raise NinsweepError(f"Ray cluster at {address}: {first_line(err)}") from None


def _client_errors(client, job_id: Optional[str] = None):
    """``_sdk_errors`` for calls on a client from ``connect``."""
    token_sent = getattr(client, "ninsweep_token_sent", False)
    return _sdk_errors(_address_of(client), token_sent=token_sent, client=client, job_id=job_id)


def connect(address: Optional[str] = None, *, timeout: Optional[float] = None):
    """A ``JobSubmissionClient`` for the dashboard at ``address``, auth token attached."""
    job_submission = _job_submission()
    address = normalize_address(address)
    if timeout is None:
        timeout = connect_timeout()
    _preflight(address, timeout)
    headers = auth_headers()
    with _sdk_errors(address, token_sent=bool(headers)):
        client = _bounded_client(job_submission, timeout)(address, headers=headers or None)
    client.ninsweep_address = address  # for messages
    client.ninsweep_token_sent = bool(headers)  # tells a wrong token from a missing one
    return client


def _bounded_client(job_submission, connect_timeout: float):
    """``JobSubmissionClient`` whose HTTP requests end. The one use of Ray's private API
    here, because Ray offers no public one: the client sends every request through
    ``SubmissionClient._do_request`` with no timeout (Ray 2.60), and ``requests`` then waits
    forever (``socket.setdefaulttimeout`` does not reach it), so a dashboard port that
    accepts and never answers (a tunnel whose far end is gone) would hang every command.
    The override only adds ``timeout=(connect, read)``; a Ray that renames ``_do_request``
    never calls it, and requests lose their bound but still work. Reads may take
    ``$NINSWEEP_REQUEST_TIMEOUT`` s (default 60)."""
    read_timeout = request_timeout()

    class BoundedJobSubmissionClient(job_submission.JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", (connect_timeout, read_timeout))
            return super()._do_request(method, endpoint, **kwargs)

    return BoundedJobSubmissionClient


def _address_of(client) -> str:
    return getattr(client, "ninsweep_address", None) or "the Ray dashboard"


# --------------------------------------------------------------------------------------
# Jobs


def submit_sweep(address: Optional[str], space: str, *, storage: Optional[str] = None,
                 name: Optional[str] = None, extra_args: Sequence[str] = (),
                 working_dir: Optional[os.PathLike] = None,
                 out: Optional[Callable[[str], None]] = print) -> str:
    """Submit ``ninsweep run SPACE --address auto ...`` as a Ray job; return its id."""
    if name is not None:  # bad input before any network wait
        check_experiment_name(name)
    client = connect(address)
    with prepare_submission(space, storage=storage, name=name, extra_args=extra_args,
                            working_dir=working_dir) as sub:
        with _client_errors(client):
            job_id = client.submit_job(entrypoint=sub.entrypoint,
                                       submission_id=sub.submission_id,
                                       runtime_env=sub.runtime_env, metadata=sub.metadata)
    if out is not None:
        for note in sub.notes:
            out(f"note: {note}")
        for line in follow_hint(job_id, _address_of(client)):
            out(line)
    return job_id


def submit_resume(address: Optional[str], experiment: str, *,
                  working_dir: Optional[os.PathLike] = None, extra_args: Sequence[str] = (),
                  out: Optional[Callable[[str], None]] = print) -> str:
    """Submit ``ninsweep resume EXPERIMENT --address auto`` as a Ray job; return its id."""
    client = connect(address)
    sub = prepare_resume(experiment, working_dir=working_dir, extra_args=extra_args)
    with _client_errors(client):
        job_id = client.submit_job(entrypoint=sub.entrypoint, submission_id=sub.submission_id,
                                   runtime_env=sub.runtime_env, metadata=sub.metadata)
    if out is not None:
        for line in follow_hint(job_id, _address_of(client)):
            out(line)
    return job_id


def follow_hint(job_id: str, address: str) -> list[str]:
    flag = "" if address == DEFAULT_ADDRESS else f" --address {address}"
    return [f"submitted {job_id} to {address}",
            f"  follow: ninsweep jobs logs {job_id} --follow{flag}",
            f"  status: ninsweep jobs status {job_id}{flag}",
            f"  stop:   ninsweep jobs stop {job_id}{flag}"]


def _status_str(status: Any) -> str:
    """A ``JobStatus`` (a str enum) or a plain string, as its name: ``SUCCEEDED``."""
    return str(getattr(status, "value", status))


def _is_terminal(status: str) -> bool:
    from ray.job_submission import JobStatus

    return JobStatus(status).is_terminal()


def wait_for_job(client, job_id: str, *, out: Optional[Callable[[str], None]] = None,
                 timeout: Optional[float] = None, poll_s: float = 2.0) -> str:
    """Stream the job's logs to ``out`` (default: stdout) until it ends; return its status
    (SUCCEEDED, FAILED or STOPPED). Follows the websocket log tail; falls back to polling.
    Raises NinsweepError when ``timeout`` seconds pass first (the job keeps running)."""
    if out is None:
        def out(chunk: str) -> None:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = 0  # characters of the log already written

    def emit(text: str) -> None:
        nonlocal shown
        if text:
            out(text)
            shown += len(text)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            emit(chunk)

    streamed = False
    with _client_errors(client, job_id):
        client.get_job_status(job_id)  # an unknown id: "no job ..." before streaming
        try:
            remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
            asyncio.run(asyncio.wait_for(tail(), remaining))
            streamed = True
        except asyncio.TimeoutError:
            raise NinsweepError(f"job {job_id} still running after {timeout:g} s; it goes on: "
                                f"ninsweep jobs stop {job_id} to end it") from None
        except Exception:  # websocket refused (proxy) or dropped: poll instead
            streamed = False
        while True:
            status = _status_str(client.get_job_status(job_id))
            if not streamed:
                logs = client.get_job_logs(job_id)
                emit(logs[shown:] if len(logs) >= shown else logs)
            if _is_terminal(status):
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise NinsweepError(f"job {job_id} still running after {timeout:g} s; it goes "
                                    f"on: ninsweep jobs stop {job_id} to end it")
            time.sleep(poll_s if not streamed else 0.5)


def _iso(ms: Optional[int]) -> Optional[str]:
    if not ms:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _job_row(info) -> dict[str, Any]:
    """A ``JobDetails`` as the plain row ``jobs list`` / ``jobs status`` print."""
    metadata = dict(info.metadata or {})
    start, end = info.start_time, info.end_time
    duration = None
    if start:
        duration = round(((end or time.time() * 1000) - start) / 1000.0, 1)
    return {
        "job_id": info.submission_id or info.job_id,
        "status": _status_str(info.status),
        "space": metadata.get("space", ""),
        "name": metadata.get("name", ""),
        "storage": metadata.get("storage", ""),
        "start": _iso(start),
        "end": _iso(end),
        "duration_s": duration,
        "message": (info.message or "").strip(),
        "entrypoint": info.entrypoint,
        "metadata": metadata,
    }


def list_jobs(address: Optional[str] = None) -> list[dict[str, Any]]:
    """ninsweep's jobs on the cluster (metadata tag ``ninsweep=1``), oldest first."""
    client = connect(address)
    with _client_errors(client):
        jobs = client.list_jobs()
    ours = [job for job in jobs if (job.metadata or {}).get(TAG) == "1" and job.submission_id]
    ours.sort(key=lambda job: job.start_time or 0)
    return [_job_row(job) for job in ours]


def job_status(address: Optional[str], job_id: str) -> dict[str, Any]:
    """One job's row (as in ``list_jobs``), whether or not ninsweep submitted it."""
    client = connect(address)
    with _client_errors(client, job_id):
        return _job_row(client.get_job_info(job_id))


def job_logs(address: Optional[str], job_id: str) -> str:
    """The job's whole log so far."""
    client = connect(address)
    with _client_errors(client, job_id):
        return client.get_job_logs(job_id)


def follow_job(address: Optional[str], job_id: str, *,
               out: Optional[Callable[[str], None]] = None,
               timeout: Optional[float] = None) -> str:
    """Stream the job's logs until it ends; return its final status."""
    return wait_for_job(connect(address), job_id, out=out, timeout=timeout)


def stop_job(address: Optional[str], job_id: str) -> bool:
    """Ask Ray to stop the job (SIGTERM, then SIGKILL); False if it had already ended."""
    client = connect(address)
    with _client_errors(client, job_id):
        return bool(client.stop_job(job_id))


# --------------------------------------------------------------------------------------
# Plain-text output (the CLI's `submit` and `jobs` commands live in cli.py)


def format_jobs_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no ninsweep jobs on this cluster"
    columns = ("job_id", "status", "space", "name", "start", "duration_s")
    headers = ("JOB", "STATUS", "SPACE", "NAME", "STARTED", "TIME")

    def cell(row, col):
        value = row.get(col)
        if col == "duration_s" and value is not None:
            value = fmt.clock(value)
        return "" if value is None else str(value)

    return "\n".join(fmt.table(headers, [[cell(row, col) for col in columns] for row in rows]))


def format_job_status(row: dict[str, Any]) -> str:
    lines = [f"{row['job_id']}: {row['status']}"]
    for key in ("space", "name", "storage", "start", "end", "message", "entrypoint"):
        if row.get(key):
            lines.append(f"  {key}: {row[key]}")
    if row.get("duration_s") is not None:
        lines.append(f"  time: {fmt.clock(row['duration_s'])}")
    return "\n".join(lines)
