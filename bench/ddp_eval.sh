#!/usr/bin/env bash
# The same evaluation on 1 GPU and on 2 (torchrun), random-weight Qwen3-1.7B in fp32 so the
# reports can be compared exactly. On an nvidia-h200-x2 machine, carrying .whl and bench/data:
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
ARGS="run --base /tmp/qwen3-random --dtype float32 --tasks hellaswag --data hellaswag=bench/data/hellaswag.jsonl --no-cache"
t0=$(date +%s.%N)
python3 -m harness $ARGS --out /tmp/eval-1gpu
t1=$(date +%s.%N)
python3 -m torch.distributed.run --nproc_per_node 2 -m harness $ARGS --out /tmp/eval-2gpu
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" <<'PY'
import json, os, sys
from pathlib import Path
t0, t1, t2 = map(float, sys.argv[1:])
def load(n):
    r = json.loads(Path(f"/tmp/eval-{n}gpu/report.json").read_text())
    timing = r["tasks"]["hellaswag"]["timings"]
    for k in ("created_at", "timings"):
        r.pop(k)
    r["tasks"]["hellaswag"].pop("timings")
    r.pop("device")
    return r, timing
(a, ta), (b, tb) = load(1), load(2)
same_samples = Path("/tmp/eval-1gpu/samples/hellaswag.jsonl").read_text() == \
    Path("/tmp/eval-2gpu/samples/hellaswag.jsonl").read_text()
out = {"items": 2000, "reports_equal_except_timings_and_device": a == b,
       "samples_equal": same_samples,
       "1gpu": {"scoring_s": ta["model_seconds"], "command_wall_s": round(t1 - t0, 1)},
       "2gpu": {"scoring_s": tb["model_seconds"], "command_wall_s": round(t2 - t1, 1)},
       "scoring_speedup": round(ta["model_seconds"] / tb["model_seconds"], 2),
       "acc": a["tasks"]["hellaswag"]["metrics"]["acc"]["value"]}
print(json.dumps(out, indent=1))
Path(os.environ.get("OUT", "/tmp"), "ddp_eval.json").write_text(json.dumps(out, indent=1))
PY
