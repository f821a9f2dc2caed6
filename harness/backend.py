"""`Backend`: the model-facing calls the task kinds make. `harness.engine.Engine` implements
it on a transformers model (PEFT adapters switched on and off around it); a new backend (an
inference server, llama.cpp) is one class with these members, handed to the kinds in place
of the engine. The lm-eval bridge is not one yet: lm-eval drives its own model calls
(harness/lmeval.py), so lm-eval tasks run beside the kinds, not through them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from harness.engine.core import Choices, LoglikelihoodRequest, LoglikelihoodResult, PendingChoices
from harness.engine.greedy import Generation
from harness.progress import Progress
from harness.specs import GenerationSpec


class Backend(Protocol):
    """What a task kind may call: the tokenizer and context length, log-likelihoods, packed
    multiple choice in two halves (queue, then collect), and generation."""

    tokenizer: Any
    max_length: int

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: Progress,
                      label: str) -> list[LoglikelihoodResult]: ...

    def submit_choices(self, groups: Sequence[Choices], progress: Progress,
                       label: str) -> PendingChoices: ...

    def collect_choices(self, handle: PendingChoices, progress: Progress,
                        task_id: Any) -> list[list[LoglikelihoodResult]]: ...

    def generate_detailed(self, prompts: Sequence[Sequence[int]], spec: GenerationSpec,
                          progress: Progress, label: str) -> list[Generation]: ...
