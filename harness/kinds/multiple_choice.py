"""Multiple choice by log-likelihood ranking, as lm-eval's `output_type: multiple_choice`.

Each choice is scored as the continuation `target_delimiter + choice` of the rendered prompt;
acc takes the argmax of the log-likelihoods, acc_norm the argmax of log-likelihood divided
by the choice's length in characters (np.argmax: the first of equal values wins).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness.backend import Backend
from harness.data import Example
from harness.engine import Choices, PendingChoices
from harness.kinds.base import Kind
from harness.metrics import Scores
from harness.progress import Progress
from harness.prompts import encode_pairs, prompt_hash, render
from harness.shapes import ChoicePrediction, Record
from harness.specs import TaskSpec

# Items tokenized per slice: a thread tokenizes the next slice while the device scores this one.
SLICE = 512


def run(task: TaskSpec, examples: Sequence[Example], engine: Backend, progress: Progress,
        label: str) -> list[Record]:
    """Score every choice of each example and build its record."""
    return start(task, examples, engine, progress, label)()


def start(task: TaskSpec, examples: Sequence[Example], engine: Backend, progress: Progress,
          label: str) -> Callable[[], list[Record]]:
    """`run` in two halves: this one tokenizes and queues the device work, and returns a
    function that waits for it and builds the records. The runner queues chunk k + 1 before
    finishing chunk k, so the device does not sit idle while records are built and stored.
    """
    contexts = [render(task.prompt, ex.fields) for ex in examples]
    options = [ex.fields[task.choices or ""] for ex in examples]

    def encode(lo: int, hi: int) -> list[Choices]:
        flat = [(contexts[i], task.target_delimiter + choice)
                for i in range(lo, hi) for choice in options[i]]
        encoded = iter(encode_pairs(engine.tokenizer, flat))
        groups: list[Choices] = []
        for i in range(lo, hi):
            pairs = [next(encoded) for _ in options[i]]
            # encode_pair's context part does not depend on the choice: one shared context.
            groups.append((tuple(pairs[0][0]), [tuple(cont) for _, cont in pairs]))
        return groups

    task_id = progress.add(label, len(examples))
    # The tokenizer releases the GIL, and submit_choices does not wait for the device: the
    # worker tokenizes slice k + 1 while the device scores slice k.
    with ThreadPoolExecutor(1) as pool:
        slices = [pool.submit(encode, lo, min(lo + SLICE, len(examples)))
                  for lo in range(0, len(examples), SLICE)]
        handles = [engine.submit_choices(s.result(), progress, label) for s in slices]
    return lambda: _records(task, examples, contexts, engine, handles, progress, task_id)


def _records(task: TaskSpec, examples: Sequence[Example], contexts: Sequence[str],
             engine: Backend, handles: Sequence[PendingChoices], progress: Progress,
             task_id: int,
             ) -> list[Record]:
    grouped = [r for h in handles for r in engine.collect_choices(h, progress, task_id)]
    records: list[Record] = []
    for ex, context, results in zip(examples, contexts, grouped, strict=True):
        choices = ex.fields[task.choices or ""]
        lls = np.array([r.logprob for r in results])
        lengths = np.array([float(len(c)) for c in choices])
        pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
        gold = int(ex.fields[task.target])
        records.append({
            "id": ex.id, "example_hash": ex.hash, "prompt_hash": prompt_hash(context),
            "truncated": False,
            "prediction": ChoicePrediction(choice=pred, choice_norm=pred_norm,
                                           loglikelihoods=[float(x) for x in lls],
                                           is_greedy=[r.is_greedy for r in results]),
            "reference": gold,
        })
    return records


def record_ok(record: Record) -> bool:
    """A stored record has the shape `score` reads."""
    p = record.get("prediction")
    return isinstance(p, dict) and isinstance(p.get("choice"), int) and \
        isinstance(p.get("choice_norm"), int) and isinstance(p.get("loglikelihoods"), list) \
        and isinstance(record.get("reference"), int)


def score(records: Sequence[Record]) -> Scores:
    """The acc and acc_norm (log-likelihood per character of the choice) per example."""
    return Scores(per_example={
        "acc": [float(r["prediction"]["choice"] == r["reference"]) for r in records],
        "acc_norm": [float(r["prediction"]["choice_norm"] == r["reference"]) for r in records],
    })


def _run(task: TaskSpec, examples: Sequence[Example], backend: Backend, progress: Progress,
         label: str, max_new_tokens: int | None) -> list[Record]:
    return run(task, examples, backend, progress, label)


def _start(task: TaskSpec, examples: Sequence[Example], backend: Backend, progress: Progress,
           label: str, max_new_tokens: int | None) -> Callable[[], list[Record]]:
    return start(task, examples, backend, progress, label)


KIND = Kind(run=_run, start=_start, record_ok=record_ok,
            score=lambda task, records, bert: score(records), rebuild=score,
            chunk=2048)  # four of its tokenize-while-scoring slices per chunk
