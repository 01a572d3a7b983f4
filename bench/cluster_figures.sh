#!/usr/bin/env bash
# Steady-state figures of the training cluster, measured in one run next to PyTorch's step:
# cluster tokens/s, step time and all-reduce share for 1, 2 and 3 workers on `tiny` and `base`,
# then PyTorch + transformers on the same global batch (needs torch and transformers).
#   bench/cluster_figures.sh [path/to/albatross] [python]
set -euo pipefail
A=${1:-target/release/albatross}
PY=${2:-python3}
for preset in tiny base; do
  steps=$([ "$preset" = tiny ] && echo 40 || echo 4)
  for workers in 1 2 3; do
    "$A" bench train --preset "$preset" --workers "$workers" --batch 8 --seq 128 \
      --steps "$steps" --warmup 2 --json 2>/dev/null
  done
done
"$A" bench train --preset base --workers 1 --threads-per-worker 2 --batch 8 --seq 128 \
  --steps 4 --warmup 2 --json 2>/dev/null
"$PY" bench/pytorch_step.py --preset base --batch 8 --seq 128 --steps 3 2>/dev/null | tail -1
"$A" bench train --preset base --workers 2 --batch 8 --seq 128 --steps 4 --warmup 2 --json 2>/dev/null
"$PY" bench/pytorch_step.py --preset base --batch 8 --seq 128 --steps 3 2>/dev/null | tail -1
