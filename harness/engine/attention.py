"""The engine's attention functions, registered with transformers, and the typed per-call
context they read.

The engine switches a model's attention to one of them (`using`, which restores the model's
own on exit) and passes an `AttentionContext` as the `harness_attention` keyword of the
decoder call; transformers hands the decoder's keywords down to the attention function. So
there is no module-level state: each call carries its own context, a frozen object.

- "harness_greedy", for `greedy.greedy`:
  - the prompt pass (`Prefill`): the prompts packed into one sequence, attention causal
    within each prompt — on CUDA in half precision flash attention's variable-length kernel
    over the prompts' boundaries (grouped K/V heads native), else causal sdpa prompt by prompt;
  - a decode step (`Decode`), one query token per row: where the Triton kernel serves (CUDA,
    half precision, fused kernels not off), `kernels.decode_attention`, each row's query heads
    that share a K/V head reading its first `used` slots once; else on CUDA in half precision
    flash attention's variable-length kernel with per-row lengths (`varlen_decode`);
    elsewhere sdpa with each K/V head's query heads folded into the query axis, so K/V are
    read once, under the [rows, 1, 1, slots] mask.
- "harness_choices", for `choices.flash_segments` (`Segments`): packed multiple-choice
  segments, each segment's keys gathered from the packed K/V.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.engine.arch import hidden_dtype
from harness.engine.batching import _shape

KEYWORD = "harness_attention"  # the decoder-call keyword that carries the context


@dataclass(frozen=True)
class Prefill:
    """The prompt pass: cumulative bounds of the packed prompts (on the device), the longest
    prompt, and each prompt's (start, end).
    """

    cu: Any
    longest: int
    spans: list[tuple[int, int]]


@dataclass(frozen=True)
class Decode:
    """A decode step. `used` (each row's filled slots), `cu_q` and `cu_k` are fixed device
    buffers the engine updates in place, so a captured CUDA graph reads the current values.
    `fn` is flash's variable-length kernel (None: not on this device); `grouped` lets the
    Triton kernel serve; `fused` is the engine's fused-kernel mode.
    """

    fn: Callable[..., Any] | None
    used: Any
    grouped: bool
    cu_q: Any
    cu_k: Any
    fused: str


@dataclass(frozen=True)
class Segments:
    """Packed multiple-choice segments: query and key bounds, the packed positions each
    segment's keys read, the longest of each, and per segment (q start, q end, k start, k end).
    """

    cu_q: Any
    cu_k: Any
    kv: Any
    longest_q: int
    longest_k: int
    spans: list[tuple[int, int, int, int]]


@dataclass(frozen=True)
class AttentionContext:
    """What one decoder call's attention reads: one of the three parts is set."""

    prefill: Prefill | None = None
    decode: Decode | None = None
    segments: Segments | None = None


@contextmanager
def using(config: Any, impl: str) -> Iterator[None]:
    """The model's attention implementation set to `impl` ("harness_greedy" or
    "harness_choices") inside the block, its own again after it.
    """
    register()
    saved = config._attn_implementation
    config._attn_implementation = impl
    try:
        yield
    finally:
        config._attn_implementation = saved


def register() -> None:
    """Registers the two attention functions with transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register("harness_greedy", harness_greedy)
    AttentionInterface.register("harness_choices", harness_choices)


def _flash() -> Any:
    import torch

    return getattr(torch.ops.aten, "_flash_attention_forward", None)


def harness_greedy(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                   dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
                   ) -> tuple[Any, None]:
    """The attention function registered with transformers: prefill, decode or segment
    attention, as the call's AttentionContext says.
    """
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    flash = _flash()
    ctx: AttentionContext = kwargs[KEYWORD]
    groups = getattr(module, "num_key_value_groups", 1)
    b, h, n, d = query.shape
    pre = ctx.prefill
    if pre is not None:  # [1, heads, packed tokens, dim]
        if flash is not None and query.is_cuda and query.dtype in (torch.float16,
                                                                   torch.bfloat16):
            cu = pre.cu.to(query.device)
            out = flash.default(query[0].transpose(0, 1), key[0].transpose(0, 1),
                                value[0].transpose(0, 1), cu, cu, pre.longest,
                                pre.longest, 0.0, True, False, scale=scaling)[0]
            return out[None], None
        out = query.new_empty(b, h, n, value.shape[-1])
        for a, z in pre.spans:
            out[:, :, a:z] = sdpa(query[:, :, a:z], key[:, :, a:z], value[:, :, a:z],
                                  is_causal=True, scale=scaling, enable_gqa=groups > 1)
        return out.transpose(1, 2).contiguous(), None
    dec = ctx.decode
    assert dec is not None, "harness_greedy called without a prefill or decode context"
    if dec.grouped:
        from harness import kernels

        if kernels.decode_attention_serves(query[:, :, 0], key, dec.fused):
            out = kernels.decode_attention(query[:, :, 0], key, value,
                                           dec.used.to(query.device), scaling)
            return out[:, None], None
    if dec.fn is not None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        slots = key.shape[2]
        flat_k = key.transpose(1, 2).reshape(b * slots, key.shape[1], d)
        flat_v = value.transpose(1, 2).reshape(b * slots, value.shape[1], value.shape[-1])
        dev = query.device  # buffers live on the first GPU (--device auto: copies)
        out = dec.fn(query.reshape(b, h, d), flat_k, flat_v, dec.cu_q.to(dev),
                     dec.cu_k.to(dev), slots, dec.used.to(dev), scaling)
        return out.reshape(b, 1, h, -1), None
    q = query.reshape(b, h // groups, groups, d)
    out = sdpa(q, key, value, attn_mask=attention_mask[:, :, :, : key.shape[-2]],
               scale=scaling)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def harness_choices(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                    dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
                    ) -> tuple[Any, None]:
    """Packed multiple-choice segments: query [1, heads, tokens, dim]; each segment's keys
    gathered from the packed K/V.
    """
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    flash = _flash()
    st = kwargs[KEYWORD].segments
    k = key[0].transpose(0, 1).index_select(0, st.kv)
    v = value[0].transpose(0, 1).index_select(0, st.kv)
    q = query[0].transpose(0, 1)  # [tokens, heads, dim]
    if flash is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        out = flash.default(q, k, v, st.cu_q, st.cu_k, st.longest_q, st.longest_k, 0.0, True,
                            False, scale=scaling)[0]
        return out[None], None
    # Elsewhere segment by segment: causal aligned to the end of each segment's keys
    # (flash's convention when a segment has fewer queries than keys).
    out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])
    groups = q.shape[1] // k.shape[1]
    for qa, qz, ka, kz in st.spans:
        n, m = qz - qa, kz - ka
        allowed = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
        out[qa:qz] = sdpa(q[qa:qz].transpose(0, 1), k[ka:kz].transpose(0, 1),
                          v[ka:kz].transpose(0, 1), attn_mask=allowed, scale=scaling,
                          enable_gqa=groups > 1).transpose(0, 1)
    return out[None], None


def decode_label(model: Any, device: str, fn: Any, grouped: bool, fused: str) -> str:
    """Which decode-step attention `harness_greedy` takes for this model: the grouped Triton
    kernel (`kernels.decode_attention`), flash's variable-length kernel, or sdpa.
    """
    import torch

    from harness import kernels

    c = _shape(model)
    dtype = hidden_dtype(model)
    if grouped and kernels.decode_attention_serves(
            torch.empty(1, c.heads, c.head_dim, dtype=dtype, device=device),
            torch.empty(1, c.kv_heads, 1, c.head_dim, dtype=dtype, device=device), fused):
        return "grouped (Triton)"
    if fn is not None and dtype in (torch.float16, torch.bfloat16):
        return "flash varlen"
    return "sdpa"


def varlen_decode() -> Callable[..., Any] | None:
    """Flash attention's variable-length kernel with per-row K/V lengths (`seqused_k`), for
    one query token per row: f(q [rows, heads, dim], k/v [rows * slots, kv heads, dim],
    cu_q, cu_k, slots, used, scale). torch's public `varlen_attn` where it takes `seqused_k`,
    else the aten op where its schema has it; None without either.
    """
    import inspect

    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn

        params = inspect.signature(varlen_attn).parameters
        if "seqused_k" in params and "enable_gqa" in params:
            def public(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, slots: int, used: Any,
                       scale: float | None) -> Any:
                return varlen_attn(q, k, v, cu_q, cu_k, 1, slots, scale=scale, enable_gqa=True,
                                   seqused_k=used)
            return public
    except ImportError:
        pass
    op = getattr(torch.ops.aten, "_flash_attention_forward", None)
    if op is not None and "seqused_k" in str(op.default._schema):
        def aten(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, slots: int, used: Any,
                 scale: float | None) -> Any:
            return op.default(q, k, v, cu_q, cu_k, 1, slots, 0.0, False, False, scale=scale,
                              seqused_k=used)[0]
        return aten
    return None

