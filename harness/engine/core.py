"""`Engine`: batched model work on one loaded model (whichever adapter is active) —
log-likelihood of continuations, multiple choice, generation — with the out-of-memory
back-off. Requests are sorted by length and packed into batches by a token budget, so padding
stays small; results come back in request order. How it computes is an `EngineOptions`,
handed in; what it did (decode mode and attention, fused kernels, back-offs) it records on
itself for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.engine.arch import _greedy_loop_ok, _split_model, _split_over_gpus
from harness.engine.batching import (
    GREEDY_MEMORY_SHARE,
    PACK_WIDTH,
    _batches,
    _pack,
    auto_token_budget,
    greedy_batches,
    greedy_costs,
    left_padded,
)
from harness.engine.choices import packed_rows
from harness.engine.greedy import Generation, generation_from_ids, greedy
from harness.engine.logprobs import _gather_logprobs
from harness.options import EngineOptions
from harness.progress import Progress
from harness.specs import GenerationSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from harness.shapes import EngineRan


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """A continuation to score after its context, as token ids."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class LoglikelihoodResult:
    """A continuation's summed log-probability, whether it is greedy, its token count."""

    logprob: float       # sum over continuation tokens
    is_greedy: bool      # every continuation token is the argmax
    n_tokens: int


# A multiple-choice item as token ids: (context, [continuation, ...]).
Choices = tuple[tuple[int, ...], Sequence[tuple[int, ...]]]


@dataclass
class PendingChoices:
    """`Engine.submit_choices`'s queued work: results of the items already computed, and per
    batch (item indices, per-continuation log-probabilities, non-greedy counts) on the device.
    """
    groups: Sequence[Choices]
    out: list[list[LoglikelihoodResult] | None]
    pending: list[tuple[list[int], Any, Any]]


class Engine:
    """Runs requests on one loaded model (whichever adapter is active)."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, device: str,
                 max_length: int,
                 batch_size: int | None = None, token_budget: int | None = None,
                 options: EngineOptions | None = None):
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
        self.options = options or EngineOptions()
        self.decode_mode = ""  # how the last greedy generation ran: cuda-graph, eager, generate
        self.decode_attention = ""  # its decode-step attention: flash varlen or sdpa
        self.generate_batches = 0  # how many batches the last `generate` call planned
        self.fused_kernels: list[str] = []  # what the last scoring/decoding call ran fused
        self.fused_seen: set[str] = set()  # what any call of this engine ran fused

    @contextmanager
    def _fast_layers(self, decoder: Any, parts: bool = False) -> Iterator[None]:
        """The fused kernels of `harness.kernels` for the norms, MLPs and rotary embedding,
        where they serve (CUDA, half precision, Triton) and the options allow.
        """
        from harness.kernels import fused

        with fused(decoder, self.options.fused) as kinds:
            self.fused_kernels = kinds
            self.fused_seen.update(kinds)
            yield

    def _with_backoff(self, batch: list[int], run: Callable[[list[int]], None],
                      describe: Callable[[int], str]) -> None:
        """Run a batch; on CUDA out-of-memory halve it (and the budget, remembered for the
        rest of the run) and retry. A single row that still does not fit is an error.
        """
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
            rows: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
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
                    torch.tensor(targets), self.options.fused)
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
        can prepare the next items meanwhile; `collect_choices` waits and reads the results.
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
        pending: list[tuple[list[int], Any, Any]] = []
        if not fast:
            return PendingChoices(groups, out, pending)
        cost = [len(groups[i][0]) + sum(len(c) for c in groups[i][1]) for i in fast]
        width = max(PACK_WIDTH, -(-max(cost) // 64) * 64)
        rows = _pack(cost, width)

        def run(batch: list[int]) -> None:
            items = [fast[k] for r in batch for k in rows[r]]
            assert parts is not None  # `fast` holds only items with a split model
            lp, miss = packed_rows(self, [[groups[fast[k]] for k in rows[r]] for r in batch],
                                   parts)
            pending.append((items, lp, miss))

        budget = self.batch_size * max(cost) if self.batch_size else self.token_budget
        for batch in _batches([width] * len(rows), None, budget):
            self._with_backoff(batch, run, lambda r: f"row of {len(rows[r])} items "
                                                     f"({sum(cost[k] for k in rows[r])} tokens)")
        return PendingChoices(groups, out, pending)

    def ran(self) -> EngineRan:
        """What ran, for report.json's per-run `engine` block: the last decode path, its
        attention, the fused kernels any call used, and out-of-memory back-offs.
        """
        return {"decode_mode": self.decode_mode or None,
                "decode_attention": self.decode_attention or None,
                "fused_kernels": sorted(self.fused_seen), "backoffs": self.backoffs}

    def collect_choices(self, handle: PendingChoices, progress: Progress, task_id: int,
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


    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                 progress: Progress, label: str) -> list[str]:
        """The generated texts (see generate_detailed)."""
        return [g.text for g in self.generate_detailed(prompts, spec, progress, label)]

    def generate_detailed(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                          progress: Progress, label: str) -> list[Generation]:
        """Greedy (or seeded sampling) continuations of token-id prompts, in batches sorted
        by length and cut by the token budget.

        Greedy decoding runs `greedy.greedy` (the prompts packed into one prompt pass, a
        per-row-slot KV cache, flash attention, on CUDA each decode step replayed as a CUDA
        graph); sampling, and models `_greedy_loop_ok` turns away, run transformers'
        `generate` on left-padded batches.
        """
        import torch

        outputs: list[Generation | None] = [None] * len(prompts)
        task_id = progress.add(label, len(prompts))
        if spec.do_sample:
            torch.manual_seed(spec.seed)
        fast = not spec.do_sample and self.options.greedy_loop and _greedy_loop_ok(self.model)
        lengths = [len(p) + spec.max_new_tokens for p in prompts]
        eos = self.tokenizer.eos_token_id

        def run(batch: list[int]) -> None:
            if fast:
                new = greedy(self, [prompts[i] for i in batch], spec.max_new_tokens, eos)
            else:
                ids, mask = left_padded(prompts, batch, self.pad_id)
                pad_to = ids.shape[1]
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
                outputs[i] = generation_from_ids(self.tokenizer, new[row], eos, spec)
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
