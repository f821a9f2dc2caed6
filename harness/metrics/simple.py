"""Length and exact-match metrics (no reference library needed: they are definitions)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from harness.metrics import Family, MetricInfo, Scores


def words(predictions: Sequence[str], references: Sequence[str]) -> Scores:
    """Whitespace-separated words per output and per reference (seed 002's length columns)."""
    return Scores(per_example={
        "gen_words": [float(len(p.split())) for p in predictions],
        "ref_words": [float(len(r.split())) for r in references],
    })


def _normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> Scores:
    """SQuAD-style exact match after lower-casing, dropping punctuation and articles."""
    return Scores(per_example={"exact_match": [
        float(_normalize(p) == _normalize(r)) for p, r in zip(predictions, references,
                                                              strict=True)]})


WORDS = Family(frozenset({"generation"}), {
    "gen_words": MetricInfo("raw", None, "Avg generated words"),
    "ref_words": MetricInfo("raw", None, "Avg reference words"),
}, score=lambda predictions, references, _bert: words(predictions, references))
EXACT_MATCH = Family(frozenset({"generation"}), {
    "exact_match": MetricInfo("fraction", True, "Exact match", proportion=True),
}, score=lambda predictions, references, _bert: exact_match(predictions, references))
