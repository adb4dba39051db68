#!/usr/bin/env bash
# Train the key option combinations (fp16 + GradScaler, bf16, compile, gradient
# checkpointing, ...) on a CUDA GPU and print one table. On a machine without a GPU it
# says so and exits 0. Usage: scripts/gpu_check.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/gpu_check.py "$@"
