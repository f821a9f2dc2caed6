#!/usr/bin/env bash
# The same evaluation on 1 GPU, on 2 (torchrun, data parallel) and on 2 with the model split
# over both (--device auto): random-weight Qwen3-1.7B in fp32 so that the reports can be
# compared exactly, 6,000 real HellaSwag rows. On an nvidia-h200-x2 machine, carrying .whl and
# bench/data:
#   bash bench/ddp_eval.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl >/dev/null 2>&1 || true
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HARNESS_NO_PROGRESS=1
(cd bench && python3 -c "
from pathlib import Path
from common import QWEN3_1_7B, model, save_model, tokenizer
save_model(model(QWEN3_1_7B), tokenizer(Path('/tmp/bench-tok')), Path('/tmp/qwen3-random'))
")
ARGS="run --base /tmp/qwen3-random --dtype float32 --tasks hellaswag --limit 6000 --no-cache
      --data hellaswag=bench/data/hellaswag_all.parquet"
t0=$(date +%s.%N)
python3 -m harness $ARGS --out /tmp/eval-1gpu
t1=$(date +%s.%N)
python3 -m torch.distributed.run --nproc_per_node 2 -m harness $ARGS --out /tmp/eval-2gpu
t2=$(date +%s.%N)
python3 -m harness $ARGS --device auto --out /tmp/eval-auto
t3=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, os, sys
from pathlib import Path
t = list(map(float, sys.argv[1:]))
def load(name):
    r = json.loads(Path(f"/tmp/eval-{name}/report.json").read_text())
    timing = r["tasks"]["hellaswag"].pop("timings")
    for k in ("created_at", "timings", "device"):
        r.pop(k, None)
    samples = [json.loads(x) for x in
               Path(f"/tmp/eval-{name}/samples/hellaswag.jsonl").read_text().splitlines()]
    return r, timing, samples
one, t1, s1 = load("1gpu")
out = {"items": len(s1), "acc": one["tasks"]["hellaswag"]["metrics"]["acc"]["value"],
       "1gpu": {"scoring_s": t1["model_seconds"], "command_wall_s": round(t[1] - t[0], 1)}}
for name, (a, b) in (("2gpu", (t[1], t[2])), ("auto", (t[2], t[3]))):
    r, tm, s = load(name)
    diff = max(abs(x - y) for p, q in zip(s1, s, strict=True)
               for x, y in zip(p["prediction"]["loglikelihoods"],
                               q["prediction"]["loglikelihoods"], strict=True))
    out[name] = {"scoring_s": tm["model_seconds"], "command_wall_s": round(b - a, 1),
                 "scoring_speedup_vs_1gpu": round(t1["model_seconds"] / tm["model_seconds"], 2),
                 "report_equal_except_timings_and_device": r == one,
                 "choices_equal": sum(p["prediction"]["choice"] == q["prediction"]["choice"]
                                      and p["prediction"]["choice_norm"]
                                      == q["prediction"]["choice_norm"]
                                      for p, q in zip(s1, s, strict=True)),
                 "max_abs_loglikelihood_diff": diff}
print(json.dumps(out, indent=1))
Path(os.environ.get("OUT", "/tmp"), "ddp_eval.json").write_text(json.dumps(out, indent=1))
PY
