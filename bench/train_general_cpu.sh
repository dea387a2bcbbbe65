#!/usr/bin/env bash
# How the shipped general (pediatric + adult) default model was trained, on a 2-core CPU under bf16 autocast.
# It continues from the pediatric CPU model's last phase (bench/train_default_cpu.sh, phase 6: 1,950 steps on
# ZhangLab normals) with two sources drawn equally often:
#   ZhangLab train + val normals (children, 1,349) and NIH train normals (adults, 184).
# The lungmasks normals (Montgomery, Shenzhen) are kept out entirely, so both stay unseen adult hospitals.
# 128 px, 32 + 32 images per step, seed 0 throughout (each source holds out 10 %: ZhangLab's 135 are the same
# images the pediatric phases held out); every phase has a fresh head and a new cosine schedule at lr 0.01.
# Phases 1-4 are 500 steps each; phase 5, the shipped one, is one 4,000-step schedule from phase 3 (evaluated
# and checkpointed every 100 steps). Phases are resumable (rerun the script; a finished phase is re-exported).
#   usage: bash bench/train_general_cpu.sh [LAST_PHASE=5] [OUT_DIR=runs/general] [INIT=anatpaste/weights/zhanglab_cpu.pt]
set -euo pipefail
cd "$(dirname "$0")/.."
last=${1:-5}
out=${2:-runs/general}
prev=${3:-anatpaste/weights/zhanglab_cpu.pt}
data=../shared/data
common=(--normal "$data/zhanglab/train/NORMAL" "$data/zhanglab/val/NORMAL" --normal "$data/nih/train/NORMAL"
        --balance-sources --precision auto --size 128 --batch-size 32 --seed 0 --lr 0.01)
mkdir -p "$out"
for k in $(seq 1 "$((last < 4 ? last : 4))"); do
  .venv/bin/anatpaste train "${common[@]}" --steps 500 --eval-every 50 --checkpoint-every 50 \
    --output "$out/general$k.pt" --init-weights "$prev"
  prev="$out/general$k.pt"
done
if [ "$last" -ge 5 ]; then
  .venv/bin/anatpaste train "${common[@]}" --steps 4000 --eval-every 100 --checkpoint-every 100 \
    --output "$out/general5.pt" --init-weights "$out/general3.pt"  # shipped run: the old default.pt, = phase 3 + input statistics
fi
