"""Fused kernels (harness/kernels.py) under Triton's interpreter, on CPU in float32: they
compute what the modules they replace compute, are used only where a probe shows that, and
leave the model as it was after the engine's call. (Their half-precision rounding, on the GPU,
is checked on the GPU by tests/gpu.)"""

import pytest
import torch

pytest.importorskip("triton")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from harness import kernels  # noqa: E402
from harness.engine import Engine  # noqa: E402
from harness.options import EngineOptions  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.prompts import encode_pair  # noqa: E402
from harness.specs import GenerationSpec  # noqa: E402


@pytest.fixture(autouse=True)
def interpreted(monkeypatch):
    """conftest sets TRITON_INTERPRET=1 before anything imports Triton; mode "on" (ON below,
    EngineOptions(fused="on")) lets the kernels serve CPU tensors through the interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def tiny(cls, cfg_cls, **kw):
    torch.manual_seed(0)
    cfg = cfg_cls(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, **kw)
    model = cls(cfg).eval()
    with torch.no_grad():  # norms away from their all-ones init, so the weight counts
        for m in model.modules():
            if type(m).__name__.endswith("RMSNorm"):
                m.weight.normal_(1.0, 0.3)
    return model


@pytest.mark.parametrize("cls,cfg_cls", [(Qwen3ForCausalLM, Qwen3Config),
                                         (LlamaForCausalLM, LlamaConfig)])
def test_fused_layers_compute_what_the_modules_compute(cls, cfg_cls):
    model = tiny(cls, cfg_cls)
    ids = torch.randint(0, 300, (3, 9))
    with torch.no_grad():
        ref = model(ids).logits
        with kernels.fused(model.model, "on") as kinds:
            got = model(ids).logits
    prefix = cls.__name__.removesuffix("ForCausalLM")
    assert f"{prefix}RMSNorm x{9 if prefix == 'Qwen3' else 5}" in kinds
    assert f"{prefix}MLP x2" in kinds
    assert any(k.endswith("apply_rotary_pos_emb x1") for k in kinds)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # Restored after the block.
    assert all(m._compiled_call_impl is None for m in model.modules())
    mod = __import__(type(model.model.layers[0].self_attn).__module__, fromlist=["x"])
    assert not hasattr(mod.apply_rotary_pos_emb, "__wrapped__") or \
        mod.apply_rotary_pos_emb.__module__ != "harness.kernels"


def test_kernels_match_the_reference_ops_on_strided_inputs():
    x = torch.randn(2, 5, 3, 48)[:, :, 1]  # non-contiguous rows, contiguous last axis
    w = torch.randn(48)
    ref = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(kernels.rms_norm(x, w, 1e-6), ref, rtol=1e-5, atol=1e-6)
    g, u = torch.randn(4, 7, 33), torch.randn(4, 7, 33)
    torch.testing.assert_close(kernels.silu_mul(g, u), torch.nn.functional.silu(g) * u)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q = torch.randn(2, 6, 4, 32).transpose(1, 2)  # [batch, heads, tokens, dim] views
    k = torch.randn(2, 6, 2, 32).transpose(1, 2)
    for cos, sin in [(torch.randn(1, 6, 32), torch.randn(1, 6, 32)),   # batch-broadcast
                     (torch.randn(2, 6, 32), torch.randn(2, 6, 32))]:
        want, got = apply_rotary_pos_emb(q, k, cos, sin), kernels.rope(q, k, cos, sin)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])


class OffsetRMSNorm(torch.nn.Module):
    """Gemma's formula: the weight is an offset from one."""

    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n))
        self.eps = 1e-6

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)


