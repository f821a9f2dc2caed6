"""Correctness of the GPU-only paths, on the GPU: the flash variable-length decode attention
against a float64 reference, CUDA-graph greedy decoding against transformers' `generate`
(fp32: must be identical; bf16: agreement), packed multiple choice against one row per
continuation (fp32), and the fused kernels (harness/kernels.py) against the modules they
replace (bf16: share of bit-equal elements, and end to end with and without them).

    python bench/gpu_checks.py
"""

from __future__ import annotations

import os
from pathlib import Path

from common import DATA, DEVICE, read_jsonl, tokenizer, write_result


def attention_check(heads: int = 16, kv: int = 8) -> dict:
    """harness_greedy's decode step (one query per row, per-row K/V lengths) vs float64."""
    import torch

    from harness import engine

    engine._register_attention()
    from transformers import AttentionInterface

    fn = AttentionInterface()["harness_greedy"]
    torch.manual_seed(0)
    rows, dim, slots = 128, 128, 832
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
    for name in ("grouped", "varlen", "sdpa"):
        os.environ["HARNESS_DECODE_ATTN"] = name
        engine._ATTN_STATE.clear()
        if name == "grouped":
            engine._ATTN_STATE.update(grouped=True, used=(at + 1).to(torch.int32))
        if name == "varlen":
            cu = torch.arange(rows + 1, dtype=torch.int32, device=DEVICE)
            engine._ATTN_STATE.update(fn=engine._varlen_decode(),
                                      used=(at + 1).to(torch.int32), cu_q=cu, cu_k=cu * slots)
            if engine._ATTN_STATE["fn"] is None:
                out[name] = "not available in this torch"
                continue
        got, _ = fn(Module(), q, k, v, mask, scaling=dim ** -0.5)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            fn(Module(), q, k, v, mask, scaling=dim ** -0.5)
        end.record()
        torch.cuda.synchronize()
        kv_bytes = 2 * int((at + 1).sum()) * kv * dim * 2
        out[name] = {"max_abs_err_vs_float64": float((got.double() - ref).abs().max()),
                     "us_per_call": round(start.elapsed_time(end) / 50 * 1e3, 1),
                     "kv_TBps": round(kv_bytes / (start.elapsed_time(end) / 50 * 1e-3) / 1e12,
                                      2)}
    del os.environ["HARNESS_DECODE_ATTN"]
    engine._ATTN_STATE.clear()
    return out


def kernels_check() -> dict:
    """Each fused kernel against the module (or function) it replaces, on Qwen3-1.7B-shaped
    bf16 tensors: share of bit-equal elements, largest difference, and time per call."""
    import torch
    from transformers.models.qwen3 import modeling_qwen3 as q3

    from harness import kernels

    torch.manual_seed(0)
    bf = dict(device=DEVICE, dtype=torch.bfloat16)

    def timed(fn, reps=20):
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return round(start.elapsed_time(end) / reps, 4)

    def compare(name, ours, ref):
        a, b = ours(), ref()
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        equal = sum(int((x == y).sum()) for x, y in zip(a, b, strict=True))
        total = sum(x.numel() for x in a)
        return {"bit_equal": f"{equal / total:.6f}",
                "max_abs_diff": max(float((x.float() - y.float()).abs().max())
                                    for x, y in zip(a, b, strict=True)),
                "fused_ms": timed(ours), "eager_ms": timed(ref)}

    out = {}
    for n, shape in (("rms_norm hidden [8192, 2048]", (8192, 2048)),
                     ("rms_norm q_norm [8192, 16, 128]", (8192, 16, 128))):
        norm = q3.Qwen3RMSNorm(shape[-1], eps=1e-6).to(**bf)
        with torch.no_grad():
            norm.weight.normal_(1.0, 0.2)
        x = torch.randn(*shape, **bf) * 2
        with torch.no_grad():
            out[n] = compare(n, lambda x=x, m=norm: kernels.rms_norm(x, m.weight, 1e-6),
                             lambda x=x, m=norm: m(x))
    g, u = torch.randn(8192, 6144, **bf) * 2, torch.randn(8192, 6144, **bf)
    out["silu_mul [8192, 6144]"] = compare(
        "silu", lambda: kernels.silu_mul(g, u), lambda: torch.nn.functional.silu(g) * u)
    q = torch.randn(16, 512, 16, 128, **bf).transpose(1, 2)
    k = torch.randn(16, 512, 8, 128, **bf).transpose(1, 2)
    rot = q3.Qwen3RotaryEmbedding(q3.Qwen3Config(head_dim=128, rope_theta=1e6)).to(DEVICE)
    cos, sin = rot(q, torch.arange(512, device=DEVICE)[None].expand(16, -1))
    logits = torch.randn(4096, 151936, **bf) * 4
    targets = torch.randint(0, 151936, (4096,), device=DEVICE)
    targets[::2] = logits[::2].float().argmax(-1)  # half the rows: the target is the argmax

    def torch_head():
        f = logits.float()
        return (f.gather(1, targets[:, None])[:, 0] - torch.logsumexp(f, -1),
                f.argmax(-1) == targets)
    a, b = kernels.target_logprobs(logits, targets), torch_head()
    out["target_logprobs [4096, 151936]"] = {
        "max_abs_diff": float((a[0] - b[0]).abs().max()),
        "greedy_equal": f"{int((a[1] == b[1]).sum())}/4096",
        "fused_ms": timed(lambda: kernels.target_logprobs(logits, targets)),
        "eager_ms": timed(torch_head)}
    out["rope q [16, 16, 512, 128], k [16, 8, 512, 128]"] = compare(
        "rope", lambda: kernels.rope(q, k, cos, sin),
        lambda: q3.apply_rotary_pos_emb(q, k, cos, sin))
    return out


