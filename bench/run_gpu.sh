#!/usr/bin/env bash
# The GPU measurement of docs/performance.md, as one command for the GPU machine (no Ray, no
# internet there: PyTorch + torchvision and this checkout are all it needs). Prints
# nvidia-smi and the versions, then runs bench/gpu_grid.py on CUDA with sizes that fit about
# 3 minutes (5 minutes of device time with the machine's start), and writes gpu_grid.json
# and gpu_grid.log into $OUT (or /tmp/gpu-grid-out when $OUT is unset).
#
#   bash bench/run_gpu.sh                          # synthetic CIFAR-size images
#   bash bench/run_gpu.sh --compile                # extra flags go to gpu_grid.py
#   bash bench/run_gpu.sh --data jpeg-zip .data/cifar10-jpeg.zip   # the real images: copy
#       ../shared/data/cifar10-jpeg.zip into .data/ (git-ignored) and carry .data
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-grid-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.draw,power.limit \
  --format=csv || true
"$PYTHON" -c 'import sys, torch, torchvision; print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")'
# --time-limit keeps the script inside 180 s (packings that would not fit are skipped and
# reported); timeout is the hard stop behind it.
timeout 270 "$PYTHON" bench/gpu_grid.py --device cuda --models 1,2,4,8 --epochs 2 \
  --train-size 10000 --time-limit 180 --out "$OUT/gpu_grid.json" "$@" 2>&1 \
  | tee "$OUT/gpu_grid.log"
status=${PIPESTATUS[0]}
nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,memory.used --format=csv || true
exit "$status"
