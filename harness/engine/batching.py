"""Batches: packing, token budgets, and the memory estimates that size them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.engine.arch import _unwrap, hidden_dtype

# Token budget per batch (padded tokens x rows) on CPU when --batch-size is auto; on CUDA it
# is sized from free memory (auto_token_budget).
CPU_TOKEN_BUDGET = 8192
# Share of the free GPU memory a greedy-decoding batch plans for (`greedy_batches`): the rest
# covers the allocator's fragmentation, the CUDA graph's pool and transient copies.
GREEDY_MEMORY_SHARE = 0.6
# Row width for packed multiple-choice items (wider when an item is longer). Attention over a
# 512-wide row costs about 4% of a layer's matmuls for a 2k-hidden model.
PACK_WIDTH = 512



def _pack(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices grouped into rows of at most `width` tokens: best-fit decreasing (each item,
    longest first, goes to the row whose room fits it most tightly).
    """
    import bisect

    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row), sorted
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        at = bisect.bisect_left(room, (n, -1))
        if at < len(room):
            free, r = room.pop(at)
        else:
            free, r = width, len(rows)
            rows.append([])
        rows[r].append(i)
        if free - n > 0:
            bisect.insort(room, (free - n, r))
    return rows


def _batches(lengths: Sequence[int], batch_size: int | None, budget: int) -> list[list[int]]:
    """Indices sorted longest first, cut into batches of `batch_size` rows, or of at most
    `budget` padded tokens when batch_size is None.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        full = (len(current) >= batch_size) if batch_size else \
            (current and width * (len(current) + 1) > budget)
        if full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    inter: int
    vocab: int


def left_padded(prompts: Sequence[Sequence[int]], batch: Sequence[int],
                pad_id: int) -> tuple[Any, Any]:
    """The batch's prompts left-padded to the longest, as `generate` takes them: (input ids,
    attention mask), both [rows, longest] long tensors on the CPU.
    """
    import torch

    width = max(len(prompts[i]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        ids[row, width - len(prompts[i]):] = torch.tensor(list(prompts[i]))
        mask[row, width - len(prompts[i]):] = 1
    return ids, mask


def _shape(model: Any) -> _Shape:
    """The sizes the memory estimates and kernel checks need, from the (inner, text) config,
    with Llama-7B-like defaults where a config lacks one.
    """
    inner = _unwrap(model)
    cfg = getattr(inner.config, "text_config", inner.config)
    hidden = getattr(cfg, "hidden_size", 4096)
    heads = getattr(cfg, "num_attention_heads", 32)
    return _Shape(hidden=hidden, layers=getattr(cfg, "num_hidden_layers", 32), heads=heads,
                  kv_heads=getattr(cfg, "num_key_value_heads", heads) or heads,
                  head_dim=getattr(cfg, "head_dim", None) or hidden // heads,
                  inter=getattr(cfg, "intermediate_size", 4 * hidden),
                  vocab=getattr(cfg, "vocab_size", 32000))


def greedy_costs(model: Any) -> tuple[int, int, int]:
    """Bytes that `Engine._greedy` holds, from the model's config: per cache slot (K and V
    of every layer), per packed prompt token in the prompt pass (one layer's activations at
    a time: residual stream, norms, Q/K/V, attention output, the MLP's gate, up and their
    product), and per row (the last position's logits in float32).
    """
    c = _shape(model)
    size = hidden_dtype(model).itemsize
    per_slot = 2 * c.layers * c.kv_heads * c.head_dim * size
    per_token = (4 * c.hidden + 3 * c.inter + 2 * (c.heads + 2 * c.kv_heads) * c.head_dim) \
        * size
    return per_slot, per_token, 4 * c.vocab


def greedy_batches(sizes: Sequence[int], new_tokens: int, costs: tuple[int, int, int],
                   budget: float) -> list[list[int]]:
    """Prompts (by token count) cut into greedy-decoding batches, longest first, each as
    large as `budget` bytes allow: its cache holds rows × (longest prompt + new tokens,
    rounded up to 64) slots, its prompt pass one layer's activations over the packed
    prompts. Decoding reads every weight once a step whatever the batch, so one large batch
    beats two small ones. A prompt that does not fit alone still gets a batch of its own (the
    out-of-memory back-off reports it).
    """
    per_slot, per_token, per_row = costs
    batches: list[list[int]] = []
    current: list[int] = []
    slots = packed = 0  # the current batch's cache width (its first, longest prompt's)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        need = (len(current) + 1) * (slots * per_slot + per_row) + \
            (packed + sizes[i]) * per_token
        if not current or need > budget:
            if current:
                batches.append(current)
            current, packed = [], 0
            slots = -(-(sizes[i] + new_tokens) // 64) * 64
        current.append(i)
        packed += sizes[i]
    if current:
        batches.append(current)
    return batches


def auto_token_budget(model: Any, device: str) -> int:
    """Tokens per batch: on CUDA, from the free memory and the model's per-token cost (KV
    cache plus a layer's activations); on CPU a fixed budget that keeps batches cache-sized.
    """
    if not device.startswith("cuda"):
        return CPU_TOKEN_BUDGET
    import torch

    c = _shape(model)
    per_token = 2 * (2 * c.layers * c.kv_heads * c.head_dim + 8 * c.hidden + 3 * c.inter)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    # A third of the free memory: the rest covers transient copies (cache concatenation,
    # grouped-query K/V expansion, logits chunks) and the allocator's fragmentation.
    return int(max(4096, min(free * 0.3 / per_token, 1 << 18)))
