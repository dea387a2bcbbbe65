#!/usr/bin/env bash
# Does bf16 autocast cost AUC? The same short run twice, same seed, steps and data, fp32 vs bf16: it continues
# from the pediatric CPU model on the general model's two sources, 150 steps of 32 + 32 at 128 px. Then both
# files' label-free figure and zero-shot test AUCs side by side (bench/results/bf16_vs_fp32.json).
#   usage: bash bench/bf16_vs_fp32.sh [OUT_DIR=runs/precision]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/precision}
data=../shared/data
common=(--normal "$data/zhanglab/train/NORMAL" "$data/zhanglab/val/NORMAL" --normal "$data/nih/train/NORMAL"
        --balance-sources --size 128 --batch-size 32 --eval-every 50 --checkpoint-every 50 --seed 0 --lr 0.01
        --steps 150 --init-weights anatpaste/weights/zhanglab_cpu.pt --device cpu)
mkdir -p "$out"
for p in fp32 bf16; do
  .venv/bin/anatpaste train "${common[@]}" --precision "$p" --output "$out/$p.pt"
done
.venv/bin/python bench/default_model.py --model "$out/bf16.pt" --compare "$out/fp32.pt" --out bench/results/bf16_vs_fp32.json
