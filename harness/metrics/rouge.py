"""ROUGE through Google's rouge-score: stemmer on; rougeLsum over newline-separated sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.metrics import Scores

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


def rouge(predictions: Sequence[str], references: Sequence[str]) -> Scores:
    """Per-example ROUGE F-measures. rouge1/2/L ignore line breaks (rouge-score's tokenizer
    drops them), so all four are scored on the sentence-split texts in one call."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    values: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(target=for_rougelsum(ref), prediction=for_rougelsum(pred))
        for t in ROUGE_TYPES:
            values[t].append(float(scores[t].fmeasure))
    return Scores(per_example=values)
