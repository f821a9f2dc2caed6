#!/usr/bin/env bash
# Whole commands, process start to report, as users run them: `harness run` against the
# `lm_eval` CLI (`--model hf`, batch auto) on the same saved model (random-weight Qwen3-1.7B,
# bf16) and the same rows, in one call on one GPU:
#   - HellaSwag, all 10,042 validation rows (lm-eval's task over a local copy, preprocessed by
#     the same function the harness's task uses); then the harness command again, every answer
#     already in its result store;
#   - CNN/DailyMail, 250 articles, 128 new tokens, greedy (lm-eval's generate_until, batch 64).
# Carry .whl and bench/data:   bash bench/cli_bench.sh      (writes bench/results/cli.json)
set -euo pipefail
T=$(date +%s.%N)
stamp() { local now; now=$(date +%s.%N); echo "[cli_bench] +$(python3 -c "print(round($now - $T, 1))") s" >&2; echo "$now"; }
source bench/gpu_env.sh
save_qwen3
echo "[cli_bench] model saved" >&2; stamp >/dev/null
write_cnn_rouge_task /tmp/cli-tasks
export HARNESS_CACHE=$(mktemp -d)
MODEL=/tmp/qwen3-random
LMT=/tmp/lm-tasks
mkdir -p $LMT
cat > $LMT/utils.py <<'PY'
from harness.transforms import hellaswag


def process_docs(dataset):
    def one(doc):
        row = hellaswag(dict(doc))
        return {"query": row["query"], "choices": row["choices"], "gold": int(row["label"])}
    return dataset.map(one)
PY
cat > $LMT/hs_all.yaml <<YAML
task: hs_all
dataset_path: parquet
dataset_kwargs: {data_files: {validation: $PWD/bench/data/hellaswag_all.parquet}}
output_type: multiple_choice
validation_split: validation
process_docs: !function utils.process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{gold}}"
doc_to_choice: "choices"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: acc_norm, aggregation: mean, higher_is_better: true}
metadata: {version: 1.0}
YAML
cat > $LMT/cnn_gen.yaml <<YAML
task: cnn_gen
dataset_path: json
dataset_kwargs: {data_files: {test: $PWD/bench/data/cnn_dailymail.jsonl}}
output_type: generate_until
test_split: test
doc_to_text: "[INST] Summarize the following news article:\n\n{{article}}\n\nSummary: [/INST]"
doc_to_target: "{{highlights}}"
generation_kwargs: {until: ["</s>"], max_gen_toks: 128, do_sample: false}
metric_list:
  - {metric: bleu, aggregation: bleu, higher_is_better: true}
metadata: {version: 1.0}
YAML
# lm-eval's batch auto sizes for the model's whole context (40,960 here): 3 rows for
# generate_until, 8 minutes for 250 prompts. So generation runs at batch 64, as the harness's
# own engine benchmark runs HFLM; HellaSwag at batch auto.
LM="python3 -m lm_eval --model hf --model_args pretrained=$MODEL,dtype=bfloat16 --device cuda:0
    --include_path $LMT"
t0=$(stamp)
python3 -m harness run --base $MODEL --dtype bfloat16 --tasks hellaswag \
  --data hellaswag=bench/data/hellaswag_all.parquet --out /tmp/e2e-hs
t1=$(stamp)
python3 -m harness run --base $MODEL --dtype bfloat16 --tasks hellaswag \
  --data hellaswag=bench/data/hellaswag_all.parquet --out /tmp/e2e-hs-again
t2=$(stamp)
$LM --batch_size auto --tasks hs_all --output_path /tmp/lm-hs > /tmp/lm-hs.log 2>&1 || { tail -30 /tmp/lm-hs.log; exit 1; }
t3=$(stamp)
python3 -m harness run --base $MODEL --dtype bfloat16 --tasks cnn_rouge --tasks-dir /tmp/cli-tasks \
  --max-new-tokens 128 --data cnn_rouge=bench/data/cnn_dailymail.jsonl --out /tmp/e2e-cnn
t4=$(stamp)
$LM --batch_size 64 --tasks cnn_gen --output_path /tmp/lm-cnn > /tmp/lm-cnn.log 2>&1 || { tail -30 /tmp/lm-cnn.log; exit 1; }
t5=$(stamp)
python3 - $t0 $t1 $t2 $t3 $t4 $t5 <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")
from common import write_result
t = list(map(float, sys.argv[1:]))
def lm(folder):
    return json.loads(next(Path(folder).rglob("results_*.json")).read_text())["results"]
hs = json.loads(Path("/tmp/e2e-hs/report.json").read_text())["tasks"]["hellaswag"]
again = json.loads(Path("/tmp/e2e-hs-again/report.json").read_text())["tasks"]["hellaswag"]
cnn = json.loads(Path("/tmp/e2e-cnn/report.json").read_text())["tasks"]["cnn_rouge"]
lm_hs = lm("/tmp/lm-hs")["hs_all"]
out = {
    "hellaswag_all_rows": {
        "items": hs["n"], "harness_s": round(t[1] - t[0], 1),
        "harness_again_from_store_s": round(t[2] - t[1], 1),
        "again_examples_from_store": again["timings"]["examples_from_store"],
        "lm_eval_cli_s": round(t[3] - t[2], 1), "ratio": round((t[3] - t[2]) / (t[1] - t[0]), 2),
        "harness_acc": hs["metrics"]["acc"]["value"],
        "harness_acc_norm": hs["metrics"]["acc_norm"]["value"],
        "lm_eval_acc": lm_hs["acc,none"], "lm_eval_acc_norm": lm_hs["acc_norm,none"]},
    "cnn_dailymail_250x128": {
        "prompts": cnn["n"], "harness_s": round(t[4] - t[3], 1),
        "lm_eval_cli_s": round(t[5] - t[4], 1), "ratio": round((t[5] - t[4]) / (t[4] - t[3]), 2),
        "harness_model_seconds": cnn["timings"]["model_seconds"]},
}
write_result("cli", "e2e_qwen3", out)
PY