def fused_end_to_end(tok) -> dict:
    """bf16 small model: multiple choice and greedy texts with and without the fused kernels
    (HARNESS_FUSED=0)."""
    import torch
    from generation_bench import prompts_for

    from harness.engine import Engine
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    groups = hellaswag_groups(tok, 300)
    prompts = [p[-300:] for p in prompts_for(tok, 48)]
    m = small_model(torch.bfloat16)
    res = {}
    for setting in ("auto", "0"):
        os.environ["HARNESS_FUSED"] = setting
        eng = Engine(m, tok, DEVICE, 4096, batch_size=16)
        mc = eng.loglikelihood_choices(groups, Progress(False), "mc")
        texts = eng.generate(prompts, GenerationSpec(max_new_tokens=40), Progress(False), "g")
        res[setting] = (mc, texts, eng.fused_kernels)
    del os.environ["HARNESS_FUSED"]
    (a, ta, kinds), (b, tb, _) = res["auto"], res["0"]
    la = [r.logprob for x in a for r in x]
    lb = [r.logprob for x in b for r in x]
    pick = [max(range(4), key=lambda j, i=i: la[4 * i + j]) for i in range(len(groups))]
    pick_b = [max(range(4), key=lambda j, i=i: lb[4 * i + j]) for i in range(len(groups))]
    return {"fused": kinds,
            "choices_equal": f"{sum(x == y for x, y in zip(pick, pick_b, strict=True))}"
                             f"/{len(groups)}",
            "max_abs_logprob_diff": max(abs(x - y) for x, y in zip(la, lb, strict=True)),
            "texts_equal": f"{sum(x == y for x, y in zip(ta, tb, strict=True))}/{len(ta)}"}


def hellaswag_groups(tok, n: int) -> list:
    from harness.data import load_task_data
    from harness.engine import encode_pair
    from harness.prompts import render
    from harness.registry import discover_tasks

    task = discover_tasks()["hellaswag"]
    rows = read_jsonl(DATA / "hellaswag.jsonl", n)
    for r in rows:
        r["ctx_a"], r["ctx_b"] = r["ctx"], ""
    path = Path("/tmp/hs_check.jsonl")
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task_data(task, str(path), n)
    groups = []
    for ex in data.examples:
        ctx = render(task.prompt, ex.fields)
        pairs = [encode_pair(tok, ctx, task.target_delimiter + c) for c in ex.fields["choices"]]
        groups.append((tuple(pairs[0][0]), [tuple(c) for _, c in pairs]))
    return groups


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

    from harness.engine import Engine, LoglikelihoodRequest
    from harness.progress import Progress

    groups = hellaswag_groups(tok, 300)
    m = small_model(torch.float32)
    packed = Engine(m, tok, DEVICE, 4096).loglikelihood_choices(groups, Progress(False), "mc")
    flat = [LoglikelihoodRequest(c, x) for c, xs in groups for x in xs]
    single = Engine(m, tok, DEVICE, 4096, batch_size=32).loglikelihood(flat, Progress(False), "l")
    ref = [r.logprob for r in single]

    def versus_ref(results):
        got = [r.logprob for item in results for r in item]
        pick = [max(range(4), key=lambda j, i=i: got[4 * i + j]) for i in range(len(groups))]
        pick_ref = [max(range(4), key=lambda j, i=i: ref[4 * i + j]) for i in range(len(groups))]
        return {"max_abs_logprob_diff": max(abs(a - b) for a, b in zip(got, ref, strict=True)),
                "choices_equal": f"{sum(a == b for a, b in zip(pick, pick_ref, strict=True))}"
                                 f"/{len(groups)}"}

    out = {"items": len(groups), "fp32 packed rows vs fp32 one row per continuation":
           versus_ref(packed)}
    # bf16, the same weights: flash segments (the CUDA default) and masked rows, each against
    # the fp32 reference; a wrong segment layout would show as a far larger error.
    mb = small_model(torch.bfloat16)
    for name in ("flash", "mask"):
        os.environ["HARNESS_CHOICES_ATTN"] = name
        res = Engine(mb, tok, DEVICE, 4096).loglikelihood_choices(groups, Progress(False), "mc")
        out[f"bf16 {name} vs fp32 one row per continuation"] = versus_ref(res)
    del os.environ["HARNESS_CHOICES_ATTN"]
    return out


def main() -> None:
    tok = tokenizer(Path("/tmp/bench-tok"))
    result = {"decode_attention": {"16 query / 8 K/V heads": attention_check(16, 8),
                                   "32 query / 8 K/V heads": attention_check(32, 8)},
              "generation": generation_check(tok),
              "multiple_choice_fp32": choices_check(tok)}
    if DEVICE == "cuda":
        result["fused_kernels"] = kernels_check()
    result["fused_end_to_end_bf16"] = fused_end_to_end(tok)
    write_result("gpu_checks", result)


if __name__ == "__main__":
    main()
