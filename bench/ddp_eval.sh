#!/usr/bin/env bash
# The same evaluation on 1 GPU, on 2 (torchrun, data parallel) and on 2 with the model split
# over both (--device auto): random-weight Qwen3-1.7B in fp32 so that the reports can be
# compared exactly, 6,000 real HellaSwag rows. On an nvidia-h200-x2 machine, carrying .whl and
# bench/data:
#   bash bench/ddp_eval.sh
set -euo pipefail
source bench/gpu_env.sh
save_qwen3
# Generation too: cnn_dailymail scored by ROUGE only.
write_cnn_rouge_task /tmp/ddp-tasks
ARGS="run --base /tmp/qwen3-random --dtype float32 --tasks hellaswag,cnn_rouge --limit 6000
      --tasks-dir /tmp/ddp-tasks --max-new-tokens 48 --no-cache
      --data hellaswag=bench/data/hellaswag_all.parquet
      --data cnn_rouge=bench/data/cnn_dailymail.jsonl"
t0=$(date +%s.%N)
# Each run may fail on its own; the summary compares what exists.
python3 -m harness $ARGS --out /tmp/eval-1gpu || true
t1=$(date +%s.%N)
python3 -m torch.distributed.run --nproc_per_node 2 -m harness $ARGS --out /tmp/eval-2gpu || true
t2=$(date +%s.%N)
python3 -m harness $ARGS --device auto --out /tmp/eval-auto || true
t3=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, os, sys
from pathlib import Path
t = list(map(float, sys.argv[1:]))
def load(name):
    r = json.loads(Path(f"/tmp/eval-{name}/report.json").read_text())
    timing = {k: r["tasks"][k].pop("timings") for k in r["tasks"]}
    for k in ("created_at", "timings", "device"):
        r.pop(k, None)
    samples = {k: [json.loads(x) for x in
                   Path(f"/tmp/eval-{name}/samples/{k}.jsonl").read_text().splitlines()]
               for k in ("hellaswag", "cnn_rouge")}
    return r, timing, samples
one, t1, s1 = load("1gpu")
hs, gen = "hellaswag", "cnn_rouge"
out = {"items": {k: len(v) for k, v in s1.items()},
       "acc": one["tasks"][hs]["metrics"]["acc"]["value"],
       "1gpu": {"scoring_s": {k: v["model_seconds"] for k, v in t1.items()},
                "command_wall_s": round(t[1] - t[0], 1)}}
for name, (a, b) in (("2gpu", (t[1], t[2])), ("auto", (t[2], t[3]))):
    if not Path(f"/tmp/eval-{name}/report.json").exists():
        out[name] = "failed"
        continue
    r, tm, s = load(name)
    pairs = list(zip(s1[hs], s[hs], strict=True))
    out[name] = {
        "scoring_s": {k: v["model_seconds"] for k, v in tm.items()},
        "command_wall_s": round(b - a, 1),
        "scoring_speedup_vs_1gpu": {k: round(t1[k]["model_seconds"] / v["model_seconds"], 2)
                                    for k, v in tm.items()},
        "report_equal_except_timings_and_device": r == one,
        "tasks_equal": [k for k in one["tasks"] if r["tasks"][k] == one["tasks"][k]],
        "hellaswag_choices_equal": sum(p["prediction"]["choice"] == q["prediction"]["choice"]
                                       and p["prediction"]["choice_norm"]
                                       == q["prediction"]["choice_norm"] for p, q in pairs),
        "hellaswag_max_abs_loglikelihood_diff": max(
            abs(x - y) for p, q in pairs for x, y in zip(
                p["prediction"]["loglikelihoods"], q["prediction"]["loglikelihoods"],
                strict=True)),
        "generated_texts_equal": sum(p["prediction"] == q["prediction"]
                                     for p, q in zip(s1[gen], s[gen], strict=True))}
sys.path.insert(0, "bench")
from common import write_result
write_result("ddp_eval", "2x_h200", out)
PY
