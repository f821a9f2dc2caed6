"""What the engine needs to know about a model's architecture: its decoder and LM head, the
PEFT wrapper, where it sits, its activation dtype, and whether the harness's own greedy loop
and packed layouts can run it. Also imported by train/ (decoder_and_head).
"""

from __future__ import annotations

from typing import Any

_NON_PLAIN_HEAD = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder, lm_head) of a plain causal LM (PEFT-wrapped or not): the LM head is a linear
    layer on the decoder's last hidden state, so it can run at chosen positions only. None
    otherwise. LoRA layers are injected in place, so calling the inner decoder still applies
    the active adapter.
    """
    inner = _unwrap(model)
    if not (hasattr(inner, "model") and hasattr(inner, "lm_head")) or any(
            getattr(inner.config, a, None) for a in _NON_PLAIN_HEAD):
        return None
    return inner.model, inner.lm_head


def _split_model(model: Any) -> tuple[Any, Any] | None:
    """decoder_and_head, for the packed multiple-choice rows, which also need an attention
    implementation that takes a custom 4D mask.
    """
    parts = decoder_and_head(model)
    inner = _unwrap(model)
    if getattr(inner.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return None
    return parts


def _greedy_loop_ok(model: Any) -> bool:
    """Whether `Engine._greedy` can run this model: a plain causal LM (`decoder_and_head`)
    with sdpa or eager attention, every layer full attention (one cache length for all), of
    the families transformers marks compileable (their layers write the cache through
    `Cache.update` and take a prepared 4D mask).
    """
    if decoder_and_head(model) is None:
        return False
    inner = _unwrap(model)
    cfg = inner.config
    if not getattr(inner, "_can_compile_fullgraph", False) or \
            cfg._attn_implementation not in ("sdpa", "eager"):
        return False
    types = getattr(cfg, "layer_types", None)
    if types is not None:
        return all(t == "full_attention" for t in types)
    return getattr(cfg, "sliding_window", None) is None or \
        getattr(cfg, "use_sliding_window", True) is False


def _unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (the model itself when not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _split_over_gpus(model: Any) -> bool:
    """Whether accelerate placed the model (PEFT-wrapped or not) over several GPUs
    (--device auto).
    """
    inner = _unwrap(model)
    placed = getattr(inner, "hf_device_map", None) or {}
    return len({str(d) for d in placed.values()} - {"cpu", "disk"}) > 1


def _to_device(array: Any, device: str) -> Any:
    """A numpy array as a tensor on `device`; to CUDA through pinned memory without blocking,
    so the host does not wait for the work already queued there.
    """
    import torch

    t = torch.from_numpy(array)
    if device.startswith("cuda"):
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def hidden_dtype(module: Any) -> Any:
    """The dtype activations take: that of the first floating-point parameter."""
    import torch

    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _mask_for(mask: Any, impl: str, dtype: Any) -> Any:
    """A boolean attention mask (True: attend) as the attention implementation takes it:
    sdpa takes booleans, eager adds a float mask to its scores.
    """
    if impl != "eager":
        return mask
    import torch

    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(dtype).min)

