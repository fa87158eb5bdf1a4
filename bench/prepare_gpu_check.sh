#!/usr/bin/env bash
# Everything the device check needs on this side, before a GPU machine is lent: the wheels
# it carries (cp312, Ray repacked), the CIFAR-10 archive in .carry/data, and the payload plan
# of both jobs (exit 1 if a job would pass 64 MiB). With --rehearsal also the cp311 wheels and
# the rehearsal environment (bench/rehearsal_env.py) that tests/bench/test_gpu_rehearsal.py uses.
# Needs PyPI for wheels not yet in the download cache (~/.cache/ninsweep/wheels).
#
#   bash bench/prepare_gpu_check.sh [--rehearsal]
#   then: the two device calls it prints, back to back (docs/performance.md, the time plan)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
ARCHIVE=${CIFAR_ARCHIVE_SOURCE:-../shared/data/cifar10-jpeg.tar.gz}

"$PYTHON" bench/carry_wheels.py --python 3.12
mkdir -p .carry/data
if [[ ! -f "$ARCHIVE" ]]; then
  echo "prepare_gpu_check: $ARCHIVE: no such file (the fidelity probe needs it)" >&2
  exit 2
fi
cp "$ARCHIVE" .carry/data/cifar10-jpeg.tar.gz
if [[ -f "$ARCHIVE.sha256" ]]; then
  (cd .carry/data && sha256sum -c --quiet "$(realpath "$ARCHIVE.sha256")")
fi
for extra in .carry/data/*; do
  [[ "$extra" == .carry/data/cifar10-jpeg.tar.gz ]] && continue
  echo "prepare_gpu_check: $extra is in .carry/data and would travel too; remove it" >&2
  exit 2
done
if [[ "${1:-}" == --rehearsal ]]; then
  "$PYTHON" bench/carry_wheels.py --python 3.11
  "$PYTHON" bench/rehearsal_env.py
fi
"$PYTHON" bench/payload_plan.py
