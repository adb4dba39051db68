#!/usr/bin/env bash
# One machine: one process per GPU, or 2 processes on a CPU-only machine.
#   bash scripts/train_ddp.sh [--FIELD VALUE ...]        e.g. --max-steps 1000 --out-dir runs/ddp
# Environment: NPROC_PER_NODE (processes), MAX_RESTARTS (restarts after a failure, default 3).
# It always passes --resume auto, so a restarted group continues from the last checkpoint:
# use a new --out-dir for a new run.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  default_nproc=$(nvidia-smi -L | wc -l)
else
  default_nproc=2
fi
exec torchrun --standalone --nproc-per-node="${NPROC_PER_NODE:-$default_nproc}" \
  --max-restarts="${MAX_RESTARTS:-3}" \
  -m image_classifier.train --resume auto "$@"
