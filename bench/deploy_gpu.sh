#!/usr/bin/env bash
# Seed 003's deployment path on the GPU machine (bench/deploy_bench.py): a random-weight
# Qwen3-1.7B exported to GGUF q8_0 and q4_0, each compared with its source, every step timed.
# Carry .whl (with the gguf wheel) and bench/data. Two calls within the warm window:
#   bash bench/deploy_gpu.sh --part export;  then  bash bench/deploy_gpu.sh --part compare
set -euo pipefail
source bench/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
cd bench && python3 deploy_bench.py "$@"
