#!/usr/bin/env bash
# The device check on the GPU machine as it is (bench/gpu-box/packages.txt: Python 3.12, torch,
# no pydantic, no Ray), in two jobs of the device tool, each well under its 10 minutes; the
# plan, payloads and time line are in docs/performance.md ("GPU: the device check").
# Everything is written into $OUT (default /tmp/gpu-check-out).
#
#   bash bench/run_gpu.sh --job check   # (a) throughput/MFU of the lab4 mix packed 1/2/4/8,
#                                       #     eager and torch.compile   (bench/gpu_grid.py)
#                                       # (b) fidelity probe on the real CIFAR-10 JPEGs
#                                       #                               (bench/fidelity_probe.py)
#                                       # (c) projected wall time of lab4 / lab4-3seeds
#   bash bench/run_gpu.sh --job sweep   # (d) `ninsweep run` lab4 through Ray Tune, 0.25 GPU
#                                       #     per trial, then 1 GPU   (bench/gpu_ray_sweep.py)
#   bash bench/run_gpu.sh --tiny [--job check|sweep|all]   # the same on CPU at tiny sizes
#                                       # (tests/bench/test_gpu_rehearsal.py, in the rehearsal env)
#
# Before any part: the wheels the job carried ($CARRY_WHEELS/cpXY/GROUP/, default .carry/wheels,
# from bench/carry_wheels.py) are installed into $CARRY_SITE (default .carry/site; pip
# --no-index --no-deps --target)
# and put on PYTHONPATH, and the versions the job runs with are printed; an import that
# neither the machine nor the wheels satisfy stops the job there with one line (exit 3).
# Every part has its own time budget and a hard timeout behind it; a part that fails or
# times out is reported and the next one runs. Budgets (seconds): GPU_CHECK_BUDGET_S for
# job check (330), GRID_EAGER_S (90), GRID_COMPILE_S (100), the probe what is left;
# RAY_SWEEP_S for job sweep (240).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
# Absolute: Ray's workers and Tune's trials need not run in this directory.
CARRY_SITE=$(realpath -m "${CARRY_SITE:-.carry/site}")
# The images unpacked and decoded by job check's probe, kept for job sweep (git-ignored).
WORK=$(realpath -m "${CHECK_WORK_DIR:-.carry/work}")
started=$(date +%s)
: > "$OUT/status.txt"

TINY=0; JOB=check
while (( $# )); do
  case "$1" in
    --tiny) TINY=1 ;;
    --job) JOB=${2:-}; shift ;;
    *) echo "run_gpu.sh: unknown argument $1 (--tiny, --job check|sweep|all)" >&2; exit 2 ;;
  esac
  shift
done
case "$JOB" in
  check) NEEDS=(--need check) ;;
  sweep|all) NEEDS=(--need check --need sweep) ;;
  *) echo "run_gpu.sh: --job $JOB: expected check, sweep or all" >&2; exit 2 ;;
esac

if (( TINY )); then
  BUDGET=${GPU_CHECK_BUDGET_S:-300}; EAGER_S=${GRID_EAGER_S:-60}; COMPILE_S=${GRID_COMPILE_S:-70}
  RAY_S=${RAY_SWEEP_S:-300}
  GRID=(--device cpu --models 1,2 --epochs 1 --train-size 64 --image-size 16)
  COMPILE=(--compile --compile-backend "${COMPILE_BACKEND:-eager}")
  PROBE=(--device cpu --train-size 40 --test-size 20 --batch-size 20 --max-epochs 3
         --margin-s 2)
  ARCHIVE=${CIFAR_ARCHIVE:-.carry/data/cifar10-tiny.tar.gz}
  SWEEP=(--space "${RAY_SWEEP_SPACE:-smoke}" --epochs 1 --packed-gpus 0 --single-gpus 0
         --packed-cpus 1 --single-cpus 2)
  if [[ -f "$ARCHIVE" ]]; then SWEEP_DATA=(--archive "$ARCHIVE"); else SWEEP_DATA=(); fi
