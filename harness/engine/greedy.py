"""Greedy decoding, the harness's own loop (`Engine.generate_detailed` on models
`arch._greedy_loop_ok` takes): the prompts packed into one prompt pass, a per-row-slot KV
cache, and on CUDA each decode step captured once as a CUDA graph and replayed. Also the
`Generation` result and stop strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.engine.arch import _split_over_gpus, _unwrap, decoder_and_head
from harness.engine.attention import (
    KEYWORD,
    AttentionContext,
    Decode,
    Prefill,
    decode_label,
    using,
    varlen_decode,
)
from harness.specs import GenerationSpec

if TYPE_CHECKING:
    from harness.engine.core import Engine


@dataclass(frozen=True)
class Generation:
    """One generated continuation: its text (cut at a stop string), the number of new tokens
    before EOS, and whether it ran into max_new_tokens without EOS or a stop string.
    """

    text: str
    new_tokens: int
    hit_max_new_tokens: bool


def generation_from_ids(tokenizer: Any, ids: Sequence[int], eos: int | None,
                        spec: GenerationSpec) -> Generation:
    """A row's new token ids as a `Generation`: cut at the first EOS (what follows is padding),
    decoded, cut at a stop string; whether it ran into max_new_tokens. Every backend ends here.
    """
    ids = list(ids)
    finished = eos is not None and eos in ids
    if eos is not None and finished:
        ids = ids[: ids.index(eos)]
    raw = tokenizer.decode(ids, skip_special_tokens=True)
    text = cut_at_stop(raw, spec.stop)
    stopped = len(text) < len(raw) or any(s in raw for s in spec.stop)
    return Generation(text, len(ids), not finished and not stopped
                      and len(ids) >= spec.max_new_tokens)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string, stripped."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut].strip()


def greedy(engine: Engine, prompts: Sequence[Sequence[int]], new_tokens: int, eos: int | None,
           ) -> list[list[int]]:
    """Greedy decoding of a batch of prompts; each row's new tokens, cut after its first
    EOS (as `generate`, which pads a finished row).

    The prompt pass runs the prompts packed into one sequence, no padding, attention causal
    within each prompt (flash attention's variable-length kernel on CUDA); each prompt's
    K/V land in its row of a cache where each row then writes its next token at its own
    slot (`RowCache`), so positions are the unpadded ones. Each decode step is one token per
    row whose inputs live in fixed buffers, so on CUDA the step is captured once as a CUDA
    graph and replayed: no per-step kernel launches or Python. Attention in decode reads
    each K/V head once for all its query heads. Stops early (checked every 32 steps) once
    every row has produced EOS.
    """
    import torch

    decoder, head = decoder_and_head(engine.model)  # type: ignore[misc]
    dev = engine.device if engine.device != "auto" else str(engine.model.device)
    inner = _unwrap(engine.model)
    rows = len(prompts)
    sizes = [len(p) for p in prompts]
    width = max(sizes)
    length = -(-(width + new_tokens) // 64) * 64  # aligned for the fused attention kernels
    # The prompts packed into one sequence (no padding): each token's row and position.
    ids = torch.tensor([t for p in prompts for t in p], dtype=torch.long)[None]
    pos = torch.cat([torch.arange(n) for n in sizes])
    row_of = torch.repeat_interleave(torch.arange(rows), torch.tensor(sizes))
    bounds = [0]
    for n in sizes:
        bounds.append(bounds[-1] + n)
    cu = torch.tensor(bounds, dtype=torch.int32, device=dev)
    lens = torch.tensor(sizes, device=dev)
    at = lens.clone()                 # each row's next slot, and its next position
    cache = RowCache(at, length, rows)
    cache.prefill = (row_of.to(dev), pos.to(dev))
    slot = torch.arange(length, device=dev)
    out = torch.empty(rows, new_tokens, dtype=torch.long, device=dev)
    # The current CUDA device made the model's: graph capture and Triton launch there.
    on_device = torch.cuda.device(dev) if dev.startswith("cuda") else nullcontext()
    with torch.no_grad(), on_device, using(inner.config, "harness_greedy"), \
            engine._fast_layers(decoder, parts=True):
        # Prompt pass over the packed prompts: attention causal within each prompt (flash's
        # variable-length kernel on CUDA), K/V written to each row's slots 0..len-1. The
        # mask is not used there; it is passed in 4D so transformers builds none.
        prefill = AttentionContext(prefill=Prefill(
            cu=cu, longest=width, spans=list(zip(bounds[:-1], bounds[1:], strict=True))))
        hidden = decoder(input_ids=ids.to(dev), attention_mask=(slot < 0)[None, None, None],
                         position_ids=pos[None].to(dev), past_key_values=cache,
                         use_cache=True, **{KEYWORD: prefill}).last_hidden_state
        cache.prefill = None
        last = hidden[0, (cu[1:] - 1).to(hidden.device)]
        out[:, 0] = head(last).argmax(-1).to(dev)
        del hidden
        token = out[:, :1].clone()
        used = (at + 1).to(torch.int32)
        choice = engine.options.decode_attention
        fn = varlen_decode() if dev.startswith("cuda") and choice == "auto" else None
        decode = AttentionContext(decode=Decode(
            fn=fn, used=used, grouped=choice in ("auto", "grouped"),
            cu_q=torch.arange(rows + 1, dtype=torch.int32, device=dev),
            cu_k=torch.arange(rows + 1, dtype=torch.int32, device=dev) * length,
            fused=engine.options.fused))
        engine.decode_attention = decode_label(inner, dev, fn, choice in ("auto", "grouped"),
                                               engine.options.fused)

        def step() -> Any:
            used.copy_(at + 1)
            mask = (slot[None] <= at[:, None])[:, None, None, :]
            h = decoder(input_ids=token, attention_mask=mask, position_ids=at[:, None],
                        past_key_values=cache, use_cache=True,
                        **{KEYWORD: decode}).last_hidden_state
            return head(h[:, -1]).argmax(-1).to(dev)

        graph, result = None, None
        # A model split over several GPUs (--device auto) runs eagerly: a graph is
        # captured on one device's stream.
        if dev.startswith("cuda") and new_tokens > 2 and not _split_over_gpus(inner) and \
                engine.options.cuda_graphs:
            graph, result = _capture(step)
        engine.decode_mode = "cuda-graph" if graph is not None else "eager"
        for t in range(1, new_tokens):
            if graph is not None:
                graph.replay()
                nxt: Any = result
            else:
                nxt = step()
            out[:, t] = nxt
            token.copy_(nxt[:, None])
            at += 1
            if eos is not None and t % 32 == 0 and bool((out[:, : t + 1] == eos).any(1).all()):
                out = out[:, : t + 1]
                break
        del graph
    new = out.tolist()
    if eos is not None:
        new = [r[: r.index(eos) + 1] if eos in r else r for r in new]
    return new




def _capture(step: Callable[[], Any]) -> tuple[Any, Any]:
    """`step` captured as a CUDA graph, after two warm-up runs on a side stream (a step only
    rewrites the current slots, so repeating it changes nothing). (None, None) when capture
    is not possible here; the caller then runs the step eagerly.
    """
    import torch

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # On a stream of the current device: torch.cuda.graph's default capture stream is
        # made once per process, on whichever device was current then.
        with torch.cuda.graph(graph, stream=side):
            result = step()
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an uncapturable model still decodes eagerly
        import warnings

        warnings.warn(f"decode step not captured as a CUDA graph ({exc}); running it eagerly",
                      stacklevel=2)
        return None, None
    return graph, result


class RowCache:
    """The KV cache of `Engine._greedy`: per layer, K and V stored [rows, slots, kv heads, head
    dim] (the layout flash attention's variable-length kernel reads) and handed to attention as
    [rows, kv heads, slots, head dim] views. The prompt pass (`prefill`: each packed token's
    row and position) writes each prompt's K/V to its row's first slots and hands attention the
    packed K/V; a decode step writes row r's token at slot `at[r]`, its own length so far.
    Duck-types the one method of transformers' Cache that the decoder layers call (`update`).
    """

    def __init__(self, at: Any, slots: int, rows: int):
        self.at = at
        self.slots = slots
        self.rows = rows
        self.prefill: tuple[Any, Any] | None = None
        self.every: Any = None
        self.keys: dict[int, Any] = {}
        self.values: dict[int, Any] = {}

    def update(self, key: Any, value: Any, layer_idx: int, *args: Any, **kwargs: Any,
               ) -> tuple[Any, Any]:
        """Store this step's keys and values in their row slots; return the layer's so far."""
        import torch

        if layer_idx not in self.keys:
            _, heads, _, dim = key.shape
            self.keys[layer_idx] = torch.zeros((self.rows, self.slots, heads, dim),
                                               dtype=key.dtype, device=key.device)
            self.values[layer_idx] = torch.zeros((self.rows, self.slots, heads,
                                                  value.shape[-1]),
                                                 dtype=value.dtype, device=value.device)
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if self.prefill is not None:
            row, pos = (t.to(k.device) for t in self.prefill)  # no-ops but across GPUs
            k[row, pos] = key[0].transpose(0, 1)
            v[row, pos] = value[0].transpose(0, 1)
            return key, value
        if self.every is None:
            self.every = torch.arange(k.shape[0], device=k.device)
        at = self.at.to(k.device)  # a no-op unless the layer is on another GPU
        k[self.every, at] = key[:, :, 0]
        v[self.every, at] = value[:, :, 0]
        return k.transpose(1, 2), v.transpose(1, 2)
