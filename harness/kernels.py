"""Fused GPU kernels for the small elementwise work of an eager decoder layer.

In an eager transformers layer, RMSNorm is eight kernels (a float32 copy, square, mean, add,
rsqrt, multiply, a cast back, the weight multiply), rotary embedding ten (multiplies, a
negation, a concatenation, an add, for queries and keys), SwiGLU's `act(gate) * up` two. They
move more bytes than the layer's matmuls read for short rows, and in a decode step each is a
kernel launch of a few microseconds. `fused(decoder)` replaces them, for the engine's calls
only, with one Triton kernel each:

- `rms_norm`: the norm in float32, the normalised value rounded to the input dtype, then the
  weight multiply rounded to the output dtype, as transformers' Llama-family RMSNorm does;
- `silu_mul`: silu in float32 (IEEE division, libdevice exp as CUDA's expf) rounded to the
  dtype, then the multiply rounded again, as `act_fn(gate) * up`;
- `rope`: `q * cos + rotate_half(q) * sin` with each product and the sum rounded to the
  dtype, as `apply_rotary_pos_emb`, queries and keys in one launch.

Each replacement is installed only for module classes (and rotary functions) whose output it
reproduces on a probe input — a norm with a different formula (Gemma's `1 + weight`), another
activation, partial rotary, all keep their own code. The sum inside RMSNorm's mean runs in a
different order than torch's, so outputs can differ from the module's by one unit in the last
place of the half-precision result; everything else rounds where the modules round
(`tests/gpu` counts the exactly equal elements on the GPU). Used on CUDA in half
precision; float32 runs, where results are compared exactly, keep the modules' own code.
The engine passes its `EngineOptions.fused` mode: "off" turns them off; "on" with
`TRITON_INTERPRET=1` (the tests) also runs them on CPU tensors, float32 included, through
Triton's interpreter.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any


def _interpreting() -> bool:
    from harness import env

    return env.text("TRITON_INTERPRET") == "1"


def _kernels() -> dict[str, Any] | None:
    """The Triton kernels, compiled on first use; None where Triton is not importable."""
    try:
        import triton

        from harness import _triton_kernels as kt
    except ImportError:
        return None
    return {"triton": triton, "rms_norm": kt.rms_norm_kernel, "silu_mul": kt.silu_mul_kernel,
            "rope": kt.rope_kernel, "target_logprob": kt.target_logprob_kernel,
            "decode_attn": kt.decode_attn_kernel, "accurate": kt.ACCURATE}


def _runs_here(t: Any, mode: str = "auto") -> bool:
    """Whether the kernels run on this tensor: CUDA in half precision; with mode "on" under
    the Triton interpreter (tests), CPU tensors of any float dtype.
    """
    import torch

    if t.is_cuda:
        return t.dtype in (torch.float16, torch.bfloat16)
    return t.device.type == "cpu" and _interpreting() and mode == "on" and \
        t.dtype in (torch.float32, torch.float16, torch.bfloat16)


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """The RMSNorm of transformers: `weight * (x * rsqrt(mean(x²) + eps)).to(x.dtype)`."""
    import torch

    k = _kernels()
    assert k is not None
    n = x.shape[-1]
    x2 = x.reshape(-1, n)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x2.shape, dtype=torch.promote_types(x.dtype, weight.dtype),
                    device=x.device)
    block = k["triton"].next_power_of_2(n)
    rows = max(1, min(64, 4096 // block))
    k["rms_norm"][(k["triton"].cdiv(x2.shape[0], rows),)](
        x2, weight, y, x2.shape[0], x2.stride(0), float(eps), N=n, BLOCK=block, ROWS=rows,
        num_warps=4 if block * rows <= 4096 else 8)
    return y.view(x.shape)


def silu_mul(gate: Any, up: Any) -> Any:
    """`silu(gate) * up`, each op rounded to the dtype as in eager torch."""
    import torch

    k = _kernels()
    assert k is not None
    gate, up = gate.contiguous(), up.contiguous()
    y = torch.empty(gate.shape, dtype=torch.promote_types(gate.dtype, up.dtype),
                    device=gate.device)
    n = gate.numel()
    block = 2048
    k["silu_mul"][(k["triton"].cdiv(n, block),)](gate, up, y, n, BLOCK=block,
                                                  ACCURATE=k["accurate"], num_warps=8)
    return y


def rope(q: Any, k_: Any, cos: Any, sin: Any) -> tuple[Any, Any]:
    """`apply_rotary_pos_emb(q, k, cos, sin)` for q/k [batch, heads, tokens, head_dim] (any
    strides with a contiguous last axis) and cos/sin [batch or 1, tokens, head_dim].
    """
    import torch

    k = _kernels()
    assert k is not None
    b, hq, t, d = q.shape
    hk = k_.shape[1]
    # Outputs in the inputs' memory layout (the layers hand over transposed views), as eager
    # torch's elementwise ops do.
    qo, ko = torch.empty_like(q), torch.empty_like(k_)
    cb = cos.stride(0) if cos.shape[0] > 1 else 0
    k["rope"][(b * t,)](
        q, k_, cos, sin, qo, ko, t, q.stride(0), q.stride(1), q.stride(2),
        k_.stride(0), k_.stride(1), k_.stride(2), qo.stride(0), qo.stride(1), qo.stride(2),
        ko.stride(0), ko.stride(1), ko.stride(2), cb, cos.stride(1), HQ=hq, HK=hk, D=d,
        BHQ=k["triton"].next_power_of_2(hq), BHK=k["triton"].next_power_of_2(hk),
        ACCURATE=k["accurate"], num_warps=4)
    return qo, ko


def target_logprobs(logits: Any, targets: Any, mode: str = "auto") -> tuple[Any, Any] | None:
    """(log_softmax(logits.float())[i, targets[i]], logits[i].argmax() == targets[i]) per row
    in one read of the logits, without a float32 copy of them; None where the kernels do not
    serve (the caller computes it with torch).
    """
    import torch

    if mode == "off" or not _runs_here(logits, mode) or logits.dim() != 2 or \
            logits.stride(-1) != 1 or (k := _kernels()) is None:
        return None
    rows, vocab = logits.shape
    lp = torch.empty(rows, dtype=torch.float32, device=logits.device)
    hit = torch.empty(rows, dtype=torch.int8, device=logits.device)
    if rows:
        with torch.cuda.device(logits.device) if logits.is_cuda else nullcontext():
            k["target_logprob"][(rows,)](logits, targets.to(logits.device).long().contiguous(),
                                         lp, hit, vocab, logits.stride(0), BLOCK=4096,
                                         num_warps=8)
    return lp, hit.bool()


def decode_attention_serves(query: Any, key: Any, mode: str = "auto") -> bool:
    """Whether `decode_attention` serves these tensors (the kernels' device and dtypes, a
    head size its matrix products take, whole query groups per K/V head).
    """
    d = query.shape[-1]
    return mode != "off" and _runs_here(query, mode) and key.dtype == query.dtype and \
        d >= 16 and d & (d - 1) == 0 and query.shape[1] % key.shape[1] == 0 and \
        _kernels() is not None


def decode_attention(query: Any, key: Any, value: Any, used: Any, scale: float | None,
                     ) -> Any:
    """Attention of one query token per row over that row's first `used[row]` cached keys:
    query [rows, heads, head_dim], key/value [rows, kv heads, slots, head_dim] (any strides
    with a contiguous last axis); returns [rows, heads, head_dim]. Each program takes one
    row and one K/V head with all the query heads that share it, so each key and value is
    read once (grouped-query attention).
    """
    import torch

    k = _kernels()
    assert k is not None
    rows, heads, d = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    out = torch.empty(rows, heads, d, dtype=query.dtype, device=query.device)
    if rows:
        k["decode_attn"][(rows, kv_heads)](
            query, key, value, used, out, float(scale if scale is not None else d ** -0.5),
            query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
            value.stride(0), value.stride(1), value.stride(2), out.stride(0), out.stride(1),
            G=groups, BG=max(16, k["triton"].next_power_of_2(groups)), D=d, BLOCK_N=64,
            num_warps=4, num_stages=3)
    return out


# -- installing them --------------------------------------------------------------------------

def _norm_call(m: Any) -> Callable[..., Any] | None:
    eps = getattr(m, "variance_epsilon", getattr(m, "eps", None))
    w = getattr(m, "weight", None)
    if eps is None or w is None or w.dim() != 1 or getattr(m, "bias", None) is not None:
        return None

    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not _runs_here(x, "on") or x.shape[-1] != w.shape[0] or \
                w.device != x.device:
            return m.forward(x, *args, **kwargs)
        return rms_norm(x, w, eps)
    return call


def _mlp_call(m: Any) -> Callable[..., Any] | None:
    import torch

    # transformers' SiLUActivation or torch's SiLU; the probe checks the whole MLP anyway.
    if not all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")) or \
            not (isinstance(m.act_fn, torch.nn.SiLU) or
                 type(m.act_fn).__name__ == "SiLUActivation"):
        return None

    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not _runs_here(x, "on"):
            return m.forward(x, *args, **kwargs)
        g, u = m.gate_proj(x), m.up_proj(x)
        if g.dtype != u.dtype or g.shape != u.shape or not _runs_here(g, "on"):
            return m.down_proj(m.act_fn(g) * u)
        return m.down_proj(silu_mul(g, u))
    return call


def _rope_fn(original: Callable[..., Any]) -> Callable[..., Any]:
    def apply_rotary_pos_emb(q: Any, k: Any, cos: Any, sin: Any, *args: Any,
                             **kwargs: Any) -> Any:
        unsqueeze = kwargs.pop("unsqueeze_dim", 1) if not args else None
        ok = unsqueeze == 1 and not kwargs and q.dim() == 4 and k.dim() == 4 and \
            cos.dim() == 3 and cos.shape == sin.shape and _runs_here(q, "on") and \
            q.dtype == k.dtype == cos.dtype == sin.dtype and q.shape[0] == k.shape[0] and \
            q.shape[2:] == k.shape[2:] and cos.shape[1:] == q.shape[2:] and \
            cos.shape[0] in (1, q.shape[0]) and q.shape[-1] in (16, 32, 64, 128, 256) and \
            q.stride(-1) == k.stride(-1) == 1 and cos.stride() == sin.stride() and \
            cos.stride(-1) == 1
        if not ok:
            if unsqueeze is not None:
                kwargs["unsqueeze_dim"] = unsqueeze
            return original(q, k, cos, sin, *args, **kwargs)
        return rope(q, k, cos, sin)
    apply_rotary_pos_emb.__wrapped__ = original  # type: ignore[attr-defined]
    return apply_rotary_pos_emb


def _close(a: Any, b: Any) -> bool:
    """Outputs equal up to the last place of the dtype (one ulp: RMSNorm's sum order)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    tol = {torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}.get(a.dtype, 1e-5)
    return bool(torch.allclose(a.float(), b.float(), rtol=tol, atol=tol))


def _same_output(call: Callable[..., Any], module: Any, x: Any) -> bool:
    return _close(call(x), module.forward(x))


def _probe(verdicts: dict[str, bool], key: str, check: Callable[[], bool]) -> bool:
    """Whether a replacement gives the module's output on a probe input, checked once per
    module class (key) within one plan (`verdicts`, the plan's own). A plan is made when a
    decoder first runs fused and kept on it, so this runs once per loaded model; nothing is
    cached across models.
    """
    if key not in verdicts:
        import torch

        try:
            with torch.no_grad():
                verdicts[key] = bool(check())
        except Exception:  # noqa: BLE001 - a replacement that fails its probe is not used
            verdicts[key] = False
    return verdicts[key]


def _heads(attn: Any) -> tuple[int, int, int]:
    """(query heads, K/V heads, head size) of an attention module, small defaults where it
    does not say (the rotary probe then compiles a variant of its own).
    """
    cfg = getattr(attn, "config", None)
    heads = getattr(cfg, "num_attention_heads", None) or 4
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    d = getattr(attn, "head_dim", None) or 64
    return (heads, kv, d) if heads % kv == 0 and d in (16, 32, 64, 128, 256) else (4, 2, 64)


def _plan(decoder: Any, dtype: Any, device: Any,
          ) -> tuple[list[tuple[Any, Any]], list[tuple[Any, str, Any]], list[str]]:
    """The replacements that pass their probes: (module, call) pairs, (python module, name,
    function) globals, and a description of each kind installed.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    calls: list[tuple[Any, Any]] = []
    kinds: dict[str, int] = {}
    verdicts: dict[str, bool] = {}  # probe results by module class, for this plan only
    rope_mods: dict[str, Any] = {}
    for m in decoder.modules():
        name = type(m).__name__
        call = None
        if name.endswith("RMSNorm"):
            call = _norm_call(m)
            if call is not None:
                n = m.weight.shape[0]
                x = rand(3, n) * 3
                ok = _probe(verdicts, f"rms_norm {type(m).__qualname__}",
                            functools.partial(_same_output, call, m, x))
                call = call if ok else None
        elif name.endswith("MLP"):
            call = _mlp_call(m)
            h = getattr(getattr(m, "gate_proj", None), "in_features", None)
            if call is not None and h:
                x = rand(2, 3, h)
                ok = _probe(verdicts, f"silu_mul {type(m).__qualname__}",
                            functools.partial(_same_output, call, m, x))
                call = call if ok else None
            else:
                call = None
        elif hasattr(m, "q_proj") and hasattr(m, "k_proj"):
            mod = sys.modules.get(type(m).__module__)
            if mod is not None and callable(getattr(mod, "apply_rotary_pos_emb", None)):
                rope_mods.setdefault(mod.__name__, (mod, _heads(m)))
        if call is not None:
            calls.append((m, call))
            kinds[name] = kinds.get(name, 0) + 1
    globals_: list[tuple[Any, str, Any]] = []
    for mod, (hq, hk, d) in rope_mods.values():
        original = mod.apply_rotary_pos_emb
        fused_fn = _rope_fn(original)

        # The model's head counts and size: the probe compiles the variant the layers use.
        def check(o: Any = original, f: Any = fused_fn, hq: int = hq, hk: int = hk,
                  d: int = d) -> bool:
            t = 5
            q = rand(1, t, hq, d).transpose(1, 2)  # the layers' layout: a transposed view
            k = rand(1, t, hk, d).transpose(1, 2)
            cos, sin = rand(1, t, d), rand(1, t, d)
            a, b = o(q, k, cos, sin), f(q, k, cos, sin)
            return _close(a[0], b[0]) and _close(a[1], b[1])
        if _probe(verdicts, f"rope {mod.__name__}", check):
            globals_.append((mod, "apply_rotary_pos_emb", fused_fn))
            kinds[f"{mod.__name__.rsplit('.', 1)[-1]}.apply_rotary_pos_emb"] = 1
    return calls, globals_, [f"{k} x{v}" for k, v in kinds.items()]


def usable(decoder: Any, mode: str = "auto") -> tuple[Any, Any] | None:
    """(dtype, device) when the fused kernels can serve this decoder: Triton importable,
    mode not "off", every parameter on one device where the kernels run (`_runs_here`);
    None else.
    """
    import torch

    if mode == "off":
        return None
    devices, dtype = set(), None
    for p in decoder.parameters():
        devices.add(p.device)
        if dtype is None and p.is_floating_point():
            dtype = p.dtype
    if len(devices) != 1 or dtype is None:
        return None
    device = devices.pop()
    if not _runs_here(torch.empty(0, dtype=dtype, device=device), mode) or _kernels() is None:
        return None
    return dtype, device


@contextmanager
def fused(decoder: Any, mode: str = "auto") -> Iterator[list[str]]:
    """Inside the block, the decoder's RMSNorms, SiLU MLPs and rotary embedding run the fused
    kernels (those that pass their probes); their own code again after it. Yields what was
    installed (empty where nothing could be).
    """
    where = usable(decoder, mode)
    if where is None:
        yield []
        return
    plan = getattr(decoder, "_harness_fused", None)
    if plan is None or plan[0] != where:
        plan = (where, *_plan(decoder, *where))
        decoder._harness_fused = plan
    _, calls, globals_, kinds = plan
    saved = [m._compiled_call_impl for m, _ in calls]
    saved_g = [getattr(mod, name) for mod, name, _ in globals_]
    for m, call in calls:
        m._compiled_call_impl = call
    for mod, name, fn in globals_:
        setattr(mod, name, fn)
    import torch

    try:
        # Triton launches on the current CUDA device: make it the model's (--device cuda:1).
        with torch.cuda.device(where[1]) if where[1].type == "cuda" else nullcontext():
            yield kinds
    finally:
        for (m, _), call in zip(calls, saved, strict=True):
            m._compiled_call_impl = call
        for (mod, name, _), fn in zip(globals_, saved_g, strict=True):
            setattr(mod, name, fn)
