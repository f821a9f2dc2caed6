"""Correctness of the GPU-only paths, on the GPU: the flash variable-length decode attention
against a float64 reference, CUDA-graph greedy decoding against transformers' `generate`
(fp32: must be identical; bf16: agreement), and packed multiple choice against one row per
continuation (fp32).

    python bench/gpu_checks.py
"""

from __future__ import annotations

import os
from pathlib import Path

from common import DATA, DEVICE, read_jsonl, tokenizer, write_result


def attention_check() -> dict:
    """harness_greedy's decode step (one query per row, per-row K/V lengths) vs float64."""
    import torch

    from harness import engine

    engine._register_attention()
    from transformers import AttentionInterface

    fn = AttentionInterface()["harness_greedy"]
    torch.manual_seed(0)
    rows, heads, kv, dim, slots = 64, 16, 8, 128, 832
    at = torch.randint(10, slots - 1, (rows,), device=DEVICE)
    q = torch.randn(rows, heads, 1, dim, device=DEVICE, dtype=torch.bfloat16)
    store_k = torch.randn(rows, slots, kv, dim, device=DEVICE, dtype=torch.bfloat16)
    store_v = torch.randn(rows, slots, kv, dim, device=DEVICE, dtype=torch.bfloat16)
    k, v = store_k.transpose(1, 2), store_v.transpose(1, 2)

    class Module:
        num_key_value_groups = heads // kv

    slot = torch.arange(slots, device=DEVICE)
    mask = (slot[None] <= at[:, None])[:, None, None, :]
    # Reference: float64, K/V repeated per query head.
    kr = k.double().repeat_interleave(heads // kv, 1)
    vr = v.double().repeat_interleave(heads // kv, 1)
    scores = (q.double() @ kr.transpose(-1, -2)) * dim ** -0.5
    ref = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ vr  # [rows, h, 1, d]
    ref = ref.transpose(1, 2)
    out = {}
    for name in ("varlen", "sdpa"):
        os.environ["HARNESS_DECODE_ATTN"] = name
        engine._DECODE.clear()
        if name == "varlen":
            engine._DECODE.update(fn=engine._varlen_decode(), used=(at + 1).to(torch.int32),
                                  cu_q=torch.arange(rows + 1, dtype=torch.int32,
                                                    device=DEVICE),
                                  cu_k=torch.arange(rows + 1, dtype=torch.int32,
                                                    device=DEVICE) * slots)
            if engine._DECODE["fn"] is None:
                out[name] = "not available in this torch"
                continue
        got, _ = fn(Module(), q, k, v, mask, scaling=dim ** -0.5)
        out[name] = {"max_abs_err_vs_float64": float((got.double() - ref).abs().max())}
    del os.environ["HARNESS_DECODE_ATTN"]
    engine._DECODE.clear()
    return out


def small_model(dtype):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=32000, hidden_size=512, intermediate_size=1024,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                      head_dim=64, tie_word_embeddings=False, max_position_embeddings=4096,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device(DEVICE):
        m = Qwen3ForCausalLM(cfg)
    with torch.no_grad():  # peaked logits: few near-ties between the top two tokens
        m.lm_head.weight.normal_(0.0, 0.5)
    return m.to(dtype).eval()


def generation_check(tok) -> dict:
    import torch
    from generation_bench import prompts_for

    from harness.engine import Engine
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    prompts = [p[-300:] for p in prompts_for(tok, 48)]
    out = {}
    for dtype, compile in ((torch.float32, False), (torch.float32, True),
                           (torch.bfloat16, False)):
        m = small_model(dtype)
        eng = Engine(m, tok, DEVICE, 4096, batch_size=16, compile=compile)
        ours = eng.generate(prompts, GenerationSpec(max_new_tokens=40), Progress(False), "g")
        theirs = []
        for p in prompts:  # one at a time: no padding on transformers' side
            with torch.no_grad():
                o = m.generate(torch.tensor([p], device=DEVICE), max_new_tokens=40,
                               do_sample=False, pad_token_id=0, eos_token_id=tok.eos_token_id)
            theirs.append(tok.decode(o[0, len(p):], skip_special_tokens=True).strip())
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        out[f"{dtype}{', --compile' if compile else ''}"] = {"decode_mode": eng.decode_mode,
                           "decode_attention": eng.decode_attention,
                           "texts_equal_to_generate_one_at_a_time": f"{same}/{len(prompts)}"}
    return out


def choices_check(tok) -> dict:
    import torch

    from harness.data import load_task_data
    from harness.engine import Engine, LoglikelihoodRequest, encode_pair
    from harness.progress import Progress
    from harness.prompts import render
    from harness.registry import discover_tasks

    task = discover_tasks()["hellaswag"]
    rows = read_jsonl(DATA / "hellaswag.jsonl", 300)
    for r in rows:
        r["ctx_a"], r["ctx_b"] = r["ctx"], ""
    path = Path("/tmp/hs_check.jsonl")
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task_data(task, str(path), 300)
    groups = []
    for ex in data.examples:
        ctx = render(task.prompt, ex.fields)
        pairs = [encode_pair(tok, ctx, task.target_delimiter + c) for c in ex.fields["choices"]]
        groups.append((tuple(pairs[0][0]), [tuple(c) for _, c in pairs]))
    m = small_model(torch.float32)
    packed = Engine(m, tok, DEVICE, 4096).loglikelihood_choices(groups, Progress(False), "mc")
    flat = [LoglikelihoodRequest(c, x) for c, xs in groups for x in xs]
    single = Engine(m, tok, DEVICE, 4096, batch_size=32).loglikelihood(flat, Progress(False), "l")
    got = [r.logprob for item in packed for r in item]
    ref = [r.logprob for r in single]
    pick = [max(range(4), key=lambda j, i=i: got[4 * i + j]) for i in range(len(groups))]
    pick_ref = [max(range(4), key=lambda j, i=i: ref[4 * i + j]) for i in range(len(groups))]
    return {"items": len(groups),
            "max_abs_logprob_diff": max(abs(a - b) for a, b in zip(got, ref, strict=True)),
            "choices_equal": f"{sum(a == b for a, b in zip(pick, pick_ref, strict=True))}"
                             f"/{len(groups)}"}


def main() -> None:
    tok = tokenizer(Path("/tmp/bench-tok"))
    result = {"decode_attention": attention_check(), "generation": generation_check(tok),
              "multiple_choice_fp32": choices_check(tok)}
    write_result("gpu_checks", result)


if __name__ == "__main__":
    main()
