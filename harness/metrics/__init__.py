"""Metric families: pure functions over predictions and references that call the reference
libraries (rouge-score, sacrebleu, bert-score, torchmetrics' SQuAD). One dict,
harness.metrics.families.METRICS, so grep finds them all.

A family returns Scores: per-example values (aggregated as a mean) and corpus metrics
(per-example sufficient statistics plus the function that turns their sum into the value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from harness.metrics.families import INFO, METRICS  # noqa: F401 - served by __getattr__
    from harness.specs import BertScoreSpec

Scale = Literal["fraction", "raw"]


@dataclass(frozen=True)
class CorpusMetric:
    """A metric computed from summed per-example statistics (BLEU, perplexity)."""

    stats: np.ndarray  # shape [n_examples, k]
    compute: Callable[[np.ndarray], float]  # summed stats [k] -> value


@dataclass(frozen=True)
class Scores:
    """A family's output: per-example values and corpus metrics, by metric name."""

    per_example: dict[str, list[float]] = field(default_factory=dict)
    corpus: dict[str, CorpusMetric] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is shown and tested: scale, direction, label, 0/1 or not."""

    scale: Scale  # fraction: a rate or score in [0, 1] (Markdown shows x100)
    higher_is_better: bool | None  # None: no better direction (lengths, ratios)
    label: str
    proportion: bool = False  # 0/1 per example: Wilson / Tango intervals (harness.stats)


@dataclass(frozen=True)
class Family:
    """A metric family: the metrics it yields, the task kinds it serves, and how it scores.

    `score` (predictions, references, the BERTScore spec) -> Scores for families computed from
    text; None for those the task kind computes itself (accuracy from log-likelihoods,
    perplexity from target log-likelihoods). A corpus family names `stats_key`, under which
    each record keeps its per-example statistics, and `rebuild`, which turns those back into
    its corpus metrics (compare, seeds and reports recompute the corpus value from them).
    `config` says, for report.json, how the family was computed (library, version, options).
    Families live in harness/metrics/families.py: METRICS, one entry each.
    """

    kinds: frozenset[str]
    metrics: dict[str, MetricInfo]
    score: Callable[[Sequence[str], Sequence[str], BertScoreSpec], Scores] | None = None
    config: Callable[[BertScoreSpec], dict[str, object]] | None = None
    stats_key: str | None = None
    rebuild: Callable[[np.ndarray], Scores] | None = None


def __getattr__(name: str) -> object:
    """METRICS and INFO (every metric's MetricInfo, in display order) come from
    harness.metrics.families, which imports the family modules, which import this one.
    """
    if name in ("METRICS", "INFO"):
        from harness.metrics import families

        return getattr(families, name)
    raise AttributeError(f"module 'harness.metrics' has no attribute {name!r}")


def is_proportion(name: str, values: object) -> bool:
    """Whether a per-example metric is a 0/1 proportion: as declared for known metrics; for
    others (lm-eval's), when every value is 0 or 1.
    """
    import numpy as np

    from harness.metrics.families import INFO

    if name in INFO:
        return INFO[name].proportion
    arr = np.asarray(values, dtype=np.float64)
    return bool(arr.size) and bool(np.all((arr == 0) | (arr == 1)))
