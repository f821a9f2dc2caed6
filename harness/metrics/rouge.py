"""ROUGE through Google's rouge-score: stemmer on; rougeLsum over newline-separated sentences."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from typing import Any

from harness.metrics import Family, MetricInfo, Scores

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# A sentence ends at . ! or ? (optionally followed by closing quotes or brackets) before
# whitespace. nltk's punkt data is often absent offline, so the harness splits by itself.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: existing line breaks are kept as boundaries, then split by rule."""
    out: list[str] = []
    for line in text.splitlines():
        out += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return out


def for_rougelsum(text: str) -> str:
    """The newline-joined sentence form rougeLsum expects."""
    return "\n".join(split_sentences(text))


# Below this many pairs, starting worker processes costs more than it saves.
PARALLEL_MIN_PAIRS = 64


class _CachedStemmer:
    """nltk's PorterStemmer (what rouge-score uses) with each word's stem remembered: stemming
    is a pure function of the word, so the tokens, and the scores, are unchanged.
    """

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem = functools.lru_cache(maxsize=1 << 18)(porter.PorterStemmer().stem)


def _scorer() -> Any:  # rouge_scorer.RougeScorer
    from rouge_score import rouge_scorer, tokenizers

    tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    tokenizer._stemmer = _CachedStemmer()
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, tokenizer=tokenizer)


def _score_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[float, ...]]:
    scorer = _scorer()
    out = []
    for pred, ref in pairs:
        scores = scorer.score(target=for_rougelsum(ref), prediction=for_rougelsum(pred))
        out.append(tuple(float(scores[t].fmeasure) for t in ROUGE_TYPES))
    return out


def default_workers() -> int:
    """ROUGE worker processes: HARNESS_METRIC_WORKERS, else the CPU count, at most 16."""
    from harness import env

    configured = env.positive("HARNESS_METRIC_WORKERS")
    if configured:
        return configured
    return max(1, min(os.cpu_count() or 1, 16))


def rouge(predictions: Sequence[str], references: Sequence[str],
          workers: int | None = None) -> Scores:
    """Per-example ROUGE F-measures. rouge1/2/L ignore line breaks (rouge-score's tokenizer
    drops them), so all four are scored on the sentence-split texts in one call. Large inputs
    are split across worker processes (HARNESS_METRIC_WORKERS, default: the CPU count); every
    pair is scored by the same code, so the numbers do not depend on the split.
    """
    pairs = list(zip(predictions, references, strict=True))
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(pairs) >= PARALLEL_MIN_PAIRS:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        size = -(-len(pairs) // (workers * 4))
        chunks = [pairs[i: i + size] for i in range(0, len(pairs), size)]
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
            rows = [r for part in pool.map(_score_pairs, chunks) for r in part]
    else:
        rows = _score_pairs(pairs)
    return Scores(per_example={t: [r[i] for r in rows] for i, t in enumerate(ROUGE_TYPES)})


def _config(_bert: object) -> dict[str, object]:
    import importlib.metadata as md

    return {"library": f"rouge-score {md.version('rouge-score')}", "use_stemmer": True,
            "aggregate": "mean of per-example F1",
            "rougeLsum_sentences": "split by harness.metrics.rouge.split_sentences"}


FAMILY = Family(frozenset({"generation"}), {
    "rouge1": MetricInfo("fraction", True, "ROUGE-1"),
    "rouge2": MetricInfo("fraction", True, "ROUGE-2"),
    "rougeL": MetricInfo("fraction", True, "ROUGE-L"),
    "rougeLsum": MetricInfo("fraction", True, "ROUGE-Lsum"),
}, score=lambda predictions, references, _bert: rouge(predictions, references), config=_config)
