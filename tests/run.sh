#!/usr/bin/env bash
# Run the test suite. Tests that start Ray run only inside a loopback-only network namespace
# (Ray binds 127.0.0.1 there and no test traffic can leave the machine); the PID namespace
# also ends every process Ray leaves behind when the suite exits. That needs root, as in CI;
# elsewhere those tests are skipped and the rest runs.
# Usage: bash tests/run.sh [pytest arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export RAY_USAGE_STATS_ENABLED=0
# The linter first (pyproject.toml's [tool.ruff]): a finding fails the run in seconds.
"$PYTHON" -m ruff check ninsweep tests bench examples || exit 1
if [ "$(id -u)" = 0 ] && unshare -n -p -f --mount-proc true 2>/dev/null; then
  # bash stays PID 1 of the namespace (reaping orphans); `exit $?` keeps it from exec'ing.
  unshare -n -p -f --mount-proc bash -c \
    'ip link set lo up && NINSWEEP_NETNS=1 "$0" -m pytest "$@"; exit $?' "$PYTHON" "$@"
else
  echo "tests/run.sh: no root or no network namespaces: tests that start Ray are skipped" >&2
  "$PYTHON" -m pytest "$@"
fi
