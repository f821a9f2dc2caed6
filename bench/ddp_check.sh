#!/usr/bin/env bash
# Multi-GPU data parallel training through `accelerate launch`, no code changes: the same
# recipe on 1 GPU and on 2, a small model built on the spot. On an nvidia-h200-x2 machine:
#   bash bench/ddp_check.sh
set -euo pipefail
source bench/gpu_env.sh
nvidia-smi -L
python3 - <<'PY'
from pathlib import Path
from harness import examples
from harness.tiny import build_tiny_lm
build_tiny_lm(Path("/tmp/ddp-lm"), examples.corpus(), max_positions=1024)
rows = examples.news(400)
examples.write_jsonl(rows[:352], Path("/tmp/ddp-data/train.jsonl"))
examples.write_jsonl(rows[352:], Path("/tmp/ddp-data/eval.jsonl"))
PY
cat > /tmp/ddp.yaml <<'YAML'
name: ddp-news
base: /tmp/ddp-lm
task: cnn_dailymail
train: {split: train}
eval: {split: validation}
quantization: nf4
lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj, up_proj, down_proj]}
training: {epochs: 2, micro_batch_size: 4, learning_rate: 3.0e-3, warmup_steps: 5,
           eval_every: 20, save_every: 20, log_every: 5, max_length: 512,
           optimizer: paged_adamw_8bit, precision: bf16}
YAML
DATA="--data cnn_dailymail=/tmp/ddp-data/train.jsonl --data cnn_dailymail:eval=/tmp/ddp-data/eval.jsonl"
start=$(date +%s.%N)
python3 -m harness train /tmp/ddp.yaml $DATA --out /tmp/ddp-1gpu
mid=$(date +%s.%N)
python3 -m accelerate.commands.launch --num_processes 2 --mixed_precision bf16 \
  -m harness train /tmp/ddp.yaml $DATA --out /tmp/ddp-2gpu
end=$(date +%s.%N)
python3 - "$start" "$mid" "$end" <<'PY'
import json, sys
from pathlib import Path
s, m, e = map(float, sys.argv[1:])
out = {}
for name, secs in (("1gpu", m - s), ("2gpu", e - m)):
    folder = Path(f"/tmp/ddp-{name}")
    summary = json.loads((folder / "train_summary.json").read_text())
    log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in log if "eval_loss" in r]
    out[name] = {"steps": summary["steps"], "wall_s_incl_startup": round(secs, 1),
                 "train_wall_s": summary["wall_seconds"], "evals": [round(x, 3) for x in evals],
                 "best_eval_loss": round(summary["best_eval_loss"], 4),
                 "mean_tokens_per_s": summary["mean_tokens_per_s"]}
from peft import PeftModel
from transformers import AutoModelForCausalLM
PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("/tmp/ddp-lm"), "/tmp/ddp-2gpu")
out["2gpu_adapter_loads_in_peft"] = True
sys.path.insert(0, "bench")
from common import write_result
write_result("ddp_train", "2x_h200", out)
PY
