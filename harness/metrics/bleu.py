"""Corpus BLEU through sacrebleu, with per-example sufficient statistics for resampling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.metrics import CorpusMetric, Family, MetricInfo, Scores


def _scorer() -> Any:  # sacrebleu.metrics.BLEU
    from sacrebleu.metrics import BLEU

    return BLEU()


def bleu(predictions: Sequence[str], references: Sequence[str]) -> Scores:
    """The sacreBLEU corpus score, n-gram precisions, brevity penalty and length ratio, as
    fractions (sacrebleu's score and precisions / 100). Each example keeps its statistics
    [hyp_len, ref_len, correct_1..4, total_1..4], so a bootstrap recomputes the corpus value.
    """
    stats = _scorer()._extract_corpus_statistics(list(predictions), [list(references)])
    return bleu_from_stats(np.asarray(stats, dtype=np.float64))


def bleu_from_stats(stats: np.ndarray) -> Scores:
    """The BLEU metrics from per-example statistics (as stored in samples)."""
    scorer = _scorer()

    def pick(fn: Callable[[Any], float]) -> Callable[[np.ndarray], float]:
        return lambda summed: float(fn(scorer._compute_score_from_stats(summed.tolist())))

    corpus = {
        "bleu": pick(lambda s: s.score / 100.0),
        "bleu_brevity_penalty": pick(lambda s: s.bp),
        "bleu_length_ratio": pick(lambda s: s.sys_len / s.ref_len if s.ref_len else 0.0),
    }
    for n in range(1, 5):
        corpus[f"bleu_precision_{n}"] = pick(functools.partial(_precision, n))
    return Scores(corpus={name: CorpusMetric(stats, fn) for name, fn in corpus.items()})


def _precision(n: int, score: Any) -> float:
    return float(score.precisions[n - 1]) / 100.0


def _config(_bert: object) -> dict[str, object]:
    import importlib.metadata as md

    scorer = _scorer()
    scorer.corpus_score(["x"], [["x"]])  # the signature needs the number of references
    return {"library": f"sacrebleu {md.version('sacrebleu')}",
            "signature": str(scorer.get_signature())}


FAMILY = Family(frozenset({"generation"}), {
    "bleu": MetricInfo("fraction", True, "BLEU"),
    **{f"bleu_precision_{n}": MetricInfo("fraction", True, f"BLEU {n}-gram precision")
       for n in range(1, 5)},
    "bleu_brevity_penalty": MetricInfo("fraction", True, "BLEU brevity penalty"),
    "bleu_length_ratio": MetricInfo("raw", None, "BLEU length ratio"),
}, score=lambda predictions, references, _bert: bleu(predictions, references), config=_config,
    stats_key="bleu_stats", rebuild=bleu_from_stats)
