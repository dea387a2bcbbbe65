#!/usr/bin/env bash
# How the shipped CPU-scale default model was trained (no GPU was lent to the sessions that made it):
# 128 px, 32 + 32 images per step, seed 0 throughout (so every phase holds out the same 135 normals).
# Phase 1 starts from random initialisation (the paper's choice); each later phase continues from the
# previous file's encoder with a fresh head and a new cosine schedule at lr 0.01. Phases are resumable
# (rerun the script); about 15-30 minutes each on a 2-core CPU.
#   usage: bash bench/train_default_cpu.sh [LAST_PHASE=6] [OUT_DIR=runs/default]
set -euo pipefail
cd "$(dirname "$0")/.."
last=${1:-6}
out=${2:-runs/default}
zl=../shared/data/zhanglab
common=(--normal "$zl/train/NORMAL" "$zl/val/NORMAL" --size 128 --batch-size 32 --eval-every 50
        --checkpoint-every 50 --seed 0 --device cpu)
mkdir -p "$out"
.venv/bin/anatpaste train "${common[@]}" --output "$out/default.pt" --steps 200
prev="$out/default.pt"
for k in $(seq 2 "$last"); do
  steps=400
  [ "$k" = 2 ] && steps=300
  .venv/bin/anatpaste train "${common[@]}" --output "$out/default$k.pt" --init-weights "$prev" --steps "$steps" --lr 0.01
  prev="$out/default$k.pt"
done
# The label-free figure of each file (and, for reporting only, the test split) decides what ships:
.venv/bin/python bench/default_model.py --model "$prev" --compare "$out"/default*.pt --out "$out/phases.json"
