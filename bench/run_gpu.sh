#!/usr/bin/env bash
# On the GPU machine, from the repo root, with .whl and bench/data carried:
#   bash bench/run_gpu.sh hellaswag train     (or: generation metrics hellaswag-all runner ...)
set -euo pipefail
source bench/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
cd bench
for what in "$@"; do
  case "$what" in
    hellaswag) python3 hellaswag_bench.py --items 2000 ;;
    train) python3 train_bench.py --steps 40 --warmup 5 --fractions 1.0 0.5 0.25 ;;
    generation) python3 generation_bench.py --prompts 128 --batch 64 ;;
    hellaswag-llama) python3 hellaswag_bench.py --items 2000 --arch llama3 ;;
    hellaswag-all) python3 hellaswag_bench.py --all-rows --quick ;;
    runner) python3 runner_check.py ;;
    generation-llama) python3 generation_bench.py --prompts 128 --batch 64 --arch llama3 --core ;;
    metrics) python3 metrics_bench.py --rouge-workers 16 --bertscore ;;
    profile) python3 profile_gpu.py hellaswag train ;;
    profile-train) python3 profile_gpu.py train steps ;;
    profile-2) python3 profile_gpu.py steps choices ;;
    profile-gen) python3 profile_gpu.py gen choices ;;
    profile-gen-llama) python3 profile_gpu.py gen-llama ;;
    checks) python3 gpu_checks.py ;;
  esac
done
