"""Bounded checks that something outside answers, before a library waits on it for minutes.

``ray.init(address=...)`` on an address where nothing listens retries the GCS connection for
minutes; with Ray's own timeouts shortened (``RAY_gcs_rpc_server_reconnect_timeout_s``) the
driver aborts from C++ with a page of logs instead. So ``check_ray_address`` answers first,
in at most a few seconds and one line: is the port open, and does it speak gRPC (Ray's
GCS and Ray Client do; an SSH port or a web server does not)?

The bound is ``$NINSWEEP_CONNECT_TIMEOUT`` seconds (default 5), the one ``ninsweep submit``
uses for the dashboard.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

from .errors import NinsweepError
from .fmt import first_line, reason

CONNECT_TIMEOUT_ENV = "NINSWEEP_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 5.0


def connect_timeout() -> float:
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "")
    try:
        value = float(text) if text.strip() else DEFAULT_CONNECT_TIMEOUT_S
    except ValueError:
        raise NinsweepError(f"{CONNECT_TIMEOUT_ENV}={text!r}: expected a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise NinsweepError(f"{CONNECT_TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return value


def probe_tcp(host: str, port: int, timeout: float, what: str, hint: str = "") -> None:
    """Open and close a TCP connection to ``host:port``, or raise a one-line error."""
    hint = f"; {hint}" if hint else ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise NinsweepError(f"cannot reach {what}: unknown host {host}{hint}") from None
    except socket.timeout:
        raise NinsweepError(f"cannot reach {what}: no answer in {timeout:g} s "
                            f"({CONNECT_TIMEOUT_ENV} sets the wait){hint}") from None
    except OSError as err:
        raise NinsweepError(f"cannot reach {what}: {reason(err)}{hint}") from None


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
        from ray._private import services  # Ray's own resolution, not a copy of it

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
    try:
        import grpc  # Ray's own dependency
    except ImportError:
        return
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise NinsweepError(f"cannot connect to {what}: the port answers but not as a Ray "
                            f"cluster (no gRPC handshake in {timeout:g} s); check the port "
                            "(GCS: 6379 by default, Ray Client: ray://HOST:10001)") from None
    finally:
        channel.close()
