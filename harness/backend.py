"""`Backend`: the model-facing calls the task kinds make. `harness.engine.Engine` implements
it on a transformers model (PEFT adapters switched on and off around it); a new backend (an
inference server, llama.cpp) is one class with these members, handed to the kinds in place
of the engine. `harness.lmeval_backend.LmEvalBackend` implements it on lm-eval's HFLM
(`--backend lm-eval`). `BACKENDS` maps each `--backend` name to a function building it from the
loaded model and the run's spec. lm-eval's own tasks (`--tasks lm_eval:NAME`) are a different
thing: lm-eval drives those end to end (harness/lmeval.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from harness.engine.core import Choices, LoglikelihoodRequest, LoglikelihoodResult, PendingChoices
from harness.engine.greedy import Generation
from harness.progress import Progress
from harness.shapes import EngineRan
from harness.specs import GenerationSpec, RunSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from harness.models import LoadedModel


class Backend(Protocol):
    """What a task kind may call: the tokenizer and context length, log-likelihoods, packed
    multiple choice in two halves (queue, then collect), and generation.
    """

    tokenizer: PreTrainedTokenizerBase
    max_length: int
    device: str

    def ran(self) -> EngineRan:
        """What ran, for report.json's per-run `engine` block (shapes.EngineRan)."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: Progress,
                      label: str) -> list[LoglikelihoodResult]:
        """Each continuation's summed log-probability given its context, as token ids."""

    def submit_choices(self, groups: Sequence[Choices], progress: Progress,
                       label: str) -> PendingChoices:
        """Queue multiple-choice items (a context, its continuations) for `collect_choices`."""

    def collect_choices(self, handle: PendingChoices, progress: Progress,
                        task_id: int) -> list[list[LoglikelihoodResult]]:
        """The log-likelihoods of each queued item's continuations, in order."""

    def generate_detailed(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                          progress: Progress, label: str) -> list[Generation]:
        """One continuation per token-id prompt, decoded as `spec` says (greedy by default)."""


def _hf(loaded: LoadedModel, spec: RunSpec) -> Backend:
    from harness.engine import Engine

    return Engine(loaded.model, loaded.tokenizer, loaded.device, loaded.max_length,
                  batch_size=spec.batch_size, options=spec.engine)


def _lm_eval(loaded: LoadedModel, spec: RunSpec) -> Backend:
    from harness.lmeval_backend import LmEvalBackend

    return LmEvalBackend(loaded.model, loaded.tokenizer, loaded.device, loaded.max_length,
                         spec.batch_size)


BACKENDS: dict[str, Callable[[LoadedModel, RunSpec], Backend]] = {
    "hf": _hf,
    "lm-eval": _lm_eval,
}
