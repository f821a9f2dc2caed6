"""Batched model work: log-likelihood of continuations and generation.

Requests are sorted by length and packed into batches by a token budget, so padding stays
small; results come back in request order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.progress import Progress
from harness.specs import GenerationSpec

# Default token budget per batch (prompt tokens x rows) when --batch-size is auto.
CPU_TOKEN_BUDGET = 8192
CUDA_TOKEN_BUDGET = 65536


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float       # sum over continuation tokens
    is_greedy: bool      # every continuation token is the argmax
    n_tokens: int


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's context/continuation split: trailing spaces of the context move to the
    continuation; the pair is encoded whole and the context's tokens are cut off the front."""
    from harness.prompts import encode

    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def _batches(lengths: Sequence[int], batch_size: int | None, budget: int) -> list[list[int]]:
    """Indices sorted longest first, cut into batches of `batch_size` rows, or of at most
    `budget` padded tokens when batch_size is None."""
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


class Engine:
    """Runs requests on one loaded model (whichever adapter is active)."""

    def __init__(self, model: Any, tokenizer: Any, device: str, max_length: int,
                 batch_size: int | None = None, token_budget: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = token_budget or (CUDA_TOKEN_BUDGET if device.startswith("cuda")
                                             else CPU_TOKEN_BUDGET)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # -- log-likelihood --------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: Progress,
                      label: str, on_batch: Callable[[list[int]], None] | None = None,
                      ) -> list[LoglikelihoodResult]:
        """Sum of log-probabilities of each continuation given its context.

        As lm-eval: the input is (context + continuation)[-(max_length + 1):][:-1], so an
        over-long pair loses tokens from the left; logits are taken at the continuation's
        positions only, log-softmax in float32.
        """
        import torch

        inputs: list[list[int]] = []
        for r in requests:
            if not r.continuation:
                raise ValueError("empty continuation")
            inputs.append(list(r.context + r.continuation)[-(self.max_length + 1):][:-1])
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        task_id = progress.add(label, len(requests))
        for batch in _batches([len(x) for x in inputs], self.batch_size, self.token_budget):
            width = max(len(inputs[i]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
                mask[row, : len(inputs[i])] = 1
            with torch.no_grad():
                hidden = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits
            for row, i in enumerate(batch):
                cont = requests[i].continuation
                n, end = len(cont), len(inputs[i])
                logits = hidden[row, end - n: end].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                target = torch.tensor(cont, device=logprobs.device)
                picked = logprobs.gather(1, target[:, None])[:, 0]
                greedy = bool((logits.argmax(-1) == target).all())
                results[i] = LoglikelihoodResult(float(picked.sum()), greedy, n)
            if on_batch is not None:
                on_batch(batch)
            progress.advance(task_id, len(batch))
        return [r for r in results if r is not None]

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                 progress: Progress, label: str) -> list[str]:
        """Greedy (or seeded sampling) continuations of token-id prompts, left-padded batches."""
        import torch

        outputs: list[str | None] = [None] * len(prompts)
        task_id = progress.add(label, len(prompts))
        if spec.do_sample:
            torch.manual_seed(spec.seed)
        lengths = [len(p) + spec.max_new_tokens for p in prompts]
        for batch in _batches(lengths, self.batch_size, self.token_budget):
            width = max(len(prompts[i]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                p = list(prompts[i])
                ids[row, width - len(p):] = torch.tensor(p)
                mask[row, width - len(p):] = 1
            kwargs: dict[str, Any] = dict(
                max_new_tokens=spec.max_new_tokens, do_sample=spec.do_sample,
                pad_token_id=self.pad_id, eos_token_id=self.tokenizer.eos_token_id)
            if spec.do_sample:
                kwargs.update(temperature=spec.temperature, top_p=spec.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if spec.stop:
                kwargs.update(stop_strings=list(spec.stop), tokenizer=self.tokenizer)
            with torch.no_grad():
                out = self.model.generate(input_ids=ids.to(self.device),
                                          attention_mask=mask.to(self.device), **kwargs)
            new = out[:, width:].tolist()
            for row, i in enumerate(batch):
                outputs[i] = cut_at_stop(
                    self.tokenizer.decode(new[row], skip_special_tokens=True), spec.stop)
            progress.advance(task_id, len(batch))
        return [o if o is not None else "" for o in outputs]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string, stripped."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut].strip()


def now() -> float:
    return time.perf_counter()
