"""QLoRA training (seed 000's recipe) on PubMed-length rows at max length 2048: the harness
trainer vs a plain transformers.Trainer + peft baseline, same model, rows and settings.

    python bench/train_bench.py [--steps 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import replace
from pathlib import Path

from common import DATA, QWEN3_1_7B, SMOKE, model, save_model, tokenizer, write_result

from harness.train.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "adapters" / "qwen3-1.7b-pubmed.yaml"


def rows(tok, spec):
    from harness.data import load_task_data
    from harness.registry import discover_tasks
    from harness.train.collate import build_train_examples

    task = discover_tasks()["pubmed"]
    data = load_task_data(task, str(DATA / "pubmed_train.jsonl"), None)
    built, stats = build_train_examples(task, data.examples, tok, spec.training.max_length)
    return built, stats


def baseline(base: Path, tok, examples, steps: int, warmup: int) -> dict:
    """transformers.Trainer + peft: NF4 double quant bf16, r=8 q/v, batch 1, paged_adamw_8bit,
    gradient checkpointing, lr 2e-4 cosine, warmup 250: seed 000's settings."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        BitsAndBytesConfig,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    m = AutoModelForCausalLM.from_pretrained(base, quantization_config=q,
                                             device_map={"": "cpu" if SMOKE else 0})
    m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=True)
    m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                     target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    data = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (torch.tensor(b["input_ids"]),
                                                      torch.tensor(b["labels"]), 1)
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    args = TrainingArguments(output_dir="/tmp/baseline", per_device_train_batch_size=1,
                             gradient_accumulation_steps=1,
                             optim="adamw_torch" if SMOKE else "paged_adamw_8bit",
                             learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=250,
                             bf16=not SMOKE, gradient_checkpointing=True, max_steps=steps,
                             logging_steps=10, save_strategy="no", report_to=[], seed=42,
                             dataloader_num_workers=0, remove_unused_columns=False)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=m, args=args, train_dataset=data, data_collator=collate,
                      callbacks=[Clock()])
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    timed = times[warmup:]
    # Rows are shuffled by the Trainer; nearly all are cut to max_length, so the mean row
    # length is the tokens per step (batch 1).
    mean_tokens = sum(len(e.input_ids) for e in examples) / len(examples)
    out = {"engine": "transformers.Trainer + peft (baseline)",
           "s_per_step": round(sum(timed) / len(timed), 4),
           "tokens_per_s": round(mean_tokens / (sum(timed) / len(timed))),
           "peak_gib": round(peak, 2), "steps": steps,
           "losses": [round(x["loss"], 4) for x in trainer.state.log_history if "loss" in x]}
    del trainer, m
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def ours(base: Path, examples_stats, steps: int, warmup: int, compiled: bool,
         fraction: float = 1.0) -> dict:
    import shutil

    import torch

    from harness.train.trainer import train

    shutil.rmtree("/tmp/ours-adapter", ignore_errors=True)

    spec = load_recipe(RECIPE, [f"base={base}", f"training.max_steps={steps}",
                                "training.log_every=1", "training.eval_every=100000",
                                "training.save_every=100000", "out=/tmp/ours-adapter",
                                f"training.compile={str(compiled).lower()}",
                                f"training.checkpoint_fraction={fraction}"]
                       + (["training.optimizer=adamw_torch", "training.precision=fp32"]
                          if SMOKE else []))
    spec = replace(spec, eval=replace(spec.eval, limit=2))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = train(spec, {"pubmed": str(DATA / "pubmed_train.jsonl"),
                       "pubmed:eval": str(DATA / "pubmed_validation.jsonl")})
    wall = time.perf_counter() - t
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "tokens_per_s" in r][warmup + (10 if compiled else 0):]
    summary = json.loads((out / "train_summary.json").read_text())
    tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
    name = "harness train (target-only LM head" + (", compiled layers" if compiled else "") + (
        f", {fraction:.0%} of layers checkpointed)" if fraction < 1 else ")")
    return {"engine": name, "tokens_per_s": round(tps),
            "peak_gib": round(max([r["peak_memory_gib"] for r in log
                                   if r.get("peak_memory_gib")] or [0.0]), 2),
            "steps": steps, "wall_s_incl_load_and_eval": round(wall, 1),
            "losses": [round(r["loss"], 4) for r in log if "loss" in r][::10],
            "train_examples": summary["train_examples"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0],
                    help="checkpoint_fraction values to run (compiled)")
    args = ap.parse_args()
    tok = tokenizer(Path("/tmp/bench-tok"))
    base = Path("/tmp/tiny-random" if SMOKE else "/tmp/qwen3-1.7b-random")
    if not (base / "config.json").exists():
        m = model(QWEN3_1_7B)
        save_model(m, tok, base)
        del m
        gc.collect()
    spec = load_recipe(RECIPE, [])
    examples, stats = rows(tok, spec)
    mean_len = sum(len(e.input_ids) for e in examples) / len(examples)
    target_frac = sum(sum(1 for x in e.labels if x != -100) for e in examples) / sum(
        len(e.input_ids) for e in examples)
    results = [ours(base, stats, args.steps, args.warmup, compiled=True, fraction=f)
               for f in args.fractions]
    results += [ours(base, stats, args.steps, args.warmup, compiled=False),
                baseline(base, tok, examples, args.steps, args.warmup)]
    within = [r for r in results[:-1] if r["peak_gib"] <= results[-1]["peak_gib"]]
    best = max(within, key=lambda r: r["tokens_per_s"])
    ratio = best["tokens_per_s"] / results[-1]["tokens_per_s"]
    write_result("train", "qwen3_nf4", {"rows": len(examples), "mean_row_tokens": round(mean_len),
                                     "target_token_fraction": round(target_frac, 3),
                                     "build_stats": stats.to_json(), "results": results,
                                     "best_within_baseline_memory": best["engine"],
                                     "speedup_tokens_per_s": round(ratio, 2)})


if __name__ == "__main__":
    main()
