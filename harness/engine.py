"""Batched model work: log-likelihood of continuations and generation.

Requests are sorted by length and packed into batches by a token budget, so padding stays
small; results come back in request order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.progress import Progress
from harness.specs import GenerationSpec

# Token budget per batch (padded tokens x rows) on CPU when --batch-size is auto; on CUDA it
# is sized from free memory (auto_token_budget).
CPU_TOKEN_BUDGET = 8192


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
    return encode_pairs(tokenizer, [(context, continuation)])[0]


def encode_many(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """`prompts.encode` over many texts in batched tokenizer calls (same ids, far fewer calls)."""
    bos = tokenizer.bos_token
    out: list[list[int]] = [[] for _ in texts]
    for special in (True, False):
        idx = [i for i, t in enumerate(texts) if (not (bos and t.startswith(bos))) == special]
        if idx:
            ids = tokenizer([texts[i] for i in idx], add_special_tokens=special)["input_ids"]
            for i, x in zip(idx, ids, strict=True):
                out[i] = list(x)
    return out


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]],
                 ) -> list[tuple[list[int], list[int]]]:
    """`encode_pair` over many (context, continuation) pairs, batched."""
    moved = []
    for context, continuation in pairs:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        moved.append((context, continuation))
    contexts = sorted({c for c, _ in moved})
    ctx_ids = dict(zip(contexts, encode_many(tokenizer, contexts), strict=True))
    wholes = encode_many(tokenizer, [c + x for c, x in moved])
    return [(ctx_ids[c], w[len(ctx_ids[c]):]) for (c, _), w in zip(moved, wholes, strict=True)]


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
        self.token_budget = token_budget or auto_token_budget(model, device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.backoffs = 0
        self._static_width, self._static_rows = 0, 0

    def _with_backoff(self, batch: list[int], run: Callable[[list[int]], None],
                      describe: Callable[[int], str]) -> None:
        """Run a batch; on CUDA out-of-memory halve it (and the budget, remembered for the
        rest of the run) and retry. A single row that still does not fit is an error."""
        import torch

        try:
            run(batch)
            return
        except torch.cuda.OutOfMemoryError:
            pass
        # Outside the except block: the traceback no longer pins the failed batch's tensors.
        torch.cuda.empty_cache()
        if len(batch) == 1:
            from harness.errors import ModelError

            raise ModelError(f"{describe(batch[0])} does not fit in GPU memory even alone; "
                             f"lower max_new_tokens or --max-length, or use a larger GPU")
        self.backoffs += 1
        self.token_budget = max(self.token_budget // 2, 1)
        if self.batch_size:
            self.batch_size = max(self.batch_size // 2, 1)
        if self._static_rows:
            self._static_rows = max(self._static_rows // 2, 1)
        half = len(batch) // 2
        self._with_backoff(batch[:half], run, describe)
        self._with_backoff(batch[half:], run, describe)

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

        def run(batch: list[int]) -> None:
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

        for batch in _batches([len(x) for x in inputs], self.batch_size, self.token_budget):
            self._with_backoff(batch, run, lambda i: f"request {i} ({len(inputs[i])} tokens)")
        return [r for r in results if r is not None]

    # -- multiple choice: one context, several continuations --------------------------------
    def loglikelihood_choices(self, groups: Sequence[tuple[tuple[int, ...],
                                                           Sequence[tuple[int, ...]]]],
                              progress: Progress, label: str,
                              ) -> list[list[LoglikelihoodResult]]:
        """Log-likelihood of each continuation of each shared context.

        Each item is one packed row (context once, then its continuations; see
        `_choices_batch`), rows are sorted by length and batched by a token budget, and the LM
        head runs only at the positions that are scored, with log-probabilities gathered from a
        float32 log-softmax there. Same inputs as `loglikelihood` (context + continuation), so
        the same numbers up to float rounding. Items longer than the context window, and models
        whose head is not a plain linear layer or whose attention takes no 4D mask (flash
        attention), take the one-row-per-continuation path (lm-eval's left truncation).
        """
        parts = _split_model(self.model)
        fits = [len(c) + max(len(x) for x in conts) <= self.max_length
                for c, conts in groups]
        out: list[list[LoglikelihoodResult] | None] = [None] * len(groups)
        slow = [i for i, ok in enumerate(fits) if not ok or parts is None]
        if slow:
            flat = [LoglikelihoodRequest(groups[i][0], c) for i in slow for c in groups[i][1]]
            res = iter(self.loglikelihood(flat, progress, f"{label} (long)"))
            for i in slow:
                out[i] = [next(res) for _ in groups[i][1]]
        fast = [i for i, ok in enumerate(fits) if ok and parts is not None]
        task_id = progress.add(label, len(fast))
        cost = [len(groups[i][0]) + sum(len(c) for c in groups[i][1]) for i in fast]

        def run(batch: list[int]) -> None:
            items = [fast[b] for b in batch]
            for i, res in zip(items, self._choices_batch([groups[i] for i in items], parts),
                              strict=True):
                out[i] = res
            progress.advance(task_id, len(items))

        for batch in _batches(cost, self.batch_size, self.token_budget):
            self._with_backoff(batch, run, lambda b: f"item {fast[b]} ({cost[b]} tokens)")
        return [o if o is not None else [] for o in out]

    def _choices_batch(self, groups: Sequence[tuple[tuple[int, ...], Sequence[tuple[int, ...]]]],
                       parts: tuple[Any, Any]) -> list[list[LoglikelihoodResult]]:
        """One packed row per item: context, then every continuation, each continuation
        attending to the context and to itself only (a prefix-sharing 4D mask) with positions
        that restart after the context — the same inputs as one row per continuation."""
        import torch

        decoder, head = parts
        dev = self.device
        rows = [list(ctx) + [t for c in conts for t in c] for ctx, conts in groups]
        width = max(len(r) for r in rows)
        n = len(groups)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        seg = torch.full((n, width), -1, dtype=torch.long)  # -1 padding, 0 context, j+1 choice j
        sel_b: list[int] = []
        sel_t: list[int] = []
        targets: list[int] = []
        starts: list[list[int]] = []
        for b, (ctx, conts) in enumerate(groups):
            lc = len(ctx)
            ids[b, : len(rows[b])] = torch.tensor(rows[b])
            pos[b, :lc] = torch.arange(lc)
            seg[b, :lc] = 0
            at, item_starts = lc, []
            for j, c in enumerate(conts):
                pos[b, at: at + len(c)] = torch.arange(lc, lc + len(c))
                seg[b, at: at + len(c)] = j + 1
                item_starts.append(at)
                # Token t >= 1 of the continuation is predicted at its position t - 1.
                sel_b += [b] * (len(c) - 1)
                sel_t += list(range(at, at + len(c) - 1))
                targets += list(c[1:])
                at += len(c)
            starts.append(item_starts)
        seg = seg.to(dev)
        i = torch.arange(width, device=dev)
        causal = i[None, :] <= i[:, None]
        same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
        valid = (seg >= 0)[:, None, :] & (seg >= 0)[:, :, None]
        # Padding queries see themselves only, so no row of the softmax is empty (no NaN).
        mask = (causal[None] & same & valid) | torch.eye(width, dtype=torch.bool, device=dev)[None]
        with torch.no_grad():
            hidden = decoder(input_ids=ids.to(dev), attention_mask=mask[:, None],
                             position_ids=pos.to(dev)).last_hidden_state
            last_ctx = torch.tensor([len(ctx) - 1 for ctx, _ in groups], device=dev)
            first_lp = torch.log_softmax(
                head(hidden[torch.arange(n, device=dev), last_ctx]).float(), dim=-1)
            rest_lp, rest_greedy = _gather_logprobs(
                head, hidden[torch.tensor(sel_b, dtype=torch.long, device=dev),
                             torch.tensor(sel_t, dtype=torch.long, device=dev)],
                torch.tensor(targets, dtype=torch.long, device=dev))
            first_tok = [c[0] for _, conts in groups for c in conts]
            owner = torch.tensor([b for b, (_, conts) in enumerate(groups) for _ in conts],
                                 device=dev)
            ft = torch.tensor(first_tok, device=dev)
            lp0 = first_lp[owner].gather(1, ft[:, None])[:, 0].tolist()
            greedy0 = (first_lp[owner].argmax(-1) == ft).tolist()
        lp_rest, greedy_rest = rest_lp.tolist(), rest_greedy.tolist()
        results: list[list[LoglikelihoodResult]] = []
        k = off = 0
        for _, conts in groups:
            item = []
            for c in conts:
                m = len(c) - 1
                item.append(LoglikelihoodResult(
                    float(lp0[k] + sum(lp_rest[off: off + m])),
                    bool(greedy0[k] and all(greedy_rest[off: off + m])), len(c)))
                k += 1
                off += m
            results.append(item)
        return results

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                 progress: Progress, label: str) -> list[str]:
        """Greedy (or seeded sampling) continuations of token-id prompts, left-padded batches.

        On CUDA (unless HARNESS_STATIC_CACHE=0) every batch has one shape — all prompts padded
        to the longest, a fixed number of rows — with a static KV cache, so transformers
        compiles the decode step once per run instead of once per batch shape.
        """
        import torch

        outputs: list[str | None] = [None] * len(prompts)
        task_id = progress.add(label, len(prompts))
        if spec.do_sample:
            torch.manual_seed(spec.seed)
        static = self.device.startswith("cuda") and os.environ.get("HARNESS_STATIC_CACHE",
                                                                   "1") != "0"
        lengths = [len(p) + spec.max_new_tokens for p in prompts]
        if static:
            # One shape for the whole run: later calls (store chunks) reuse the first call's
            # width and row count unless a prompt is longer.
            width = max(-(-max(len(p) for p in prompts) // 64) * 64, self._static_width)
            rows = self._static_rows or self.batch_size or max(1, min(
                len(prompts), self.token_budget // (width + spec.max_new_tokens)))
            self._static_width, self._static_rows = width, rows
            order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
            batches = [order[i: i + rows] for i in range(0, len(order), rows)]
        else:
            width = 0
            batches = _batches(lengths, self.batch_size, self.token_budget)

        def run(batch: list[int]) -> None:
            pad_to = max(width, max(len(prompts[i]) for i in batch))
            fill = (self._static_rows or len(batch)) if static else len(batch)
            padded = batch + [batch[0]] * max(0, fill - len(batch))  # keep one shape
            ids = torch.full((len(padded), pad_to), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(padded), pad_to), dtype=torch.long)
            for row, i in enumerate(padded):
                p = list(prompts[i])
                ids[row, pad_to - len(p):] = torch.tensor(p)
                mask[row, pad_to - len(p):] = 1
            kwargs: dict[str, Any] = dict(
                max_new_tokens=spec.max_new_tokens, do_sample=spec.do_sample,
                pad_token_id=self.pad_id, eos_token_id=self.tokenizer.eos_token_id)
            if spec.do_sample:
                kwargs.update(temperature=spec.temperature, top_p=spec.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if spec.stop:
                kwargs.update(stop_strings=list(spec.stop), tokenizer=self.tokenizer)
            if static:
                kwargs["cache_implementation"] = "static"
            with torch.no_grad():
                out = self.model.generate(input_ids=ids.to(self.device),
                                          attention_mask=mask.to(self.device), **kwargs)
            new = out[:, pad_to:].tolist()
            for row, i in enumerate(batch):
                outputs[i] = cut_at_stop(
                    self.tokenizer.decode(new[row], skip_special_tokens=True), spec.stop)
            progress.advance(task_id, len(batch))

        for batch in batches:
            self._with_backoff(batch, run,
                               lambda i: f"prompt {i} ({len(prompts[i])} tokens + "
                                         f"{spec.max_new_tokens} new)")
        return [o if o is not None else "" for o in outputs]


def auto_token_budget(model: Any, device: str) -> int:
    """Tokens per batch: on CUDA, from the free memory and the model's per-token cost (KV
    cache plus a layer's activations); on CPU a fixed budget that keeps batches cache-sized."""
    if not device.startswith("cuda"):
        return CPU_TOKEN_BUDGET
    import torch

    cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    cfg = getattr(cfg, "text_config", cfg)
    hidden = getattr(cfg, "hidden_size", 4096)
    layers = getattr(cfg, "num_hidden_layers", 32)
    heads = getattr(cfg, "num_attention_heads", 32)
    kv = getattr(cfg, "num_key_value_heads", heads) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    inter = getattr(cfg, "intermediate_size", 4 * hidden)
    per_token = 2 * (2 * layers * kv * head_dim + 8 * hidden + 3 * inter)  # bf16 bytes
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    # A third of the free memory: the rest covers transient copies (cache concatenation,
    # grouped-query K/V expansion, logits chunks) and the allocator's fragmentation.
    return int(max(4096, min(free * 0.3 / per_token, 1 << 18)))


_NON_PLAIN_HEAD = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder, lm_head) of a plain causal LM (PEFT-wrapped or not): the LM head is a linear
    layer on the decoder's last hidden state, so it can run at chosen positions only. None
    otherwise. LoRA layers are injected in place, so calling the inner decoder still applies
    the active adapter."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (hasattr(inner, "model") and hasattr(inner, "lm_head")) or any(
            getattr(inner.config, a, None) for a in _NON_PLAIN_HEAD):
        return None
    return inner.model, inner.lm_head


def _split_model(model: Any) -> tuple[Any, Any] | None:
    """decoder_and_head, for the packed multiple-choice rows, which also need an attention
    implementation that takes a custom 4D mask."""
    parts = decoder_and_head(model)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(inner.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return None
    return parts


def _gather_logprobs(head: Any, hidden: Any, targets: Any, chunk: int = 4096) -> tuple[Any, Any]:
    """log p(target) and argmax == target at each row of `hidden`, the head and a float32
    log-softmax computed a chunk of rows at a time to bound memory."""
    import torch

    lps, greedy = [], []
    for i in range(0, hidden.shape[0], chunk):
        logits = head(hidden[i: i + chunk]).float()
        t = targets[i: i + chunk]
        lps.append(logits.gather(1, t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1))
        greedy.append(logits.argmax(-1) == t)
    if not lps:
        return hidden.new_zeros(0).float(), hidden.new_zeros(0, dtype=torch.bool)
    return torch.cat(lps), torch.cat(greedy)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string, stripped."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut].strip()

