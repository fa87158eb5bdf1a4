"""``ninsweep dashboard``: a read-only web server of one or more experiments' pages.

Routes are fixed; no part of a request becomes a file path. An experiment is named in a
URL by its key (``/e/<key>/``), looked up in the table the server was started with; the
page's scripts and styles are a fixed table of the package's assets (``assets.ASSETS``), read
at start. Anything else is 404.

Access: on a loopback address (127.0.0.0/8, ::1, localhost: the default) the page is open to
this machine's users, and requests must name a loopback host (a web page elsewhere cannot
reach it through DNS rebinding). On any other address every request needs the token printed
at start (``?token=...`` once: the page then keeps it in a cookie; or an ``Authorization:
Bearer`` header); without it the answer is 403.

Live: the page asks ``api/view?since=VERSION`` every ``POLL_S`` seconds; the server refreshes
the experiment (``LiveExperiment.refresh``, at most every ``REFRESH_S``), reading only what
is new, and answers ``{"unchanged": true}`` when nothing is.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from ninsweep.analysis.export import export_tables
from ninsweep.analysis.stats import ALPHA
from ninsweep.dashboard import assets
from ninsweep.dashboard.live import LiveExperiment
from ninsweep.dashboard.views import build_view, curves_view
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import MANIFEST_FILE, PARAMS_FILE
from ninsweep.fmt import reason
from ninsweep.locations import is_uri, local_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8750
REFRESH_S = 0.5  # the most often a page's poll reads the files
POLL_S = 1.0  # how often the page asks
MIN_REBUILD_S = 1.0  # the tables of a changing experiment: at most this often
TOKEN_COOKIE = "ninsweep_token"
_KEY_RE = re.compile(r"[^A-Za-z0-9._-]+")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Everything from this server; nothing from anywhere else. plotly.js's WebGL traces
    # compile their shaders' glue with Function(): 'unsafe-eval'.
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Served:
    """One experiment behind the server, with its tables cached per version."""

    key: str
    live: LiveExperiment
    alpha: float = ALPHA
    baseline: Optional[str] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refreshed: float = 0.0
    _cache_version: int = -1
    _built_at: float = 0.0
    _build_s: float = 0.0
    _tables: Any = None
    _view: Optional[bytes] = None
    _curves: dict[str, bytes] = field(default_factory=dict)

    def refresh(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._refreshed >= REFRESH_S:
                self._refreshed = now
                self.live.refresh()

    def _ensure(self, wait: bool = True) -> None:
        """The tables and the view of the newest version read. While a sweep writes fast,
        they are rebuilt at most every ``max(MIN_REBUILD_S, 2 x the last build)``: a poll
        meanwhile gets the last view (the tables cost O(trials), the reading does not)."""
        if self._cache_version == self.live.version:
            return
        if not wait and self._view is not None and \
                time.monotonic() - self._built_at < max(MIN_REBUILD_S, 2 * self._build_s):
            return
        start = time.monotonic()
        version = self.live.version
        exp = self.live.experiment()
        self._tables = export_tables(exp, self.alpha, self.baseline)
        self._view = json.dumps(build_view(exp, self.live.live_statuses(), alpha=self.alpha,
                                           baseline=self.baseline, version=version,
                                           tables=self._tables)).encode()
        self._curves = {}
        self._cache_version = version
        self._built_at, self._build_s = time.monotonic(), time.monotonic() - start

    def view(self, since: Optional[int]) -> bytes:
        self.refresh()
        with self._lock:
            self._ensure(wait=False)
            if since is not None and since == self._cache_version:
                return json.dumps({"version": since, "unchanged": True}).encode()
            return self._view

    def curves(self, metric: str) -> bytes:
        with self._lock:
            if self._view is None:
                self._ensure()
            if metric not in self._curves:
                exp = self.live.experiment()
                data = curves_view(exp, self._tables[0], self._tables[1], metric)
                data["version"] = self._cache_version
                self._curves[metric] = json.dumps(data).encode()
            return self._curves[metric]

    def summary(self) -> dict[str, Any]:
        exp = self.live.experiment()
        counts = {}
        for status in self.live.live_statuses().values():
            counts[status] = counts.get(status, 0) + 1
        return {"key": self.key, "name": exp.name, "path": str(exp.path), "space": exp.space_name,
                "n_trials": len(exp.trials), "summary": ", ".join(f"{n} {s}" for s, n in counts.items())}


def experiment_locations(locations: list[str]) -> list[str]:
    """Each argument an experiment, or a storage folder: the experiments in it."""
    out: list[str] = []
    for location in locations:
        if is_uri(location):
            out.append(location)
            continue
        path = Path(local_path(location)).expanduser()
        if path.is_dir() and not (path / MANIFEST_FILE).is_file():
            inner = sorted(p for p in path.iterdir() if (p / MANIFEST_FILE).is_file())
            if inner and not any((p / PARAMS_FILE).is_file() for p in path.iterdir() if p.is_dir()):
                out.extend(str(p) for p in inner)
                continue
        out.append(location)
    return out


def open_experiments(locations: list[str], alpha: float = ALPHA) -> dict[str, Served]:
    """Read every experiment once (bad input: a one-line NinsweepError)."""
    served: dict[str, Served] = {}
    for location in experiment_locations(locations):
        live = LiveExperiment(location)
        key = _KEY_RE.sub("-", live.name).strip("-") or "experiment"
        base, n = key, 2
        while key in served:
            key, n = f"{base}-{n}", n + 1
        served[key] = Served(key, live, alpha)
    if not served:
        raise NinsweepError("dashboard: no experiment given")
    return served


def build_app(served: dict[str, Served], *, token: Optional[str] = None, host: str = DEFAULT_HOST,
              poll_s: float = POLL_S):
    """The Starlette application: read-only, fixed routes (see the module's docstring)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    files = assets.served_assets()

    def with_headers(response: Response, cache: bool = False) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "private, max-age=3600" if cache else "no-store"
        return response

    def get(request, name: str) -> Served:
        key = request.path_params["key"]
        if key not in served:
            raise _NotFound()
        return served[key]

    def index(request):
        if len(served) == 1:
            return with_headers(RedirectResponse(f"/e/{quote(next(iter(served)))}/", status_code=302))
        return with_headers(HTMLResponse(assets.list_page([s.summary() for s in served.values()])))

    def page(request):
        item = get(request, "page")
        config = {"mode": "live", "api": f"/e/{quote(item.key)}/api", "poll_ms": int(poll_s * 1000),
                  "title": item.live.name}
        return with_headers(HTMLResponse(assets.page(config, inline=False)))

    def view(request):
        item = get(request, "view")
        since = request.query_params.get("since")
        since_v = int(since) if since is not None and since.isdigit() else None
        return with_headers(Response(item.view(since_v), media_type="application/json"))

    def curves(request):
        item = get(request, "curves")
        metric = request.path_params["metric"]
        if metric not in assets.CURVE_METRIC_NAMES:
            raise _NotFound()
        return with_headers(Response(item.curves(metric), media_type="application/json"))

    def experiments(request):
        return with_headers(JSONResponse([s.summary() for s in served.values()]))

    def static(request):
        name = request.path_params["name"]
        if name not in files:
            raise _NotFound()
        body, media = files[name]
        return with_headers(Response(body, media_type=media), cache=True)

    async def not_found(request, exc):
        return with_headers(PlainTextResponse("not found", status_code=404))

    routes = [
        Route("/", index),
        Route("/api/experiments", experiments),
        Route("/static/{name}", static),
        Route("/e/{key}/", page),
        Route("/e/{key}/api/view", view),
        Route("/e/{key}/api/curves/{metric}", curves),
    ]
    middleware = []
    if token is None:
        if not is_loopback(host):
            raise NinsweepError(f"--host {host}: not a loopback address; a token is required")
        middleware.append(Middleware(TrustedHostMiddleware,
                                     allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]", host]))
    else:
        middleware.append(Middleware(_TokenMiddleware, token=token))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={404: not_found, 405: not_found, _NotFound: not_found})


class _NotFound(Exception):
    pass


class _TokenMiddleware:
    """Every request carries the token: ``?token=``, the cookie it sets, or a Bearer header."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse

        request = Request(scope)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [given, request.cookies.get(TOKEN_COOKIE),
                      header[7:] if header.lower().startswith("bearer ") else None]
        if not any(c and secrets.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            response = PlainTextResponse("403: this dashboard needs the token printed at its start "
                                         "(?token=...)", status_code=403)
            response.headers.update(SECURITY_HEADERS)
            return await response(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start" and given:
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; "
                                               f"SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts: a port in use is one line."""
    if not 0 <= port <= 65535:
        raise NinsweepError(f"--port {port}: not a port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise NinsweepError(f"--host {host}: cannot resolve ({reason(err)})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise NinsweepError(f"--host {host} --port {port}: cannot listen there ({reason(err)})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class DashboardServer:
    """A dashboard served by uvicorn on a bound socket, in this thread (``run``) or another
    (``start`` / ``stop``: the tests, the benchmark)."""

    def __init__(self, served: dict[str, Served], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 token: Optional[str] = None, poll_s: float = POLL_S):
        try:
            import starlette  # noqa: F401
            import uvicorn
        except ImportError as err:
            raise NinsweepError(f"the dashboard needs {err.name}: pip install 'ninsweep[dashboard]'") from None

        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(24)
        self.token = token
        self.served = served
        self.app = build_app(served, token=token, host=host, poll_s=poll_s)
        self.socket = bind(host, port)
        self.host = host
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                    lifespan="off", server_header=False))
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}/"
        return base + (f"?token={self.token}" if self.token else "")

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> "DashboardServer":
        self._thread = threading.Thread(target=self.run, name="ninsweep-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise NinsweepError("dashboard: the server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.socket.close()
