#!/usr/bin/env bash
# Run ON the GPU machine (device tool), from the repo root, after bench/prepare_gpu_run.sh here; carry
# [".whl", ".data"]. Writes into $OUT: the results file, the log and the three seeds' model files.
#   usage: ANATPASTE_COMMIT=<commit> bash bench/gpu_zhanglab.sh [extra train_zhanglab.py arguments]
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# Keep well inside the device tool's 10-minute command limit: every finished seed is already in the results file.
timeout "${BENCH_TIMEOUT_S:-520}" python3 bench/train_zhanglab.py --data .data/zhanglab --seeds 0 1 2 \
  --size 256 --batch-size 128 --workdir "$OUT" --out "$OUT/zhanglab_cuda.json" "$@" 2>&1 \
  | grep -v "reading + segmenting:" | tee "$OUT/log.txt"
