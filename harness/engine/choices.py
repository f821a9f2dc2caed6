"""The multiple-choice layouts (`Engine.submit_choices`): items packed into rows with a
prefix-sharing mask (`packed_rows`, any device), or on CUDA into one sequence of segments
through flash attention's variable-length kernel (`flash_segments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.engine.arch import (
    _greedy_loop_ok,
    _mask_for,
    _split_over_gpus,
    _to_device,
    hidden_dtype,
)
from harness.engine.attention import KEYWORD, AttentionContext, Segments, using
from harness.engine.logprobs import _gather_logprobs, _per_continuation

if TYPE_CHECKING:
    from harness.engine.core import Choices, Engine


def packed_rows(engine: Engine, rows: Sequence[Sequence[Choices]],
                parts: tuple[Any, Any]) -> tuple[Any, Any]:
    """Packed rows of items (see `loglikelihood_choices`). Returns, on the device, each
    continuation's summed log-probability (float64) and its count of tokens that are not
    the argmax, in row order, item order, continuation order.
    """
    import numpy as np
    import torch

    decoder, head = parts
    dev = engine.device
    if flash_serves(engine, decoder):
        return flash_segments(engine, rows, parts)
    width = max(sum(len(ctx) + sum(len(c) for c in conts) for ctx, conts in row)
                for row in rows)
    n = len(rows)
    ids = np.full((n, width), engine.pad_id, dtype=np.int64)
    pos = np.zeros((n, width), dtype=np.int64)
    doc = np.full((n, width), -1, dtype=np.int64)   # item within the row; -1 padding
    branch = np.zeros((n, width), dtype=np.int64)   # 0 context, j + 1 continuation j
    sel: list[int] = []       # flat positions (row * width + t) that predict a token
    targets: list[int] = []
    spans: list[tuple[int, int]] = []  # each continuation's slice of sel
    for r, row in enumerate(rows):
        at = 0
        for d, (ctx, conts) in enumerate(row):
            lc = len(ctx)
            tokens = list(ctx)
            for c in conts:
                tokens += c
            end = at + len(tokens)
            ids[r, at:end] = tokens
            doc[r, at:end] = d
            pos[r, at:at + lc] = np.arange(lc)
            base = r * width
            s = at + lc
            for j, c in enumerate(conts):
                m = len(c)
                pos[r, s:s + m] = np.arange(lc, lc + m)
                branch[r, s:s + m] = j + 1
                # Token 0 is predicted at the context's last position, token t at s + t - 1.
                spans.append((len(sel), len(sel) + m))
                sel.append(base + at + lc - 1)
                sel.extend(range(base + s, base + s + m - 1))
                targets.extend(c)
                s += m
            at = end
    doc_t, br_t = _to_device(doc, dev), _to_device(branch, dev)
    i = torch.arange(width, device=dev)
    causal = i[None, :] <= i[:, None]
    same_doc = doc_t[:, None, :] == doc_t[:, :, None]
    shared = (br_t[:, None, :] == 0) | (br_t[:, None, :] == br_t[:, :, None])
    valid = (doc_t >= 0)[:, None, :]
    # Padding queries see themselves only, so no row of the softmax is empty (no NaN).
    mask = (causal[None] & same_doc & shared & valid) | \
        torch.eye(width, dtype=torch.bool, device=dev)[None]
    impl = getattr(decoder.config, "_attn_implementation", "sdpa")
    with torch.no_grad(), engine._fast_layers(decoder):
        hidden = decoder(input_ids=_to_device(ids, dev),
                         attention_mask=_mask_for(mask[:, None], impl, hidden_dtype(decoder)),
                         position_ids=_to_device(pos, dev),
                         use_cache=False).last_hidden_state
        # The last layer's device (another GPU than the first under --device auto).
        last = str(hidden.device)
        flat = hidden.reshape(-1, hidden.shape[-1])
        lp, greedy = _gather_logprobs(head, flat[_to_device(np.array(sel), last)],
                                      _to_device(np.array(targets), str(flat.device)),
                                      engine.options.fused)
        return _per_continuation(lp, greedy, spans)

def flash_serves(engine: Engine, decoder: Any) -> bool:
    """Whether `_choices_flash` serves: CUDA, half precision, flash attention's
    variable-length kernel in this torch, one device, a model `_greedy_loop_ok` accepts
    (full attention through transformers' attention interface).
    choices_attention "mask" keeps the masked rows; "segments" takes the segment
    layout on any device and dtype (attention per segment through sdpa off CUDA: for
    tests and diagnosis).
    """
    import torch

    setting = engine.options.choices_attention
    if setting == "mask" or not _greedy_loop_ok(engine.model):
        return False
    if _split_over_gpus(engine.model):
        return False
    return setting == "segments" or (
        engine.device.startswith("cuda") and
        getattr(torch.ops.aten, "_flash_attention_forward", None) is not None and
        hidden_dtype(decoder) in (torch.float16, torch.bfloat16))

def flash_segments(engine: Engine, rows: Sequence[Sequence[Choices]],
                   parts: tuple[Any, Any]) -> tuple[Any, Any]:
    """`_choices_batch` on CUDA (see `_flash_choices_ok`): the batch's items packed into
    one sequence, no padding and no mask. Attention runs flash's variable-length kernel
    over segments — each context attends causally to itself; each continuation to its
    context and causally to itself — with each continuation's keys gathered as [context,
    continuation] (`harness_choices`). Same inputs and positions as the masked rows.
    """
    import numpy as np
    import torch

    decoder, head = parts
    dev = engine.device
    ids: list[int] = []
    pos: list[int] = []
    kv: list[int] = []                  # the packed positions each segment's keys read
    q_bounds, k_bounds = [0], [0]
    longest_q = longest_k = 1
    sel: list[int] = []
    targets: list[int] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for row in rows:
        for ctx, conts in row:
            lc = len(ctx)
            ids.extend(ctx)
            pos.extend(range(lc))
            kv.extend(range(at, at + lc))
            q_bounds.append(at + lc)
            k_bounds.append(k_bounds[-1] + lc)
            longest_q, longest_k = max(longest_q, lc), max(longest_k, lc)
            s = at + lc
            for c in conts:
                m = len(c)
                ids.extend(c)
                pos.extend(range(lc, lc + m))
                kv.extend(range(at, at + lc))
                kv.extend(range(s, s + m))
                q_bounds.append(s + m)
                k_bounds.append(k_bounds[-1] + lc + m)
                longest_q, longest_k = max(longest_q, m), max(longest_k, lc + m)
                # Token 0 is predicted at the context's last position, token t at s + t - 1.
                spans.append((len(sel), len(sel) + m))
                sel.append(at + lc - 1)
                sel.extend(range(s, s + m - 1))
                targets.extend(c)
                s += m
            at = s
    i32 = np.int32
    context = AttentionContext(segments=Segments(
        cu_q=_to_device(np.array(q_bounds, dtype=i32), dev),
        cu_k=_to_device(np.array(k_bounds, dtype=i32), dev),
        kv=_to_device(np.array(kv, dtype=np.int64), dev),
        longest_q=longest_q, longest_k=longest_k,
        spans=list(zip(q_bounds[:-1], q_bounds[1:], k_bounds[:-1], k_bounds[1:],
                       strict=True))))
    with torch.no_grad(), using(decoder.config, "harness_choices"), \
            engine._fast_layers(decoder):
        hidden = decoder(input_ids=_to_device(np.array(ids)[None], dev),
                         attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool,
                                                   device=dev),
                         position_ids=_to_device(np.array(pos)[None], dev),
                         use_cache=False, **{KEYWORD: context}).last_hidden_state
        flat = hidden[0]
        lp, greedy = _gather_logprobs(head, flat[_to_device(np.array(sel), dev)],
                                      _to_device(np.array(targets), dev),
                                      engine.options.fused)
        return _per_continuation(lp, greedy, spans)
