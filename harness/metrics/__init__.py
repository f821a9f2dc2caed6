"""Metric families: pure functions over predictions and references that call the reference
libraries (rouge-score, sacrebleu, bert-score). One literal dict, so grep finds them all.

A family returns Scores: per-example values (aggregated as a mean) and corpus metrics
(per-example sufficient statistics plus the function that turns their sum into the value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Scale = Literal["fraction", "raw"]


@dataclass(frozen=True)
class CorpusMetric:
    """A metric computed from summed per-example statistics (BLEU, perplexity)."""

    stats: np.ndarray  # shape [n_examples, k]
    compute: Callable[[np.ndarray], float]  # summed stats [k] -> value


@dataclass(frozen=True)
class Scores:
    per_example: dict[str, list[float]] = field(default_factory=dict)
    corpus: dict[str, CorpusMetric] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricInfo:
    scale: Scale  # fraction: a rate or score in [0, 1] (Markdown shows x100)
    higher_is_better: bool | None  # None: no better direction (lengths, ratios)
    label: str
    proportion: bool = False  # 0/1 per example: Wilson / Tango intervals (harness.stats)


INFO: dict[str, MetricInfo] = {
    "rouge1": MetricInfo("fraction", True, "ROUGE-1"),
    "rouge2": MetricInfo("fraction", True, "ROUGE-2"),
    "rougeL": MetricInfo("fraction", True, "ROUGE-L"),
    "rougeLsum": MetricInfo("fraction", True, "ROUGE-Lsum"),
    "bleu": MetricInfo("fraction", True, "BLEU"),
    "bleu_precision_1": MetricInfo("fraction", True, "BLEU 1-gram precision"),
    "bleu_precision_2": MetricInfo("fraction", True, "BLEU 2-gram precision"),
    "bleu_precision_3": MetricInfo("fraction", True, "BLEU 3-gram precision"),
    "bleu_precision_4": MetricInfo("fraction", True, "BLEU 4-gram precision"),
    "bleu_brevity_penalty": MetricInfo("fraction", True, "BLEU brevity penalty"),
    "bleu_length_ratio": MetricInfo("raw", None, "BLEU length ratio"),
    "bertscore_f1": MetricInfo("fraction", True, "BERTScore F1"),
    "gen_words": MetricInfo("raw", None, "Avg generated words"),
    "ref_words": MetricInfo("raw", None, "Avg reference words"),
    "exact_match": MetricInfo("fraction", True, "Exact match", proportion=True),
    "acc": MetricInfo("fraction", True, "Accuracy", proportion=True),
    "acc_norm": MetricInfo("fraction", True, "Accuracy (length-normalised)", proportion=True),
    "perplexity": MetricInfo("raw", False, "Perplexity"),
}


def is_proportion(name: str, values: object) -> bool:
    """Whether a per-example metric is a 0/1 proportion: as declared for known metrics; for
    others (lm-eval's), when every value is 0 or 1."""
    import numpy as np

    if name in INFO:
        return INFO[name].proportion
    arr = np.asarray(values, dtype=np.float64)
    return bool(arr.size) and bool(np.all((arr == 0) | (arr == 1)))
