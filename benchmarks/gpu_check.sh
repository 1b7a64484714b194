#!/usr/bin/env bash
# GPU check (issue 6): the transformers backend on CUDA (bf16, batched sampling with log-probs, a LoRA
# adapter) always, and the vLLM backend beside it where vLLM is importable; prints tokens/s of each.
# Needs wow installed with a CUDA torch (vLLM: the `gpu` extra). Extra arguments go to gpu_check.py.
#   benchmarks/gpu_check.sh [--prompts 16] [--n 8] [--max-new-tokens 128]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PYTHON" benchmarks/gpu_check.py "$@"
