#!/usr/bin/env bash
# Run a command in a loopback-only network namespace (and its own PID namespace), the only
# place a benchmark may start Ray: Ray binds 127.0.0.1 there, nothing it opens can be reached
# from outside, and every process it leaves behind ends with the namespace. Needs root.
# Usage: bash bench/netns.sh python bench/bench_sweep.py [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  echo "usage: bash bench/netns.sh COMMAND [ARGS...]" >&2
  exit 2
fi
# Run the venv's python when the command is a bare "python" and the venv exists.
if [ "$1" = python ] && [ -x .venv/bin/python ]; then
  shift
  set -- .venv/bin/python "$@"
fi
exec unshare -n -p -f --mount-proc bash -c \
  'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 NINSWEEP_NETNS=1 "$@"; exit $?' bash "$@"
