#!/usr/bin/env bash
# The device check, one command, under 8 minutes on one H100/H200 (no Ray, no internet:
# PyTorch + torchvision and this checkout are all it needs). Writes into $OUT (default
# /tmp/gpu-check-out): versions.txt, grid_eager.json/.log, grid_compile.json/.log,
# fidelity.json/.log, status.txt, and the summary: device_check.json + summary.md.
#
#   (a) images/s and MFU of the lab4 mix with 1, 2, 4, 8 trials packed on the GPU, bf16 +
#       channels_last, without and with torch.compile            (bench/gpu_grid.py)
#   (b) fidelity probe: ELU+BN+WI and ReLU side by side on the real CIFAR-10 JPEGs for as
#       many epochs as fit, lr steps at 81/164 and 122/164 of the run (bench/fidelity_probe.py)
#   (c) projected wall time of lab4 and lab4-3seeds from (a)    (bench/gpu_check_summary.py)
#
#   bash bench/run_gpu.sh            # on the GPU machine; device tool: carry [".carry"]
#   bash bench/run_gpu.sh --tiny     # the same parts on CPU at tiny sizes (tests/bench/test_bench.py)
#
# The real images: mkdir -p .carry && cp ../shared/data/cifar10-jpeg.zip .carry/ (.carry/ is
# git-ignored; 60 MiB, within the 64 MiB a device call may carry). Without it part (b) is
# skipped and reported so. Every part has its own time budget and a hard timeout behind it;
# a part that fails or times out is reported and the next one runs. Budgets (seconds):
# GPU_CHECK_BUDGET_S for the whole (450), GRID_EAGER_S (110), GRID_COMPILE_S (150); the
# probe gets what is left.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
started=$(date +%s)
: > "$OUT/status.txt"

if [[ "${1:-}" == "--tiny" ]]; then
  BUDGET=${GPU_CHECK_BUDGET_S:-300}; EAGER_S=${GRID_EAGER_S:-60}; COMPILE_S=${GRID_COMPILE_S:-70}
  GRID=(--device cpu --models 1,2 --epochs 1 --train-size 64 --image-size 16)
  COMPILE=(--compile --compile-backend "${COMPILE_BACKEND:-eager}")
  PROBE=(--device cpu --train-size 40 --test-size 20 --batch-size 20 --max-epochs 3
         --margin-s 2)
  ZIP=${CIFAR_ZIP:-.carry/cifar10-tiny.zip}
else
  BUDGET=${GPU_CHECK_BUDGET_S:-450}; EAGER_S=${GRID_EAGER_S:-110}
  COMPILE_S=${GRID_COMPILE_S:-150}
  GRID=(--device cuda --models 1,2,4,8 --epochs 2 --train-size 10000)
  COMPILE=(--compile ${COMPILE_BACKEND:+--compile-backend "$COMPILE_BACKEND"})
  PROBE=(--device cuda)
  ZIP=${CIFAR_ZIP:-.carry/cifar10-jpeg.zip}
fi
left() { echo $(( BUDGET - ($(date +%s) - started) )); }

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi 2>&1 | head -20 || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv 2>/dev/null || true
  "$PYTHON" -c 'import sys, torch, torchvision; print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")'
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

# part NAME LOG SECONDS COMMAND...: run with a hard timeout 30 s past its own budget,
# output into LOG.log; record "NAME exit-status" (124 = timed out) in status.txt; never
# stop the check.
part() {
  local name=$1 log=$2 seconds=$3; shift 3
  echo "== $name: up to $seconds s ($(left) s of the check left)"
  timeout --kill-after=10 "$((seconds + 30))" "$@" > "$OUT/$log.log" 2>&1
  local status=$?
  echo "$name $status" >> "$OUT/status.txt"
  tail -n 25 "$OUT/$log.log"
  echo "== $name: exit $status after $(( $(date +%s) - started )) s of the check"
}

part eager grid_eager "$EAGER_S" "$PYTHON" bench/gpu_grid.py "${GRID[@]}" \
  --time-limit "$EAGER_S" --out "$OUT/grid_eager.json"

if (( $(left) > COMPILE_S + 60 )); then
  part compile grid_compile "$COMPILE_S" "$PYTHON" bench/gpu_grid.py "${GRID[@]}" \
    "${COMPILE[@]}" --time-limit "$COMPILE_S" --out "$OUT/grid_compile.json"
else
  echo "compile skipped: $(left) s left of the check" | tee -a "$OUT/status.txt"
fi

probe_s=$(( $(left) - 25 ))
if [[ ! -f "$ZIP" ]]; then
  echo "fidelity skipped: no $ZIP (copy cifar10-jpeg.zip there and carry .carry)" \
    | tee -a "$OUT/status.txt"
elif (( probe_s < 30 )); then
  echo "fidelity skipped: $(left) s left of the check" | tee -a "$OUT/status.txt"
else
  part fidelity fidelity "$probe_s" "$PYTHON" bench/fidelity_probe.py "${PROBE[@]}" --zip "$ZIP" \
    --budget-s "$probe_s" --out "$OUT/fidelity.json"
fi

nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,memory.used --format=csv \
  >> "$OUT/versions.txt" 2>/dev/null || true
"$PYTHON" bench/gpu_check_summary.py "$OUT"
echo "device check: $(( $(date +%s) - started )) s in all; results in $OUT"
