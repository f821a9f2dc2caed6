#!/usr/bin/env bash
# On the GPU machine, from the repo root, with .whl and bench/data carried:
#   bash bench/run_gpu.sh hellaswag train     (or: generation metrics hellaswag-all checks ...)
# `checks` runs the GPU tests (tests/gpu, pytest -m gpu).
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
    generation-llama) python3 generation_bench.py --prompts 128 --batch 64 --arch llama3 --core ;;
    metrics) python3 metrics_bench.py --rouge-workers 16 --bertscore ;;
    checks) (cd .. && python3 -m pytest -q -m gpu tests/gpu) ;;
  esac
done
