"""Batched model work: log-likelihood of continuations and generation.

Requests are sorted by length and packed into batches by a token budget, so padding stays
small; results come back in request order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from harness.progress import Progress
from harness.specs import GenerationSpec

# Token budget per batch (padded tokens x rows) on CPU when --batch-size is auto; on CUDA it
# is sized from free memory (auto_token_budget).
CPU_TOKEN_BUDGET = 8192
# Share of the free GPU memory a greedy-decoding batch plans for (`greedy_batches`): the rest
# covers the allocator's fragmentation, the CUDA graph's pool and transient copies.
GREEDY_MEMORY_SHARE = 0.6
# Row width for packed multiple-choice items (wider when an item is longer). Attention over a
# 512-wide row costs about 4% of a layer's matmuls for a 2k-hidden model.
PACK_WIDTH = 512


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float       # sum over continuation tokens
    is_greedy: bool      # every continuation token is the argmax
    n_tokens: int


# A multiple-choice item as token ids: (context, [continuation, ...]).
Choices = tuple[tuple[int, ...], Sequence[tuple[int, ...]]]


@dataclass
class PendingChoices:
    """`Engine.submit_choices`'s queued work: results of the items already computed, and per
    batch (item indices, per-continuation log-probabilities, non-greedy counts) on the device."""
    groups: Sequence[Choices]
    out: list[list[LoglikelihoodResult] | None]
    pending: list[tuple[list[int], Any, Any]]


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
            ids = _batch_ids(tokenizer, [texts[i] for i in idx], special)
            for i, x in zip(idx, ids, strict=True):
                out[i] = list(x)
    return out


def _batch_ids(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    """Token ids of many texts. A transformers fast tokenizer's `__call__` is its Rust
    backend's `encode_batch` plus Python bookkeeping; the backend's `encode_batch_fast` (no
    offsets) gives the same ids in about half the time. Used when the backend has it and gives
    the same ids as `__call__` on the first text; `__call__` otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    if fast is not None:
        first = tokenizer(texts[:1], add_special_tokens=special)["input_ids"][0]
        if list(first) == backend.encode(texts[0], add_special_tokens=special).ids:
            return [e.ids for e in fast(texts, add_special_tokens=special)]
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


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


