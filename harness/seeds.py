"""Sampled generation over several seeds (`--seeds K`).

A task that samples (generation.do_sample) runs once per seed: seed s0, s0 + 1, ...
(s0 = the task's generation.seed). Each record carries its `seed`. Scores are then clustered
by example, as Miller (2024) recommends for evals with several samples per question: a
per-example metric is averaged over the example's seeds before the interval is taken over
examples, and a corpus metric sums each example's statistics over its seeds before the
documents are resampled. So the interval reflects n examples, not n × K draws, and the report
separates the two sources of variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from harness.metrics import CorpusMetric, Scores
from harness.shapes import Record
from harness.specs import TaskSpec

MAX_SEEDS = 100


def samples(task: TaskSpec) -> bool:
    """Whether the task samples (so --seeds runs it once per seed)."""
    return task.kind == "generation" and task.generation.do_sample


def seeded(task: TaskSpec, k: int) -> list[TaskSpec]:
    """The task once per seed (a sampling generation task), or itself (anything else)."""
    if k <= 1 or not samples(task):
        return [task]
    start = task.generation.seed
    return [replace(task, generation=replace(task.generation, seed=start + i)) for i in range(k)]


def seed_count(records: Sequence[Record]) -> int:
    """How many seeds the records were made with (1 without --seeds)."""
    return len({r.get("seed") for r in records}) if records and "seed" in records[0] else 1


def _groups(records: Sequence[Record]) -> list[list[int]]:
    """Record indices per example id, in first-seen order."""
    index: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        index.setdefault(str(r["id"]), []).append(i)
    return list(index.values())


def cluster(records: Sequence[Record], scores: Scores) -> Scores:
    """Scores per example: per-example values averaged over seeds, corpus statistics summed
    over seeds. Records without several seeds come back unchanged.
    """
    if seed_count(records) <= 1:
        return scores
    groups = _groups(records)
    per_example = {name: [float(np.mean([values[i] for i in g])) for g in groups]
                   for name, values in scores.per_example.items()}
    corpus = {name: CorpusMetric(np.stack([cm.stats[g].sum(axis=0) for g in groups]),
                                 cm.compute) for name, cm in scores.corpus.items()}
    return Scores(per_example, corpus)


def variance(records: Sequence[Record], scores: Scores) -> dict[str, Any]:
    """Per per-example metric: the between-example and between-seed variance components of
    one draw (one-way random effects, method of moments), and the standard error of the mean
    over examples that the clustered interval uses.
    """
    groups = _groups(records)
    k = seed_count(records)
    out: dict[str, Any] = {}
    for name, values in scores.per_example.items():
        arr = np.asarray([[values[i] for i in g] for g in groups], dtype=np.float64)  # [n, K]
        n = arr.shape[0]
        within = float(arr.var(axis=1, ddof=1).mean()) if k > 1 else 0.0
        means = arr.mean(axis=1)
        between = max(float(means.var(ddof=1)) - within / k, 0.0) if n > 1 else 0.0
        out[name] = {"between_examples": round(between, 12), "between_seeds": round(within, 12),
                     "clustered_stderr": round(float(means.std(ddof=1) / np.sqrt(n)), 12)
                     if n > 1 else 0.0}
    return out