class GeluMLP(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gate_proj = torch.nn.Linear(n, 2 * n)
        self.up_proj = torch.nn.Linear(n, 2 * n)
        self.down_proj = torch.nn.Linear(2 * n, n)
        self.act_fn = torch.nn.SiLU()  # looks like SwiGLU, but the forward uses GELU

    def forward(self, x):
        return self.down_proj(torch.nn.functional.gelu(self.gate_proj(x)) * self.up_proj(x))


def test_modules_that_compute_something_else_keep_their_own_code():
    block = torch.nn.Sequential(OffsetRMSNorm(16), GeluMLP(16))
    with kernels.fused(block, "on") as kinds:
        assert kinds == []
        assert all(m._compiled_call_impl is None for m in block.modules())


def test_switched_off_or_unsupported_installs_nothing():
    model = tiny(Qwen3ForCausalLM, Qwen3Config)
    with kernels.fused(model.model, "off") as kinds:
        assert kinds == []
    with kernels.fused(model.model, "auto") as kinds:  # the default: CUDA only, not on CPU
        assert kinds == []


def test_engine_with_fused_kernels_gives_the_same_results(plain_lm):
    """Scoring (packed choices) and greedy decoding (packed prompt pass, decode steps with
    the grouped attention kernel) with the fused kernels give the unfused engine's
    log-likelihoods and texts."""
    tok = AutoTokenizer.from_pretrained(plain_lm)
    model = AutoModelForCausalLM.from_pretrained(plain_lm, dtype=torch.float32).eval()
    prompts = ["Northwind will open a new factory in", "What are the symptoms of", "The"]
    groups = []
    for p in prompts:
        pairs = [encode_pair(tok, p, c) for c in (" the end", " a river", " yes")]
        groups.append((tuple(pairs[0][0]), [tuple(c) for _, c in pairs]))
    ids = [tok.encode(p) for p in prompts]
    spec = GenerationSpec(max_new_tokens=6)

    def run(mode):
        eng = Engine(model, tok, "cpu", 512, batch_size=3, options=EngineOptions(fused=mode))
        return (eng.loglikelihood_choices(groups, Progress(False), "mc"),
                eng.generate(ids, spec, Progress(False), "g"),
                eng.fused_kernels + [eng.decode_attention])

    fused_mc, fused_text, kinds = run("on")
    assert "LlamaRMSNorm x5" in kinds and "LlamaMLP x2" in kinds
    assert "grouped (Triton)" in kinds  # the decode steps' attention kernel
    plain_mc, plain_text, none = run("off")
    assert none == ["sdpa"]
    assert fused_text == plain_text
    assert [r.logprob for x in fused_mc for r in x] == pytest.approx(
        [r.logprob for x in plain_mc for r in x], abs=1e-4)
    assert [r.is_greedy for x in fused_mc for r in x] == [r.is_greedy for x in plain_mc
                                                          for r in x]


def test_target_logprobs_match_log_softmax_and_first_argmax():
    torch.manual_seed(0)
    logits = torch.randn(6, 9000) * 3
    logits[2, 7] = logits[2, 8000] = 50.0  # a tie: torch.argmax picks the first
    targets = torch.tensor([1, 4500, 8000, 8999, 0, 7])
    lp, hit = kernels.target_logprobs(logits, targets, "on")
    want = torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(lp, want, rtol=1e-5, atol=1e-5)
    assert hit.tolist() == (logits.argmax(-1) == targets).tolist()
    lp, hit = kernels.target_logprobs(logits, torch.tensor([1, 4500, 7, 8999, 0, 7]), "on")
    assert hit[2] and not hit[5]


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (6, 6), (8, 1)])
def test_decode_attention_matches_softmax_over_each_rows_keys(heads, kv_heads):
    """One query token per row over the row's first `used` keys (from a [rows, slots, kv
    heads, dim] cache seen as [rows, kv heads, slots, dim], as the engine hands it over),
    against float64 softmax attention; grouped query heads share their K/V head."""
    torch.manual_seed(0)
    rows, slots, d = 3, 150, 16
    q = torch.randn(rows, 1, heads, d).transpose(1, 2)[:, :, 0]  # [rows, heads, d], strided
    cache_k = torch.randn(rows, slots, kv_heads, d)
    cache_v = torch.randn(rows, slots, kv_heads, d)
    used = torch.tensor([150, 70, 1], dtype=torch.int32)
    key, value = cache_k.transpose(1, 2), cache_v.transpose(1, 2)
    assert kernels.decode_attention_serves(q, key, "on")
    out = kernels.decode_attention(q, key, value, used, 0.3)
    group = heads // kv_heads
    for r in range(rows):
        n = int(used[r])
        k = key[r, :, :n].double().repeat_interleave(group, 0)  # [heads, n, d]
        v = value[r, :, :n].double().repeat_interleave(group, 0)
        w = torch.softmax((q[r].double()[:, None] @ k.transpose(1, 2))[:, 0] * 0.3, -1)
        ref = (w[:, None] @ v)[:, 0]
        assert torch.allclose(out[r].double(), ref, atol=1e-5), (r, (out[r] - ref).abs().max())