def _pack(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices grouped into rows of at most `width` tokens: best-fit decreasing (each item,
    longest first, goes to the row whose room fits it most tightly)."""
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
                 batch_size: int | None = None, token_budget: int | None = None,
                 compile: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = token_budget or auto_token_budget(model, device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.backoffs = 0
        # Share of free GPU memory a greedy-decoding batch may plan for (halved on OOM).
        self.memory_share = GREEDY_MEMORY_SHARE
        self.compile = compile
        self._compiled_calls: dict[str, list[Any]] = {}
        self.decode_mode = ""  # how the last greedy generation ran: cuda-graph, eager, generate
        self.decode_attention = ""  # its decode-step attention: flash varlen or sdpa
        self.generate_batches = 0  # how many batches the last `generate` call planned
        self.fused_kernels: list[str] = []  # what the last scoring/decoding call ran fused

    @contextmanager
    def _compiled(self, decoder: Any, parts: bool = False) -> Iterator[None]:
        """With `compile`, parts of the decoder run torch.compile'd (dynamic shapes) inside
        the block, and eager again after it. Scoring compiles whole layers: one compiled graph
        serves every layer. Greedy decoding (`parts=True`) compiles the norms and the MLPs
        only: a layer there writes the KV cache under its own index, which would compile once
        per layer; these parts hold most of a step's small elementwise kernels."""
        layers = getattr(decoder, "layers", None)
        if not self.compile or layers is None:
            yield
            return
        import torch

        if parts:
            modules = [decoder.norm] if hasattr(decoder, "norm") else []
            for layer in layers:
                for name in ("input_layernorm", "post_attention_layernorm", "mlp"):
                    modules += [getattr(layer, name)] if hasattr(layer, name) else []
                attn = getattr(layer, "self_attn", None)
                for name in ("q_norm", "k_norm"):
                    modules += [getattr(attn, name)] if hasattr(attn, name) else []
        else:
            modules = list(layers)
        # The compiled callables live on the modules, so every engine on this model (one per
        # variant: base, then adapter) reuses them instead of compiling again.
        for m in modules:
            if getattr(m, "_harness_compiled", None) is None:
                m._harness_compiled = torch.compile(m._call_impl, dynamic=True)
        calls = self._compiled_calls.setdefault("parts" if parts else "layers",
                                                [m._harness_compiled for m in modules])
        saved = [m._compiled_call_impl for m in modules]
        for m, call in zip(modules, calls, strict=True):
            m._compiled_call_impl = call
        try:
            yield
        finally:
            for m, call in zip(modules, saved, strict=True):
                m._compiled_call_impl = call

    @contextmanager
    def _fast_layers(self, decoder: Any, parts: bool = False) -> Iterator[None]:
        """With `compile`, the torch.compile'd layers (`_compiled`); otherwise the fused
        kernels of `harness.kernels` for the norms, MLPs and rotary embedding, where they
        serve (CUDA, half precision, Triton)."""
        if self.compile:
            with self._compiled(decoder, parts):
                yield
            return
        from harness.kernels import fused

        with fused(decoder) as kinds:
            self.fused_kernels = kinds
            yield

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
        self.memory_share /= 2
        if self.batch_size:
            self.batch_size = max(self.batch_size // 2, 1)
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
            rows, cols, targets = [], [], []
            for row, i in enumerate(batch):
                ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
                mask[row, : len(inputs[i])] = 1
                cont, end = requests[i].continuation, len(inputs[i])
                rows += [row] * len(cont)
                cols += range(end - len(cont), end)
                targets += cont
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device),
                                    use_cache=False).logits
                lp, greedy = _gather_logprobs(
                    lambda x: x, logits[torch.tensor(rows), torch.tensor(cols)],
                    torch.tensor(targets))
            lp_all, greedy_all = lp.tolist(), greedy.tolist()
            at = 0
            for i in batch:
                n = len(requests[i].continuation)
                results[i] = LoglikelihoodResult(float(sum(lp_all[at: at + n])),
                                                 all(greedy_all[at: at + n]), n)
                at += n
            if on_batch is not None:
                on_batch(batch)
            progress.advance(task_id, len(batch))

        for batch in _batches([len(x) for x in inputs], self.batch_size, self.token_budget):
            self._with_backoff(batch, run, lambda i: f"request {i} ({len(inputs[i])} tokens)")
        return [r for r in results if r is not None]

    # -- multiple choice: one context, several continuations --------------------------------
    def loglikelihood_choices(self, groups: Sequence[Choices], progress: Progress, label: str,
                              ) -> list[list[LoglikelihoodResult]]:
        """Log-likelihood of each continuation of each shared context.

        Each item is laid out once: its context, then every continuation, each continuation
        attending to the context and to itself only (a prefix-sharing mask), with positions
        that restart after the context — the same inputs as one row per continuation. Items
        are packed several to a row of a fixed width (best-fit decreasing, so padding stays a
        few percent), rows are batched by a token budget, and the LM head runs only at the
        positions that are scored, with log-probabilities gathered from a float32
        log-softmax there. Same numbers as `loglikelihood` up to float rounding. Items longer
        than the context window, and models whose head is not a plain linear layer or whose
        attention takes no 4D mask (flash attention), take the one-row-per-continuation path
        (lm-eval's left truncation).
        """
        task_id = progress.add(label, len(groups))
        return self.collect_choices(self.submit_choices(groups, progress, label), progress,
                                    task_id)

    def submit_choices(self, groups: Sequence[Choices], progress: Progress, label: str,
                       ) -> PendingChoices:
        """`loglikelihood_choices` in two halves: this one queues the device work and returns
        without waiting for it (inputs go over in pinned, non-blocking copies), so the caller
        can prepare the next items meanwhile; `collect_choices` waits and reads the results."""
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
        pending: list[tuple[list[int], Any, Any]] = []
        if not fast:
            return PendingChoices(groups, out, pending)
        cost = [len(groups[i][0]) + sum(len(c) for c in groups[i][1]) for i in fast]
        width = max(PACK_WIDTH, -(-max(cost) // 64) * 64)
        rows = _pack(cost, width)

        def run(batch: list[int]) -> None:
            items = [fast[k] for r in batch for k in rows[r]]
            lp, miss = self._choices_batch([[groups[fast[k]] for k in rows[r]] for r in batch],
                                           parts)
            pending.append((items, lp, miss))

        budget = self.batch_size * max(cost) if self.batch_size else self.token_budget
        for batch in _batches([width] * len(rows), None, budget):
            self._with_backoff(batch, run, lambda r: f"row of {len(rows[r])} items "
                                                     f"({sum(cost[k] for k in rows[r])} tokens)")
        return PendingChoices(groups, out, pending)

    def collect_choices(self, handle: PendingChoices, progress: Progress, task_id: Any,
                        ) -> list[list[LoglikelihoodResult]]:
        """Waits for `submit_choices`'s device work; one device-to-host copy per batch."""
        out = handle.out
        for items, lp, miss in handle.pending:
            lp_all, miss_all = lp.tolist(), miss.tolist()
            k = 0
            for i in items:
                res = []
                for c in handle.groups[i][1]:
                    res.append(LoglikelihoodResult(lp_all[k], miss_all[k] == 0, len(c)))
                    k += 1
                out[i] = res
        progress.advance(task_id, len(out))
        return [o if o is not None else [] for o in out]

    def _choices_batch(self, rows: Sequence[Sequence[Choices]], parts: tuple[Any, Any],
                       ) -> tuple[Any, Any]:
        """Packed rows of items (see `loglikelihood_choices`). Returns, on the device, each
        continuation's summed log-probability (float64) and its count of tokens that are not
        the argmax, in row order, item order, continuation order."""
        import numpy as np
        import torch

        decoder, head = parts
        dev = self.device
        if self._flash_choices_ok(decoder):
            return self._choices_flash(rows, parts)
        width = max(sum(len(ctx) + sum(len(c) for c in conts) for ctx, conts in row)
                    for row in rows)
        n = len(rows)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
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
        with torch.no_grad(), self._fast_layers(decoder):
            hidden = decoder(input_ids=_to_device(ids, dev),
                             attention_mask=_mask_for(mask[:, None], impl, hidden_dtype(decoder)),
                             position_ids=_to_device(pos, dev),
                             use_cache=False).last_hidden_state
            # The last layer's device (another GPU than the first under --device auto).
            at = str(hidden.device)
            flat = hidden.reshape(-1, hidden.shape[-1])
            lp, greedy = _gather_logprobs(head, flat[_to_device(np.array(sel), at)],
                                          _to_device(np.array(targets), str(flat.device)))
            return _per_continuation(lp, greedy, spans)

    def _flash_choices_ok(self, decoder: Any) -> bool:
        """Whether `_choices_flash` serves: CUDA, half precision, flash attention's
        variable-length kernel in this torch, one device, a model `_greedy_loop_ok` accepts
        (full attention through transformers' attention interface), not --compile.
        `HARNESS_CHOICES_ATTN=mask` keeps the masked rows; `=segments` takes the segment
        layout on any device and dtype (attention per segment through sdpa off CUDA: for
        tests and diagnosis)."""
        import torch

        setting = os.environ.get("HARNESS_CHOICES_ATTN", "flash")
        if self.compile or setting == "mask" or not _greedy_loop_ok(self.model):
            return False
        if _split_over_gpus(self.model):
            return False
        return setting == "segments" or (
            self.device.startswith("cuda") and
            getattr(torch.ops.aten, "_flash_attention_forward", None) is not None and
            hidden_dtype(decoder) in (torch.float16, torch.bfloat16))

    def _choices_flash(self, rows: Sequence[Sequence[Choices]], parts: tuple[Any, Any],
                       ) -> tuple[Any, Any]:
        """`_choices_batch` on CUDA (see `_flash_choices_ok`): the batch's items packed into
        one sequence, no padding and no mask. Attention runs flash's variable-length kernel
        over segments — each context attends causally to itself; each continuation to its
        context and causally to itself — with each continuation's keys gathered as [context,
        continuation] (`harness_choices`). Same inputs and positions as the masked rows."""
        import numpy as np
        import torch

        decoder, head = parts
        dev = self.device
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
        state = {"cu_q": _to_device(np.array(q_bounds, dtype=i32), dev),
                 "cu_k": _to_device(np.array(k_bounds, dtype=i32), dev),
                 "kv": _to_device(np.array(kv, dtype=np.int64), dev),
                 "longest_q": longest_q, "longest_k": longest_k,
                 "spans": list(zip(q_bounds[:-1], q_bounds[1:], k_bounds[:-1], k_bounds[1:],
                                   strict=True))}
        with torch.no_grad(), _attention(decoder.config, "harness_choices"), \
                self._fast_layers(decoder):
            _ATTN_STATE["choices"] = state
            hidden = decoder(input_ids=_to_device(np.array(ids)[None], dev),
                             attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool,
                                                       device=dev),
                             position_ids=_to_device(np.array(pos)[None], dev),
                             use_cache=False).last_hidden_state
            flat = hidden[0]
            lp, greedy = _gather_logprobs(head, flat[_to_device(np.array(sel), dev)],
                                          _to_device(np.array(targets), dev))
            return _per_continuation(lp, greedy, spans)

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                 progress: Progress, label: str) -> list[str]:
        """The generated texts (see generate_detailed)."""
        return [g.text for g in self.generate_detailed(prompts, spec, progress, label)]

    def generate_detailed(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                          progress: Progress, label: str) -> list[Generation]:
        """Greedy (or seeded sampling) continuations of token-id prompts, in batches sorted
        by length and cut by the token budget.

        Greedy decoding runs `_greedy` (the prompts packed into one prompt pass, a
        per-row-slot KV cache, flash attention, on CUDA each decode step replayed as a CUDA
        graph); sampling, and models `_greedy_loop_ok` turns away, run transformers'
        `generate` on left-padded batches.
        """
        import torch

        outputs: list[Generation | None] = [None] * len(prompts)
        task_id = progress.add(label, len(prompts))
        if spec.do_sample:
            torch.manual_seed(spec.seed)
        fast = not spec.do_sample and os.environ.get("HARNESS_FAST_DECODE", "1") != "0" \
            and _greedy_loop_ok(self.model)
        lengths = [len(p) + spec.max_new_tokens for p in prompts]
        eos = self.tokenizer.eos_token_id

        def run(batch: list[int]) -> None:
            if fast:
                new = self._greedy([prompts[i] for i in batch], spec.max_new_tokens, eos)
            else:
                pad_to = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), pad_to), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), pad_to), dtype=torch.long)
                for row, i in enumerate(batch):
                    p = list(prompts[i])
                    ids[row, pad_to - len(p):] = torch.tensor(p)
                    mask[row, pad_to - len(p):] = 1
                kwargs: dict[str, Any] = dict(
                    max_new_tokens=spec.max_new_tokens, do_sample=spec.do_sample,
                    pad_token_id=self.pad_id, eos_token_id=eos)
                if spec.do_sample:
                    kwargs.update(temperature=spec.temperature, top_p=spec.top_p)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                if spec.stop:
                    kwargs.update(stop_strings=list(spec.stop), tokenizer=self.tokenizer)
                with torch.no_grad():
                    out = self.model.generate(input_ids=ids.to(self.device),
                                              attention_mask=mask.to(self.device), **kwargs)
                new = out[:, pad_to:].tolist()
                self.decode_mode = "generate"
            for row, i in enumerate(batch):
                outputs[i] = _generation(self.tokenizer, new[row], eos, spec)
            progress.advance(task_id, len(batch))

        if fast and self.batch_size is None and self.device.startswith("cuda") and \
                not _split_over_gpus(self.model):
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            batches = greedy_batches([len(p) for p in prompts], spec.max_new_tokens,
                                     greedy_costs(self.model), free * self.memory_share)
        else:
            batches = _batches(lengths, self.batch_size, self.token_budget)
        self.generate_batches = len(batches)
        for batch in batches:
            self._with_backoff(batch, run,
                               lambda i: f"prompt {i} ({len(prompts[i])} tokens + "
                                         f"{spec.max_new_tokens} new)")
        return [o if o is not None else Generation("", 0, False) for o in outputs]

    def _greedy(self, prompts: Sequence[Sequence[int]], new_tokens: int, eos: int | None,
                ) -> list[list[int]]:
        """Greedy decoding of a batch of prompts; each row's new tokens, cut after its first
        EOS (as `generate`, which pads a finished row).

        The prompt pass runs the prompts packed into one sequence, no padding, attention causal
        within each prompt (flash attention's variable-length kernel on CUDA); each prompt's
        K/V land in its row of a cache where each row then writes its next token at its own
        slot (`_RowCache`), so positions are the unpadded ones. Each decode step is one token per
        row whose inputs live in fixed buffers, so on CUDA the step is captured once as a CUDA
        graph and replayed: no per-step kernel launches or Python. Attention in decode reads
        each K/V head once for all its query heads. Stops early (checked every 32 steps) once
        every row has produced EOS.
        """
        import torch

        decoder, head = decoder_and_head(self.model)  # type: ignore[misc]
        dev = self.device if self.device != "auto" else str(self.model.device)
        inner = _unwrap(self.model)
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
        cache = _RowCache(at, length, rows)
        cache.prefill = (row_of.to(dev), pos.to(dev))
        slot = torch.arange(length, device=dev)
        out = torch.empty(rows, new_tokens, dtype=torch.long, device=dev)
        # The current CUDA device made the model's: graph capture and Triton launch there.
        on_device = torch.cuda.device(dev) if dev.startswith("cuda") else nullcontext()
        with torch.no_grad(), on_device, _attention(inner.config, "harness_greedy"), \
                self._fast_layers(decoder, parts=True):
            # Prompt pass over the packed prompts: attention causal within each prompt (flash's
            # variable-length kernel on CUDA), K/V written to each row's slots 0..len-1. The
            # mask is not used there; it is passed in 4D so transformers builds none.
            _ATTN_STATE["prefill"] = {"cu": cu, "longest": width,
                                      "spans": list(zip(bounds[:-1], bounds[1:], strict=True))}
            hidden = decoder(input_ids=ids.to(dev), attention_mask=(slot < 0)[None, None, None],
                             position_ids=pos[None].to(dev), past_key_values=cache,
                             use_cache=True).last_hidden_state
            del _ATTN_STATE["prefill"]
            cache.prefill = None
            last = hidden[0, (cu[1:] - 1).to(hidden.device)]
            out[:, 0] = head(last).argmax(-1).to(dev)
            del hidden
            token = out[:, :1].clone()
            used = (at + 1).to(torch.int32)
            choice = os.environ.get("HARNESS_DECODE_ATTN", "auto")
            fn = _varlen_decode() if dev.startswith("cuda") and choice in (
                "auto", "varlen") else None
            _ATTN_STATE.update(fn=fn, used=used, grouped=choice in ("auto", "grouped"),
                               cu_q=torch.arange(rows + 1, dtype=torch.int32, device=dev),
                               cu_k=torch.arange(rows + 1, dtype=torch.int32, device=dev) * length)
            self.decode_attention = _decode_attention_label(inner, dev, fn)

            def step() -> Any:
                used.copy_(at + 1)
                mask = (slot[None] <= at[:, None])[:, None, None, :]
                h = decoder(input_ids=token, attention_mask=mask, position_ids=at[:, None],
                            past_key_values=cache, use_cache=True).last_hidden_state
                return head(h[:, -1]).argmax(-1).to(dev)

            graph, result = None, None
            # A model split over several GPUs (--device auto) runs eagerly: a graph is
            # captured on one device's stream.
            if dev.startswith("cuda") and new_tokens > 2 and not _split_over_gpus(inner) and \
                    os.environ.get("HARNESS_CUDA_GRAPHS", "1") != "0":
                graph, result = _capture(step)
            self.decode_mode = "cuda-graph" if graph is not None else "eager"
            for t in range(1, new_tokens):
                if graph is not None:
                    graph.replay()
                    nxt = result
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


@dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    inter: int
    vocab: int


def _shape(model: Any) -> _Shape:
    """The sizes the memory estimates and kernel checks need, from the (inner, text) config,
    with Llama-7B-like defaults where a config lacks one."""
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
    product), and per row (the last position's logits in float32)."""
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
    out-of-memory back-off reports it)."""
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
    cache plus a layer's activations); on CPU a fixed budget that keeps batches cache-sized."""
    if not device.startswith("cuda"):
        return CPU_TOKEN_BUDGET
    import torch

    c = _shape(model)
    per_token = 2 * (2 * c.layers * c.kv_heads * c.head_dim + 8 * c.hidden + 3 * c.inter)
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
    inner = _unwrap(model)
    if not (hasattr(inner, "model") and hasattr(inner, "lm_head")) or any(
            getattr(inner.config, a, None) for a in _NON_PLAIN_HEAD):
        return None
    return inner.model, inner.lm_head


def _split_model(model: Any) -> tuple[Any, Any] | None:
    """decoder_and_head, for the packed multiple-choice rows, which also need an attention
    implementation that takes a custom 4D mask."""
    parts = decoder_and_head(model)
    inner = _unwrap(model)
    if getattr(inner.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return None
    return parts


def _gather_logprobs(head: Any, hidden: Any, targets: Any, chunk: int = 4096) -> tuple[Any, Any]:
    """log p(target) and argmax == target at each row of `hidden`, the head and a float32
    log-softmax computed a chunk of rows at a time to bound memory (on CUDA in half precision
    one fused pass over each chunk's logits: `kernels.target_logprobs`)."""
    import torch

    from harness.kernels import target_logprobs

    lps, greedy = [], []
    for i in range(0, hidden.shape[0], chunk):
        logits = head(hidden[i: i + chunk])
        t = targets[i: i + chunk].to(logits.device)  # the head may sit on another GPU
        fused = target_logprobs(logits, t)
        if fused is not None:
            lps.append(fused[0])
            greedy.append(fused[1])
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
    positions, padding pointing at an appended zero."""
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


@dataclass(frozen=True)
class Generation:
    """One generated continuation: its text (cut at a stop string), the number of new tokens
    before EOS, and whether it ran into max_new_tokens without EOS or a stop string."""

    text: str
    new_tokens: int
    hit_max_new_tokens: bool


def _generation(tokenizer: Any, ids: Sequence[int], eos: int | None,
                spec: GenerationSpec) -> Generation:
    ids = list(ids)
    finished = eos is not None and eos in ids
    if finished:
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


def _greedy_loop_ok(model: Any) -> bool:
    """Whether `Engine._greedy` can run this model: a plain causal LM (`decoder_and_head`)
    with sdpa or eager attention, every layer full attention (one cache length for all), of
    the families transformers marks compileable (their layers write the cache through
    `Cache.update` and take a prepared 4D mask)."""
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
    (--device auto)."""
    inner = _unwrap(model)
    placed = getattr(inner, "hf_device_map", None) or {}
    return len({str(d) for d in placed.values()} - {"cpu", "disk"}) > 1


def _to_device(array: Any, device: str) -> Any:
    """A numpy array as a tensor on `device`; to CUDA through pinned memory without blocking,
    so the host does not wait for the work already queued there."""
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
    sdpa takes booleans, eager adds a float mask to its scores."""
    if impl != "eager":
        return mask
    import torch

    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(dtype).min)


@contextmanager
def _attention(config: Any, impl: str) -> Iterator[None]:
    """The model's attention implementation set to `impl` (one of `_register_attention`'s)
    inside the block."""
    _register_attention()
    saved = config._attn_implementation
    config._attn_implementation = impl
    try:
        yield
    finally:
        config._attn_implementation = saved
        _ATTN_STATE.clear()  # the state of this call


_REGISTERED = False


def _register_attention() -> None:
    """Registers "harness_greedy" with transformers, the attention of `Engine._greedy`:
    - the prompt pass (`_ATTN_STATE["prefill"]` set): the prompts packed into one sequence,
      attention causal within each prompt — on CUDA in half precision flash attention's
      variable-length kernel over the prompts' boundaries (grouped K/V heads native), else
      causal sdpa prompt by prompt;
    - one query token per row (a decode step), where the Triton kernels serve (CUDA, half
      precision): `kernels.decode_attention`, each row's query heads that share a K/V head
      reading its first `used` slots once; else on CUDA in half precision flash
      attention's variable-length kernel (`_varlen_decode`; HARNESS_DECODE_ATTN=varlen
      picks it first);
      elsewhere each K/V head's query heads folded into the query axis, so K/V are read once,
      not repeated per query head, under the [rows, 1, 1, slots] mask.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    import torch
    from transformers import AttentionInterface

    sdpa = torch.nn.functional.scaled_dot_product_attention
    flash = getattr(torch.ops.aten, "_flash_attention_forward", None)

    def harness_greedy(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                       dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
                       ) -> tuple[Any, None]:
        groups = getattr(module, "num_key_value_groups", 1)
        b, h, n, d = query.shape
        pre = _ATTN_STATE.get("prefill")
        if pre is not None:  # [1, heads, packed tokens, dim]
            if flash is not None and query.is_cuda and query.dtype in (torch.float16,
                                                                       torch.bfloat16):
                cu = pre["cu"].to(query.device)
                out = flash.default(query[0].transpose(0, 1), key[0].transpose(0, 1),
                                    value[0].transpose(0, 1), cu, cu, pre["longest"],
                                    pre["longest"], 0.0, True, False, scale=scaling)[0]
                return out[None], None
            out = query.new_empty(b, h, n, value.shape[-1])
            for a, z in pre["spans"]:
                out[:, :, a:z] = sdpa(query[:, :, a:z], key[:, :, a:z], value[:, :, a:z],
                                      is_causal=True, scale=scaling, enable_gqa=groups > 1)
            return out.transpose(1, 2).contiguous(), None
        if _ATTN_STATE.get("grouped"):
            from harness import kernels

            if kernels.decode_attention_serves(query[:, :, 0], key):
                out = kernels.decode_attention(query[:, :, 0], key, value,
                                               _ATTN_STATE["used"].to(query.device), scaling)
                return out[:, None], None
        if _ATTN_STATE.get("fn") is not None and query.is_cuda and query.dtype in (
                torch.float16, torch.bfloat16):
            slots = key.shape[2]
            flat_k = key.transpose(1, 2).reshape(b * slots, key.shape[1], d)
            flat_v = value.transpose(1, 2).reshape(b * slots, value.shape[1], value.shape[-1])
            dev = query.device  # buffers live on the first GPU (--device auto: copies)
            out = _ATTN_STATE["fn"](query.reshape(b, h, d), flat_k, flat_v,
                                    _ATTN_STATE["cu_q"].to(dev), _ATTN_STATE["cu_k"].to(dev),
                                    slots, _ATTN_STATE["used"].to(dev), scaling)
            return out.reshape(b, 1, h, -1), None
        q = query.reshape(b, h // groups, groups, d)
        out = sdpa(q, key, value, attn_mask=attention_mask[:, :, :, : key.shape[-2]],
                   scale=scaling)
        return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None

    def harness_choices(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                        dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
                        ) -> tuple[Any, None]:
        """Packed multiple-choice segments (`Engine._choices_flash`): query [1, heads,
        tokens, dim]; each segment's keys gathered from the packed K/V."""
        st = _ATTN_STATE["choices"]
        k = key[0].transpose(0, 1).index_select(0, st["kv"])
        v = value[0].transpose(0, 1).index_select(0, st["kv"])
        q = query[0].transpose(0, 1)  # [tokens, heads, dim]
        if flash is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            out = flash.default(q, k, v, st["cu_q"], st["cu_k"], st["longest_q"],
                                st["longest_k"], 0.0, True, False, scale=scaling)[0]
            return out[None], None
        # Elsewhere segment by segment: causal aligned to the end of each segment's keys
        # (flash's convention when a segment has fewer queries than keys).
        out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])
        groups = q.shape[1] // k.shape[1]
        for qa, qz, ka, kz in st["spans"]:
            n, m = qz - qa, kz - ka
            allowed = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
            out[qa:qz] = sdpa(q[qa:qz].transpose(0, 1), k[ka:kz].transpose(0, 1),
                              v[ka:kz].transpose(0, 1), attn_mask=allowed, scale=scaling,
                              enable_gqa=groups > 1).transpose(0, 1)
        return out[None], None

    AttentionInterface.register("harness_greedy", harness_greedy)
    AttentionInterface.register("harness_choices", harness_choices)
    _REGISTERED = True


