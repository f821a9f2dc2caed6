"""The engine: batched model work on one loaded model.

- core.py: `Engine` (log-likelihood, multiple choice, generation, out-of-memory back-off);
- batching.py: packing, token budgets, the memory estimates that size batches;
- choices.py: the multiple-choice layouts (masked rows; flash segments on CUDA);
- greedy.py: the greedy decoding loop, its row cache and CUDA-graph capture;
- attention.py: the attention functions registered with transformers and the typed
  per-call context they read;
- logprobs.py: target log-probabilities from hidden states;
- arch.py: what the engine needs to know about a model (also imported by train/).

How it computes is a `harness.options.EngineOptions`, handed to each Engine; the tokenisation
helpers live in harness.prompts.
"""

from harness.engine.arch import decoder_and_head, hidden_dtype
from harness.engine.core import (
    Choices,
    Engine,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    PendingChoices,
)
from harness.engine.greedy import Generation, cut_at_stop

__all__ = ["Choices", "Engine", "Generation", "LoglikelihoodRequest", "LoglikelihoodResult",
           "PendingChoices", "cut_at_stop", "decoder_and_head", "hidden_dtype"]
