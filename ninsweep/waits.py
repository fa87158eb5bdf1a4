"""How long ninsweep waits on the outside, each bound read from one environment variable.

Every wait on something outside this process is bounded: a Ray address answering
(``NINSWEEP_CONNECT_TIMEOUT``), a request to the Ray dashboard (``NINSWEEP_REQUEST_TIMEOUT``),
a cloud storage call (``NINSWEEP_STORAGE_TIMEOUT``). A value that is not a positive number of
seconds is a one-line error naming the variable. ``probe_tcp`` is the bounded connection
test that comes before a library's own, unbounded one. Standard library only.
"""

from __future__ import annotations

import math
import os
import socket

from ninsweep.errors import NinsweepError
from ninsweep.fmt import reason

CONNECT_TIMEOUT_ENV = "NINSWEEP_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_ENV = "NINSWEEP_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_S = 60.0
STORAGE_TIMEOUT_ENV = "NINSWEEP_STORAGE_TIMEOUT"
DEFAULT_STORAGE_TIMEOUT_S = 30.0


def seconds_from_env(variable: str, default: float) -> float:
    """``$variable`` as a positive, finite number of seconds; ``default`` when unset or empty."""
    text = os.environ.get(variable, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise NinsweepError(f"{variable}={text!r}: expected a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise NinsweepError(f"{variable}={text!r}: expected a positive number of seconds")
    return value


def connect_timeout() -> float:
    """Seconds to wait for a Ray address or the Ray dashboard to accept a connection."""
    return seconds_from_env(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S)


def request_timeout() -> float:
    """Seconds to wait for the Ray dashboard to answer one request."""
    return seconds_from_env(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S)


def storage_timeout() -> float:
    """Seconds a cloud storage call may keep retrying."""
    return seconds_from_env(STORAGE_TIMEOUT_ENV, DEFAULT_STORAGE_TIMEOUT_S)


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
