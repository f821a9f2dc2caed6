#!/usr/bin/env bash
# A `harness run` process's fixed costs on one GPU: loading the weights (and their sha256 for
# the fingerprint) against a small workload (200 HellaSwag rows, 200 summaries of 32 tokens),
# for the Qwen3-1.7B and Llama-3-8B shapes saved to folders: the first run (digest computed
# while the weights load), then later runs (digest remembered). Carry .whl and bench/data:
#   bash bench/cli_start.sh [qwen3] [llama3]      (folders saved by bench/gpu_env.sh)
# Writes the "start_MODEL" entries of bench/results/cli.json.
set -euo pipefail
source bench/gpu_env.sh
write_cnn_rouge_task /tmp/cli-tasks
export HARNESS_CACHE=$(mktemp -d)      # no remembered weight digests yet
for model in "$@"; do
  rm -f /tmp/cli-start.jsonl
  for run in first later later; do
    t0=$(date +%s.%N)
    python3 -m harness run --base /tmp/$model-random \
      --dtype bfloat16 --tasks hellaswag,cnn_rouge --tasks-dir /tmp/cli-tasks --limit 200 \
      --max-new-tokens 32 --data hellaswag=bench/data/hellaswag_all.parquet \
      --data cnn_rouge=bench/data/cnn_dailymail.jsonl --no-cache --out /tmp/cli-start >/dev/null
    t1=$(date +%s.%N)
    python3 - "$t0" "$t1" "$run" <<'PY'
import json, sys
from pathlib import Path
t0, t1 = map(float, sys.argv[1:3])
r = json.loads(Path("/tmp/cli-start/report.json").read_text())
row = {"run": sys.argv[3], "command_s": round(t1 - t0, 2), **r["timings"],
       **{f"{k}_model_s": v["timings"]["model_seconds"] for k, v in r["tasks"].items()}}
with open("/tmp/cli-start.jsonl", "a") as fh:
    fh.write(json.dumps(row) + "\n")
PY
  done
  python3 - "$model" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from common import write_result
rows = [json.loads(x) for x in open("/tmp/cli-start.jsonl")]
write_result("cli", f"start_{sys.argv[1]}", {"runs": rows})
PY
done
