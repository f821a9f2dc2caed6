#!/usr/bin/env bash
# The whole product path on one GPU: `harness run` (CLI, runner, result store, report) on the
# random-weight Qwen3-1.7B in bf16 saved to a folder, all 10,042 real HellaSwag rows plus 250
# CNN/DailyMail summaries (128 new tokens, ROUGE). Carry .whl and bench/data:
#   bash bench/cli_run.sh
set -euo pipefail
source bench/gpu_env.sh
save_qwen3
write_cnn_rouge_task /tmp/cli-tasks
t0=$(date +%s.%N)
python3 -m harness run --base /tmp/qwen3-random --dtype bfloat16 --tasks hellaswag,cnn_rouge \
  --tasks-dir /tmp/cli-tasks --max-new-tokens 128 \
  --data hellaswag=bench/data/hellaswag_all.parquet \
  --data cnn_rouge=bench/data/cnn_dailymail.jsonl --out /tmp/cli-run
t1=$(date +%s.%N)
python3 - "$t0" "$t1" <<'PY'
import json, os, sys
from pathlib import Path
t0, t1 = map(float, sys.argv[1:])
r = json.loads(Path("/tmp/cli-run/report.json").read_text())
out = {"command_wall_s": round(t1 - t0, 1),
       "tasks": {k: {"n": v.get("n"), "timings": v.get("timings"),
                     "metrics": {m: x.get("value") for m, x in v["metrics"].items()}}
                 for k, v in r["tasks"].items()}}
print(json.dumps(out, indent=1))
Path(os.environ.get("OUT", "/tmp"), "cli_run.json").write_text(json.dumps(out, indent=1))
PY
