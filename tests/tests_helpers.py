"""Helpers shared by tests."""

import json
import shutil

from harness.gguf_export import QWEN2_SPLIT


def strip_report(report: dict) -> dict:
    """A report without what may differ between identical runs: timings and timestamps."""
    report = json.loads(json.dumps(report))
    report.pop("created_at", None)
    report.pop("timings", None)
    for run in report.get("runs", [report]):
        for task in run.get("tasks", {}).values():
            task.pop("timings", None)
    return report


def qwen_model(tiny_lm, out, arch, qwen_split=True):
    """A tiny random Qwen2 or Qwen3 model (tied embeddings) with the tiny tokenizer, its
    pre-tokenizer made Qwen's (unless qwen_split is False)."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, tie_word_embeddings=True,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        # head_dim 32: neither hidden / heads nor Qwen3Config's default of 128, which
        # transformers' GGUF reader assumes; the harness reads the file's key_length
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=32))
    model.save_pretrained(out)
    for f in tiny_lm.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    if qwen_split:  # the Qwen family's pre-tokenizer (digits one by one), as its GGUF declares
        spec = json.loads((out / "tokenizer.json").read_text())
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}
        (out / "tokenizer.json").write_text(json.dumps(spec))
    return out



def rescaled_llama(tiny_lm, out, rope):
    """The tiny llama with other rope parameters (same weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_lm)
    config.rope_parameters = {"rope_theta": 10000.0, **rope}
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, config=config)
    model.save_pretrained(out)
    for f in tiny_lm.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


def compare_args(example_data, minilm) -> list[str]:
    """The tasks, data and BERTScore model the comparison fixtures evaluate (16 rows each)."""
    return ["--tasks", "cnn_dailymail,hellaswag", "--data",
            f"cnn_dailymail={example_data['cnn_dailymail']}", "--data",
            f"hellaswag={example_data['hellaswag']}", "--limit", "16",
            "--max-new-tokens", "8", "--bertscore-model", str(minilm), "--bertscore-layers",
            "6"]


# The tiny trainer recipe of tests/test_train.py and tests/test_trackers.py.
TRAIN_RECIPE = """\
name: tiny-news
base: {base}
task: cnn_dailymail
train: {{split: train}}
eval: {{split: validation}}
quantization: {quant}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj, up_proj, down_proj]}}
training:
  max_steps: {steps}
  micro_batch_size: 4
  learning_rate: 3.0e-3
  warmup_steps: 5
  eval_every: 10
  save_every: 10
  log_every: 5
  max_length: 512
  optimizer: adamw_torch
  precision: fp32
"""


def write_recipe(folder, base, quant="none", steps=40):
    path = folder / "recipe.yaml"
    path.write_text(TRAIN_RECIPE.format(base=base, quant=quant, steps=steps))
    return path
