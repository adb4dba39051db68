#!/usr/bin/env bash
# Several machines: run this on every node, with the same RDZV_ENDPOINT and RDZV_ID.
#   NNODES=2 RDZV_ENDPOINT=node0.example:29500 RDZV_ID=exp1 bash scripts/train_multinode.sh [--FIELD VALUE ...]
# The c10d rendezvous needs no node ranks: the nodes find each other at the endpoint
# (a host:port that every node can reach; one of the nodes hosts it).
# Environment: NPROC_PER_NODE (default: the GPU count, or 2 on CPU), MAX_RESTARTS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  default_nproc=$(nvidia-smi -L | wc -l)
else
  default_nproc=2
fi
exec torchrun --nnodes="${NNODES:?set NNODES, the number of machines}" \
  --nproc-per-node="${NPROC_PER_NODE:-$default_nproc}" \
  --rdzv-backend=c10d --rdzv-endpoint="${RDZV_ENDPOINT:?set RDZV_ENDPOINT=host:port}" \
  --rdzv-id="${RDZV_ID:-image_classifier}" --max-restarts="${MAX_RESTARTS:-3}" \
  -m image_classifier.train --resume auto "$@"
