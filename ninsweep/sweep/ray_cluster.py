"""Ray itself: starting or joining a cluster, and what that cluster can run.

``start_ray`` starts an embedded instance that listens on loopback only, or connects to
``--address``; ``check_schedulable`` refuses a space that no node of the cluster can ever run.

``ray.init(address=...)`` on an address where nothing listens retries the GCS connection for
minutes; with Ray's own timeouts shortened (``RAY_gcs_rpc_server_reconnect_timeout_s``) the
driver aborts from C++ with a page of logs instead. So ``check_ray_address`` answers first,
in at most ``$NINSWEEP_CONNECT_TIMEOUT`` seconds (``ninsweep.waits``) and one line: is the port
open, and does it speak gRPC (Ray's GCS and Ray Client do; an SSH port or a web server does
not)?
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import ray
from ray._private import services  # Ray's own address resolution, not a copy of it

try:
    import grpc  # with Ray's default extras; a minimal Ray (the GPU machine's) has none
except ImportError:
    grpc = None

from ninsweep.errors import NinsweepError
from ninsweep.fmt import first_line
from ninsweep.space.schema import SweepSpec
from ninsweep.user_code import SECRET_EXCLUDES, package_dir
from ninsweep.waits import connect_timeout, probe_tcp


def cluster_runtime_env(code: Sequence[str] = ()) -> dict[str, Any]:
    """What `run --address` ships to a cluster: this package and the user's modules, without
    caches or anything on the one list of secrets (``user_code.SECRET_EXCLUDES``)."""
    return {"py_modules": [str(package_dir()), *code],
            "excludes": ["__pycache__", *SECRET_EXCLUDES]}


def start_ray(address: Optional[str], log: Callable[[str], None],
              code: Sequence[str] = ()) -> None:
    """Connect to ``address``, or start an embedded instance that listens on loopback only.

    ``code``: user modules (files or package directories, ``SweepSpec.code``) the trials
    import, e.g. a model factory's: shipped as ``py_modules`` to a cluster; for the embedded
    instance, whose workers inherit this process's environment, put on PYTHONPATH.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Checkpointing every epoch of short trials is intended; the warning would only alarm.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:
        options: dict[str, Any] = {}
        if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
            # Not a Ray job (whose runtime_env already ships the project, and which refuses
            # to merge another): ship this package so workers without ninsweep can run it.
            options["runtime_env"] = cluster_runtime_env(code)
        check_ray_address(address)  # Ray itself would retry a dead address for minutes
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise NinsweepError(f"cannot connect to Ray at {address}: {first_line(err)}") from None
        log(f"connected to Ray at {address}")
    else:
        _put_on_pythonpath(code)
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
        log("started a local Ray instance on 127.0.0.1")


def _put_on_pythonpath(code: Sequence[str]) -> None:
    """Workers of an embedded Ray inherit PYTHONPATH: add the import roots of ``code``."""
    roots = [str(Path(path).parent) for path in code]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    added = [root for root in dict.fromkeys(roots) if root not in current]
    if added:
        os.environ["PYTHONPATH"] = os.pathsep.join(current + added)


def check_schedulable(spec: SweepSpec, autoscaling: bool = False,
                      log: Callable[[str], None] = print) -> None:
    """Refuse a space no node of the cluster can ever run: Tune would leave it pending forever.

    On an autoscaling cluster the missing nodes may still come: warn instead.
    """
    wanted_gpu, wanted_cpu = spec.resources.gpus, spec.resources.cpus
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    problem = None
    if wanted_gpu > 0 and sum(node.get("GPU", 0) for node in nodes) == 0:
        problem = (f"{spec.name}: each trial asks for {wanted_gpu:g} GPU but this Ray cluster "
                   "has no GPUs; run it on CPUs with --gpus-per-trial 0 (and --cpus-per-trial N)")
    elif not any(node.get("GPU", 0) >= wanted_gpu and node.get("CPU", 0) >= wanted_cpu
                 for node in nodes):
        best_cpu = max((node.get("CPU", 0) for node in nodes), default=0)
        problem = (f"{spec.name}: no node has {wanted_cpu:g} CPU and {wanted_gpu:g} GPU for one "
                   f"trial (largest node: {best_cpu:g} CPU); lower --cpus-per-trial / "
                   "--gpus-per-trial")
    if problem and autoscaling:
        log(f"warning: {problem} -- waiting for the autoscaler to add such nodes")
    elif problem:
        raise NinsweepError(problem)


def count_nodes() -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise NinsweepError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379), "
                            "auto, or ray://HOST:10001")
    return host.strip("[]"), int(port)


def ray_bootstrap_address(address: str) -> str:
    """``host:port`` that ``ray.init(address)`` would connect to (``auto``: Ray's own lookup
    of RAY_ADDRESS and the last ``ray start`` on this machine)."""
    if address.startswith("ray://"):
        return address[len("ray://"):].split("/", 1)[0]
    if address in ("auto",) or os.environ.get("RAY_ADDRESS"):
        try:
            resolved: Optional[str] = services.canonicalize_bootstrap_address(address)
        except (ConnectionError, ValueError) as err:
            raise NinsweepError(f"--address {address}: {first_line(err)}") from None
        if resolved is None:
            raise NinsweepError(f"--address {address}: no running Ray cluster found")
        return resolved
    return address


def check_ray_address(address: str, timeout: Optional[float] = None) -> None:
    """Raise a one-line ``NinsweepError`` unless a Ray cluster may answer at ``address``."""
    timeout = connect_timeout() if timeout is None else timeout
    if address == "local":
        raise NinsweepError("--address local: leave --address out to start a local Ray "
                            "instance (it listens on 127.0.0.1 only)")
    target = ray_bootstrap_address(address)
    host, port = _split_host_port(target)
    what = f"Ray at {address}" + (f" ({target})" if target != address else "")
    probe_tcp(host, port, timeout, what, "is the cluster up? (`ray status` on its head)")
    if os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true"):
        return  # a TLS channel needs Ray's certificates; the port answering must do
    if grpc is None:
        return  # without gRPC the open port must do
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise NinsweepError(f"cannot connect to {what}: the port answers but not as a Ray "
                            f"cluster (no gRPC handshake in {timeout:g} s); check the port "
                            "(GCS: 6379 by default, Ray Client: ray://HOST:10001)") from None
    finally:
        channel.close()
