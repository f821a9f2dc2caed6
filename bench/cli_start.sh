#!/usr/bin/env bash
# A `harness run` process's fixed costs on one GPU: loading the weights (and their sha256 for
# the fingerprint) against a small workload (200 HellaSwag rows, 200 summaries of 32 tokens),
# for the Qwen3-1.7B and Llama-3-8B shapes saved to folders: the first run (digest computed
# while the weights load), later runs (digest remembered), and a later run loading through
# host memory as before (HARNESS_LOAD_VIA_CPU=1). Carry .whl and bench/data:
#   bash bench/cli_start.sh [qwen3] [llama3]      (folders saved by bench/gpu_env.sh)
set -euo pipefail
source bench/gpu_env.sh
write_cnn_rouge_task /tmp/cli-tasks
export HARNESS_CACHE=$(mktemp -d)      # no remembered weight digests yet
rm -f "$OUT/cli_start.jsonl"
for model in "$@"; do
  for via_cpu in 0 0 1 0; do
    t0=$(date +%s.%N)
    HARNESS_LOAD_VIA_CPU=$via_cpu python3 -m harness run --base /tmp/$model-random \
      --dtype bfloat16 --tasks hellaswag,cnn_rouge --tasks-dir /tmp/cli-tasks --limit 200 \
      --max-new-tokens 32 --data hellaswag=bench/data/hellaswag_all.parquet \
      --data cnn_rouge=bench/data/cnn_dailymail.jsonl --no-cache --out /tmp/cli-start >/dev/null
    t1=$(date +%s.%N)
    python3 - "$t0" "$t1" "$model" "$via_cpu" <<'PY'
import json, os, sys
from pathlib import Path
t0, t1 = map(float, sys.argv[1:3])
r = json.loads(Path("/tmp/cli-start/report.json").read_text())
row = {"model": sys.argv[3], "HARNESS_LOAD_VIA_CPU": int(sys.argv[4]),
       "command_s": round(t1 - t0, 2), **r["timings"],
       **{f"{k}_model_s": v["timings"]["model_seconds"] for k, v in r["tasks"].items()}}
print(json.dumps(row))
with open(Path(os.environ["OUT"]) / "cli_start.jsonl", "a") as fh:
    fh.write(json.dumps(row) + "\n")
PY
  done
done