else
  BUDGET=${GPU_CHECK_BUDGET_S:-330}; EAGER_S=${GRID_EAGER_S:-90}; COMPILE_S=${GRID_COMPILE_S:-100}
  RAY_S=${RAY_SWEEP_S:-240}
  GRID=(--device cuda --models 1,2,4,8 --epochs 2 --train-size 10000)
  COMPILE=(--compile ${COMPILE_BACKEND:+--compile-backend "$COMPILE_BACKEND"})
  PROBE=(--device cuda)
  ARCHIVE=${CIFAR_ARCHIVE:-.carry/data/cifar10-jpeg.tar.gz}
  SWEEP=(--space lab4 --epochs "${RAY_SWEEP_EPOCHS:-2}" --packed-gpus 0.25 --single-gpus 1
         --packed-cpus 2 --single-cpus 2)
  # Job sweep carries Ray, not the images (both would pass 64 MiB): the archive job check
  # carried is still there on a machine kept warm between the two jobs; else CIFAR-size
  # synthetic images, the same work per image for the throughput this part measures.
  if [[ -f "$ARCHIVE" ]]; then SWEEP_DATA=(--archive "$ARCHIVE")
  else SWEEP_DATA=(--synthetic-cifar); fi
fi
left() { echo $(( BUDGET - ($(date +%s) - started) )); }

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  echo "job $JOB$( (( TINY )) && echo ' (tiny)')"
  nvidia-smi 2>&1 | head -20 || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv 2>/dev/null || true
} > "$OUT/versions.txt" 2>&1

# The carried wheels, then what this job imports, before any part.
"$PYTHON" bench/carry_install.py --wheels "${CARRY_WHEELS:-.carry/wheels}" --target "$CARRY_SITE" \
  "${NEEDS[@]}" >> "$OUT/versions.txt" 2>&1
install_status=$?
echo "install $install_status" >> "$OUT/status.txt"
export PYTHONPATH="$PWD:$CARRY_SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")' \
  >> "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
if (( install_status != 0 )); then
  echo "device check: stopped before any part: the carried wheels or an import failed (exit $install_status)"
  exit "$install_status"
fi

# part NAME LOG SECONDS COMMAND...: run with a hard timeout 30 s past its own budget,
# output into LOG.log; record "NAME exit-status" (124 = timed out) in status.txt; never
# stop the check.
part() {
  local name=$1 log=$2 seconds=$3; shift 3
  echo "== $name: up to $seconds s ($(( $(date +%s) - started )) s into the job)"
  timeout --kill-after=10 "$((seconds + 30))" "$@" > "$OUT/$log.log" 2>&1
  local status=$?
  echo "$name $status" >> "$OUT/status.txt"
  tail -n 25 "$OUT/$log.log"
  echo "== $name: exit $status after $(( $(date +%s) - started )) s of the job"
}

if [[ "$JOB" == check || "$JOB" == all ]]; then
  part eager grid_eager "$EAGER_S" "$PYTHON" bench/gpu_grid.py "${GRID[@]}" \
    --time-limit "$EAGER_S" --out "$OUT/grid_eager.json"

  if (( $(left) > COMPILE_S + 60 )); then
    part compile grid_compile "$COMPILE_S" "$PYTHON" bench/gpu_grid.py "${GRID[@]}" \
      "${COMPILE[@]}" --time-limit "$COMPILE_S" --out "$OUT/grid_compile.json"
  else
    echo "compile skipped: $(left) s left of the check" | tee -a "$OUT/status.txt"
  fi

  probe_s=$(( $(left) - 25 ))
  if [[ ! -f "$ARCHIVE" ]]; then
    echo "fidelity skipped: no $ARCHIVE (bench/prepare_gpu_check.sh puts it there;" \
      "carry .carry/data)" \
      | tee -a "$OUT/status.txt"
  elif (( probe_s < 30 )); then
    echo "fidelity skipped: $(left) s left of the check" | tee -a "$OUT/status.txt"
  else
    part fidelity fidelity "$probe_s" "$PYTHON" bench/fidelity_probe.py "${PROBE[@]}" \
      --archive "$ARCHIVE" --work-dir "$WORK" --budget-s "$probe_s" --out "$OUT/fidelity.json"
  fi
fi

if [[ "$JOB" == sweep || "$JOB" == all ]]; then
  part ray ray_sweep "$RAY_S" "$PYTHON" bench/gpu_ray_sweep.py "${SWEEP[@]}" "${SWEEP_DATA[@]}" \
    --work-dir "$WORK" --budget-s "$RAY_S" --out "$OUT/ray_sweep.json"
fi

nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,memory.used --format=csv \
  >> "$OUT/versions.txt" 2>/dev/null || true
"$PYTHON" bench/gpu_check_summary.py "$OUT"
echo "device check, job $JOB: $(( $(date +%s) - started )) s in all; results in $OUT"
