"""Summarization generation: our engine vs lm-eval HFLM generate_until vs plain generate.

128 CNN/DailyMail prompts (the cnn_dailymail task's template, articles cut to fit), 128 new
tokens, greedy, same model and process. python bench/generation_bench.py [--prompts 128]
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from common import (
    DATA,
    DEVICE,
    LLAMA3_8B,
    QWEN3_1_7B,
    Timer,
    model,
    read_jsonl,
    tokenizer,
    write_result,
)

NEW = 128


def prompts_for(tok, n: int) -> list[tuple[int, ...]]:
    from harness.data import build_examples
    from harness.prompts import PromptBuilder
    from harness.registry import discover_tasks

    task = discover_tasks()["cnn_dailymail"]
    data = build_examples(task, read_jsonl(DATA / "cnn_dailymail.jsonl"), "bench", n)
    builder = PromptBuilder(task, tok)
    return [builder.build(e.fields, 2048 - NEW, e.id).ids for e in data.examples]


def count_new(tok, texts: list[str]) -> int:
    return sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)


def main() -> None:
    import torch

    if DEVICE == "cpu":  # smoke test: no CUDA calls
        torch.cuda.empty_cache = lambda: None
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--arch", choices=["qwen3", "llama3"], default="qwen3")
    ap.add_argument("--core", action="store_true",
                    help="only the peers, the default engine (two calls), unfused, prompt pass")
    args = ap.parse_args()
    tok = tokenizer(Path("/tmp/bench-tok"))
    m = model(QWEN3_1_7B if args.arch == "qwen3" else LLAMA3_8B,
              kind="qwen3" if args.arch == "qwen3" else "llama")
    # Random weights rarely pick EOS, but make sure every row runs the full 128 tokens.
    m.generation_config.eos_token_id = None
    prompts = prompts_for(tok, args.prompts)
    texts = [tok.decode(p, skip_special_tokens=False) for p in prompts]
    results = []

    def plain(batch: int, rows=None):
        """model.generate on the same token ids, left-padded, in prompt order."""
        outs = []
        rows = rows or prompts
        for i in range(0, len(rows), batch):
            chunk = rows[i: i + batch]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), tok.pad_token_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, p in enumerate(chunk):
                ids[r, width - len(p):] = torch.tensor(p)
                mask[r, width - len(p):] = 1
            with torch.no_grad():
                out = m.generate(input_ids=ids.to(DEVICE), attention_mask=mask.to(DEVICE),
                                 max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            outs += tok.batch_decode(out[:, width:], skip_special_tokens=True)
        return outs

    plain(8, prompts[:8])  # warm-up (not timed)
    with Timer() as t:
        plain_out = plain(args.batch)
    n_tok = len(prompts) * NEW
    results.append({"engine": f"plain model.generate, batch {args.batch}", "seconds":
                    round(t.seconds, 2), "tokens_per_s": round(n_tok / t.seconds),
                    "peak_gib": round(t.peak_gib, 1)})

    # HFLM stops a row when its text contains the EOS string; a random model emits "</s>"
    # now and then, so give HFLM a tokenizer whose EOS is a token the prompts never hold and
    # the model is barred from (min_new_tokens), to make it generate all 128 tokens too.
    import copy

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    hf_tok = copy.deepcopy(tok)
    hf_tok.add_special_tokens({"eos_token": "<|bench-never|>"})
    lm = HFLM(pretrained=m, tokenizer=hf_tok, batch_size=args.batch, max_length=4096)
    reqs = [Instance(request_type="generate_until", doc={}, idx=i,
                     arguments=(text, {"until": ["<never-stop>"], "max_gen_toks": NEW,
                                       "do_sample": False, "min_new_tokens": NEW}))
            for i, text in enumerate(texts)]
    with Timer() as t:
        hf_out = lm.generate_until(reqs)
    counted = count_new(tok, hf_out)
    results.append({"engine": f"lm-eval HFLM generate_until, batch {args.batch}",
                    "seconds": round(t.seconds, 2), "tokens_per_s": round(counted / t.seconds),
                    "new_tokens_counted (re-tokenized text)": counted,
                    "peak_gib": round(t.peak_gib, 1)})
    del lm
    gc.collect()
    torch.cuda.empty_cache()

    from harness.engine import Engine
    from harness.options import EngineOptions
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    def ours(label: str, batch, opts: dict, model_=None, new: int = NEW) -> None:
        eng = Engine(model_ or m, tok, DEVICE, 4096, batch_size=batch,
                     options=EngineOptions(**opts))
        with Timer() as t:
            out = eng.generate(prompts, GenerationSpec(max_new_tokens=new), Progress(False),
                               "gen")
        agree = sum(a.strip() == b.strip() for a, b in zip(out, plain_out, strict=True))
        n = len(prompts) * new
        results.append({"engine": label, "seconds": round(t.seconds, 2),
                        "tokens_per_s": round(n / t.seconds), "peak_gib": round(t.peak_gib, 1),
                        "decode_mode": eng.decode_mode,
                        "batches_planned": eng.generate_batches,
                        "decode_attention": eng.decode_attention,
                        "fused": eng.fused_kernels,
                        "texts_equal_to_plain_generate": f"{agree}/{len(out)}"})

    if args.core:
        ours("harness decode loop + CUDA graph, batch auto, first call", None, {})
        ours("harness decode loop + CUDA graph, batch auto, second call", None, {})
        ours("harness decode loop + CUDA graph, unfused (HARNESS_FUSED=0)", None,
             {"fused": "off"})
        ours("harness, prompt pass only (1 new token), batch auto", None, {}, new=1)
    else:
        ours(f"harness, transformers generate path, batch {args.batch}", args.batch,
             {"greedy_loop": False})
        ours("harness decode loop, eager steps, batch auto", None, {"cuda_graphs": False})
        ours("harness decode loop + CUDA graph, batch auto, first call", None, {})
        ours("harness decode loop + CUDA graph, batch auto, second call", None, {})
        ours("harness decode loop + CUDA graph, unfused (HARNESS_FUSED=0)", None,
             {"fused": "off"})
        ours("harness, prompt pass only (1 new token), batch auto", None, {}, new=1)
        ours("harness, prompt pass only, unfused (HARNESS_FUSED=0)", None, {"fused": "off"},
             new=1)
        ours(f"harness decode loop + CUDA graph, batch {args.batch}", args.batch, {})
    # With a LoRA adapter (r=8 on q/v), un-merged, as the harness evaluates adapters.
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                        task_type="CAUSAL_LM")).eval()
    if not args.core:
        ours("harness decode loop + CUDA graph, batch auto, LoRA r=8 un-merged", None, {},
             lora)
    m = lora.unload()
    weights = sum(p.numel() * p.element_size() for p in m.parameters())
    floor = {"weights_bytes": weights, "decode_steps_at_batch_128": NEW,
             "floor_s_weights_only": round(NEW * weights / 4.3e12, 3)}
    write_result("generation", args.arch, {"prompts": len(prompts), "new_tokens": NEW,
                                      "mean_prompt_tokens": sum(map(len, prompts)) / len(prompts),
                                      "results": results, "floor": floor})


if __name__ == "__main__":
    main()