def _capture(step: Callable[[], Any]) -> tuple[Any, Any]:
    """`step` captured as a CUDA graph, after two warm-up runs on a side stream (a step only
    rewrites the current slots, so repeating it changes nothing). (None, None) when capture
    is not possible here; the caller then runs the step eagerly."""
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


class _RowCache:
    """The KV cache of `Engine._greedy`: per layer, K and V stored [rows, slots, kv heads, head
    dim] (the layout flash attention's variable-length kernel reads) and handed to attention as
    [rows, kv heads, slots, head dim] views. The prompt pass (`prefill`: each packed token's
    row and position) writes each prompt's K/V to its row's first slots and hands attention the
    packed K/V; a decode step writes row r's token at slot `at[r]`, its own length so far.
    Duck-types the one method of transformers' Cache that the decoder layers call (`update`)."""

    def __init__(self, at: Any, slots: int, rows: int):
        self.at = at
        self.slots = slots
        self.rows = rows
        self.prefill: tuple[Any, Any] | None = None
        self.every = None
        self.keys: dict[int, Any] = {}
        self.values: dict[int, Any] = {}

    def update(self, key: Any, value: Any, layer_idx: int, *args: Any, **kwargs: Any,
               ) -> tuple[Any, Any]:
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


def _decode_attention_label(model: Any, device: str, fn: Any) -> str:
    """Which decode-step attention `harness_greedy` takes for this model: the grouped Triton
    kernel (`kernels.decode_attention`), flash's variable-length kernel, or sdpa."""
    import torch

    from harness import kernels

    c = _shape(model)
    dtype = hidden_dtype(model)
    if _ATTN_STATE.get("grouped") and kernels.decode_attention_serves(
            torch.empty(1, c.heads, c.head_dim, dtype=dtype, device=device),
            torch.empty(1, c.kv_heads, 1, c.head_dim, dtype=dtype, device=device)):
        return "grouped (Triton)"
    if fn is not None and dtype in (torch.float16, torch.bfloat16):
        return "flash varlen"
    return "sdpa"


def _varlen_decode() -> Callable[..., Any] | None:
    """Flash attention's variable-length kernel with per-row K/V lengths (`seqused_k`), for
    one query token per row: f(q [rows, heads, dim], k/v [rows * slots, kv heads, dim],
    cu_q, cu_k, slots, used, scale). torch's public `varlen_attn` where it takes `seqused_k`,
    else the aten op where its schema has it; None without either."""
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


# What the registered attention functions read, set by the engine around its calls and
# cleared when `_attention` restores the model's attention implementation:
# - "prefill" (Engine._greedy's prompt pass): cu, longest, spans of the packed prompts;
# - fn (None: sdpa instead), cu_q, cu_k, used: the decode step's flash inputs, fixed buffers
#   so that a captured CUDA graph reads the current values;
# - "choices" (Engine._choices_flash): the segments' bounds and gathered key positions.
_ATTN_STATE: dict[str, Any] = {}
