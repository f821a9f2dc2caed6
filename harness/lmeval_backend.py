"""`LmEvalBackend`: the `Backend` protocol on lm-evaluation-harness's HFLM, over the model the
harness has loaded (base or base + adapter, whichever is active).

`harness run --backend lm-eval` runs the harness's own tasks through it: the prompts, token
ids, metrics, intervals and reports are the harness's, and every model call is lm-eval's
(`HFLM._loglikelihood_tokens` for log-likelihoods, `HFLM._model_generate` for generation). So
a task's figures can be checked against lm-eval's model code on any model, and the engine's
own fast paths (`--backend hf`, the default) are measured against it. Token ids go in as the
harness built them, so both backends score the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.engine import (
    Choices,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    PendingChoices,
)
from harness.engine.batching import left_padded
from harness.engine.greedy import Generation, generation_from_ids
from harness.errors import DataError, first_line
from harness.progress import Progress
from harness.shapes import EngineRan
from harness.specs import GenerationSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

GENERATION_BATCH = 16  # prompts per generate call when --batch-size is not given


class LmEvalBackend:
    """A `Backend` whose model calls are lm-eval HFLM's, on an already loaded model."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, device: str,
                 max_length: int, batch_size: int | None = None):
        from lm_eval.models.huggingface import HFLM

        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size or "auto",
                       max_length=max_length)
        self.generated = False

    def ran(self) -> EngineRan:
        """What ran, for report.json's per-run `engine` block (decode_mode null, as the engine's,
        when nothing was generated).
        """
        return {"decode_mode": "lm-eval HFLM generate" if self.generated else None,
                "decode_attention": None, "fused_kernels": [], "backoffs": 0}

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: Progress,
                      label: str) -> list[LoglikelihoodResult]:
        """Each continuation's summed log-probability, through HFLM._loglikelihood_tokens
        (its batching, its left truncation to max_length + 1 tokens).
        """
        task_id = progress.add(label, len(requests))
        results = self._loglikelihoods(requests)
        progress.advance(task_id, len(requests))
        return results

    def _loglikelihoods(self, requests: Sequence[LoglikelihoodRequest],
                        ) -> list[LoglikelihoodResult]:
        reqs = []
        for r in requests:
            if not r.continuation:
                raise ValueError("empty continuation")
            # As lm-eval's own `loglikelihood`: an empty context becomes the prefix token.
            context = list(r.context) or [self.lm.prefix_token_id]
            reqs.append((("", ""), context, list(r.continuation)))
        try:
            out = self.lm._loglikelihood_tokens(reqs, disable_tqdm=True)
        except Exception as err:
            raise DataError(f"lm-eval backend: log-likelihoods failed: {first_line(err)}") \
                from None
        return [LoglikelihoodResult(float(lp), bool(greedy), len(r.continuation))
                for (lp, greedy), r in zip(out, requests, strict=True)]

    def submit_choices(self, groups: Sequence[Choices], progress: Progress,
                       label: str) -> PendingChoices:
        """Every choice of every item as one log-likelihood request each (lm-eval's layout:
        the context repeated per choice); computed here, so `collect_choices` only reads (and
        moves the kind's progress bar).
        """
        flat = [LoglikelihoodRequest(ctx, cont) for ctx, conts in groups for cont in conts]
        results = iter(self._loglikelihoods(flat))
        out: list[list[LoglikelihoodResult] | None] = [
            [next(results) for _ in conts] for _, conts in groups]
        return PendingChoices(groups, out, [])

    def collect_choices(self, handle: PendingChoices, progress: Progress,
                        task_id: int) -> list[list[LoglikelihoodResult]]:
        """The results `submit_choices` computed, per item."""
        progress.advance(task_id, len(handle.groups))
        return [r for r in handle.out if r is not None]

    def generate_detailed(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                          progress: Progress, label: str) -> list[Generation]:
        """Continuations through HFLM._model_generate (transformers' `generate` with lm-eval's
        stop-sequence criteria) on left-padded batches, longest first.
        """
        import torch

        task_id = progress.add(label, len(prompts))
        self.generated = True
        if spec.do_sample:
            torch.manual_seed(spec.seed)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        size = self.batch_size or GENERATION_BATCH
        outputs: list[Generation | None] = [None] * len(prompts)
        kwargs: dict[str, Any] = {"do_sample": spec.do_sample}
        if spec.do_sample:
            kwargs.update(temperature=spec.temperature, top_p=spec.top_p)
        for start in range(0, len(order), size):
            batch = order[start: start + size]
            ids, mask = left_padded(prompts, batch, pad)
            width = ids.shape[1]
            try:
                new = self.lm._model_generate(
                    context=ids.to(self.lm.device), attention_mask=mask.to(self.lm.device),
                    max_length=width + spec.max_new_tokens, stop=list(spec.stop), **kwargs)
            except Exception as err:
                raise DataError(f"lm-eval backend: generation failed: {first_line(err)}") \
                    from None
            for row, i in enumerate(batch):
                outputs[i] = generation_from_ids(self.tokenizer, new[row, width:].tolist(),
                                                 eos, spec)
            progress.advance(task_id, len(batch))
        return [g for g in outputs if g is not None]
