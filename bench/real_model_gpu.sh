#!/usr/bin/env bash
# SmolLM2-135M-Instruct (GGUF) on all 10,042 HellaSwag rows on the GPU machine: harness CLI
# and lm-eval HFLM, bf16 and fp32 (bench/real_model_gpu.py). Carry .whl (with the gguf wheel)
# and bench/data (hellaswag_val.jsonl); the GGUF file is given as $1 (it travels in parts:
# RESULTS.md says how).
set -euo pipefail
source bench/gpu_env.sh
export HARNESS_CACHE=/tmp/harness-cache
python3 bench/real_model_gpu.py --gguf "$1"
