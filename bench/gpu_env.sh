# Sourced by the bench scripts on the GPU machine (repo root, .whl and bench/data carried):
# the wheels it lacks installed to /tmp/site, the environment every script runs under, and
# helpers for the scripts that evaluate through the CLI.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl >/dev/null 2>&1 || true
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HARNESS_NO_PROGRESS=1

# The random-weight Qwen3-1.7B and the bench tokenizer saved to /tmp/qwen3-random.
save_qwen3() {
  (cd bench && python3 -c "
from pathlib import Path
from common import QWEN3_1_7B, model, save_model, tokenizer
save_model(model(QWEN3_1_7B), tokenizer(Path('/tmp/bench-tok')), Path('/tmp/qwen3-random'))
")
}

# The cnn_dailymail task scored by ROUGE only (BERTScore's model is not on that machine), as
# task cnn_rouge in the folder $1.
write_cnn_rouge_task() {
  mkdir -p "$1"
  sed -e 's/^name: cnn_dailymail/name: cnn_rouge/' -e 's/^metrics: .*/metrics: [rouge, words]/' \
    harness/tasks/cnn_dailymail.yaml > "$1/cnn_rouge.yaml"
}

# The random-weight Llama-3-8B (16 GB in bf16) saved to /tmp/llama3-random.
save_llama3() {
  (cd bench && python3 -c "
from pathlib import Path
from common import LLAMA3_8B, model, save_model, tokenizer
save_model(model(LLAMA3_8B, kind='llama'), tokenizer(Path('/tmp/bench-tok')), Path('/tmp/llama3-random'))
")
}
