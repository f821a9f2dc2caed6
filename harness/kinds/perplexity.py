"""Perplexity of the target given the prompt: exp(total NLL / total target tokens)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.backend import Backend
from harness.data import Example
from harness.engine import LoglikelihoodRequest
from harness.kinds.base import Kind
from harness.metrics import CorpusMetric, Scores
from harness.progress import Progress
from harness.prompts import PromptBuilder, encode_pair, prompt_hash
from harness.shapes import PerplexityPrediction, Record, TaskExtras
from harness.specs import TaskSpec


def target_nll(task: TaskSpec, examples: Sequence[Example], engine: Backend,
               progress: Progress, label: str) -> list[PerplexityPrediction]:
    """Negative log-likelihood and token count of each reference given its prompt."""
    return [rec["prediction"] for rec in run(task, examples, engine, progress,
                                             f"{label} (perplexity)")]


def run(task: TaskSpec, examples: Sequence[Example], engine: Backend, progress: Progress,
        label: str) -> list[Record]:
    """The reference's NLL and token count given its prompt, per example."""
    builder = PromptBuilder(task, engine.tokenizer)
    requests, prompts = [], []
    for ex in examples:
        continuation = task.target_delimiter + ex.fields[task.target]
        n_target = len(engine.tokenizer.encode(continuation, add_special_tokens=False))
        prompt = builder.build(ex.fields, max(engine.max_length + 1 - n_target, 1), ex.id)
        ctx, cont = encode_pair(engine.tokenizer, prompt.text, continuation)
        requests.append(LoglikelihoodRequest(tuple(ctx), tuple(cont)))
        prompts.append(prompt)
    results = engine.loglikelihood(requests, progress, label)
    return [
        {"id": ex.id, "example_hash": ex.hash, "prompt_hash": prompt_hash(p.text),
         "truncated": p.truncated, "prediction": PerplexityPrediction(nll=-r.logprob,
                                                              n_tokens=r.n_tokens),
         "chat_template": builder.use_chat,
         "reference": ex.fields[task.target]}
        for ex, p, r in zip(examples, prompts, results, strict=True)
    ]


def nll_ok(value: Any) -> bool:
    """An {nll, n_tokens} entry as `run` writes it."""
    return isinstance(value, dict) and isinstance(value.get("nll"), (int, float)) and \
        isinstance(value.get("n_tokens"), (int, float))


def record_ok(record: Record) -> bool:
    """A stored record has the shape `score` reads."""
    return nll_ok(record.get("prediction"))


def _perplexity(summed: np.ndarray) -> float:
    return math.exp(summed[0] / summed[1]) if summed[1] else float("nan")


def perplexity_metric(nlls: Sequence[PerplexityPrediction]) -> CorpusMetric:
    """Perplexity as a corpus metric over per-example (nll, n_tokens) statistics."""
    stats = np.array([[x["nll"], x["n_tokens"]] for x in nlls], dtype=np.float64)
    return CorpusMetric(stats, _perplexity)


def score(records: Sequence[Record]) -> Scores:
    """The task's perplexity from its records."""
    return Scores(corpus={"perplexity": perplexity_metric([r["prediction"] for r in records])})


def _run(task: TaskSpec, examples: Sequence[Example], backend: Backend, progress: Progress,
         label: str, max_new_tokens: int | None) -> list[Record]:
    return run(task, examples, backend, progress, label)


def _extras(records: Sequence[Record]) -> TaskExtras:
    return {"prompt_format": "chat template" if records[0].get("chat_template") else "plain"} \
        if records else {}


KIND = Kind(run=_run, record_ok=record_ok, score=lambda task, records, bert: score(records),
            rebuild=score, chunk=512, extras=_extras)
