"""``ninsweep dashboard``: a live, read-only web page per experiment (``ninsweep.dashboard``)."""

from __future__ import annotations

import argparse

from ninsweep.dashboard.server import DashboardServer, open_experiments


def command_dashboard(args: argparse.Namespace) -> int:
    served = open_experiments(args.experiment)
    server = DashboardServer(served, host=args.host, port=args.port)
    names = ", ".join(s.live.name for s in served.values())
    print(f"ninsweep dashboard of {names} at {server.url}", flush=True)
    if server.token:
        print(f"not a loopback address: every request needs the token {server.token} "
              "(the address above carries it); Ctrl-C stops", flush=True)
    else:
        print("read-only; Ctrl-C stops", flush=True)
    server.run()
    return 0
