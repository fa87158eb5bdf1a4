"""``ninsweep submit`` and ``ninsweep jobs``: a Ray cluster through the Ray Jobs API
(``cluster.jobs``)."""

from __future__ import annotations

import argparse
from typing import Callable, Optional

from ninsweep.cli.exits import EXIT_INTERRUPTED
from ninsweep.cli.parsers import REPEATED_RUN_OPTIONS, RUN_OPTIONS
from ninsweep.cluster import jobs
from ninsweep.errors import NinsweepError


def _run_args(args: argparse.Namespace) -> list[str]:
    extra = []
    for flag, _, _, _ in RUN_OPTIONS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            extra += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, _, _ in REPEATED_RUN_OPTIONS:
        for value in getattr(args, flag.lstrip("-"), None) or ():
            extra += [flag, value]
    return extra


def _tracker_args(args: argparse.Namespace) -> list[str]:
    return [part for name in getattr(args, "tracker", None) or () for part in ("--tracker", name)]


def command_submit(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    resume = getattr(args, "resume", None)
    if resume:
        extra = [flag for flag in ("space", "storage", "name")
                 if getattr(args, flag, None) is not None] + [
            f for f in _run_args(args) if f.startswith("--") and f != "--tracker"]
        if extra:
            raise NinsweepError("submit --resume takes the experiment alone (its space, "
                                f"storage and settings are in its manifest); drop: "
                                f"{', '.join(extra)}")
        job_id = jobs.submit_resume(args.address, resume, out=out,
                                    extra_args=(["--autoscaling"] if args.autoscaling else [])
                                    + _tracker_args(args))
    elif not args.space:
        raise NinsweepError("submit needs a SPACE (a file or a name such as lab4), or "
                            "--resume EXPERIMENT")
    else:
        autoscaling = ["--autoscaling"] if args.autoscaling else []
        job_id = jobs.submit_sweep(args.address, args.space, storage=args.storage,
                                   name=args.name, extra_args=_run_args(args) + autoscaling,
                                   out=out)
    if not getattr(args, "wait", False):
        return 0
    return _follow_job(args.address, job_id, out)


def _follow_job(address: Optional[str], job_id: str, out: Callable[[str], None]) -> int:
    """Stream a job's log until it ends: 0 if it succeeded, 1 if not, 130 on Ctrl-C (the
    job goes on)."""
    try:
        status = jobs.follow_job(address, job_id)
    except KeyboardInterrupt:
        out(f"\nstopped following; {job_id} keeps running on the cluster "
            f"(ninsweep jobs stop {job_id} ends it)")
        return EXIT_INTERRUPTED
    out(f"{job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def command_jobs(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    command = args.jobs_command
    if command == "list":
        out(jobs.format_jobs_table(jobs.list_jobs(args.address)))
        return 0
    if command == "status":
        out(jobs.format_job_status(jobs.job_status(args.address, args.job_id)))
        return 0
    if command == "logs":
        if getattr(args, "follow", False):
            return _follow_job(args.address, args.job_id, out)
        out(jobs.job_logs(args.address, args.job_id).rstrip("\n"))
        return 0
    if command == "stop":
        stopped = jobs.stop_job(args.address, args.job_id)
        out(f"{args.job_id}: stop requested" if stopped
            else f"{args.job_id}: already finished")
        return 0
    raise NinsweepError(f"unknown jobs command {command!r}")
