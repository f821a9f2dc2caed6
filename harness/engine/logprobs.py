"""Log-probabilities of target tokens from hidden states: the LM head and a float32
log-softmax at the scored positions only, summed per continuation on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.engine.arch import _to_device


def _gather_logprobs(head: Any, hidden: Any, targets: Any, fused: str = "auto",
                     chunk: int = 4096) -> tuple[Any, Any]:
    """The log p(target) and argmax == target at each row of `hidden`, the head and a float32
    log-softmax computed a chunk of rows at a time to bound memory (on CUDA in half precision
    one fused pass over each chunk's logits: `kernels.target_logprobs`, unless `fused` is
    "off").
    """
    import torch

    from harness.kernels import target_logprobs

    lps, greedy = [], []
    for i in range(0, hidden.shape[0], chunk):
        logits = head(hidden[i: i + chunk])
        t = targets[i: i + chunk].to(logits.device)  # the head may sit on another GPU
        fused_lp = target_logprobs(logits, t, fused)
        if fused_lp is not None:
            lps.append(fused_lp[0])
            greedy.append(fused_lp[1])
            continue
        logits = logits.float()
        lps.append(logits.gather(1, t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1))
        greedy.append(logits.argmax(-1) == t)
    if not lps:
        return hidden.new_zeros(0).float(), hidden.new_zeros(0, dtype=torch.bool)
    return torch.cat(lps), torch.cat(greedy)


def _per_continuation(lp: Any, greedy: Any, spans: Sequence[tuple[int, int]],
                      ) -> tuple[Any, Any]:
    """Per-token log-probabilities and argmax flags summed per continuation on the device:
    (float64 sums, counts of tokens that are not the argmax), in `spans` order. Each
    continuation's tokens are a row of a [continuations, longest] index into the scored
    positions, padding pointing at an appended zero.
    """
    import numpy as np
    import torch

    longest = max(b - a for a, b in spans)
    idx = np.full((len(spans), longest), lp.shape[0], dtype=np.int64)
    for k, (a, b) in enumerate(spans):
        idx[k, : b - a] = np.arange(a, b)
    idx_t = _to_device(idx, str(lp.device))
    zero = lp.new_zeros(1)
    lp_sum = torch.cat([lp, zero]).double()[idx_t].sum(1)
    miss = torch.cat([(~greedy).to(torch.int32), zero.to(torch.int32)])[idx_t].sum(1)
    return lp_sum, miss

