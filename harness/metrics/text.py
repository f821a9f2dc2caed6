"""Run a generation task's metric families over predictions and references."""

from __future__ import annotations

from collections.abc import Sequence

from harness.metrics import CorpusMetric, Scores
from harness.metrics.families import METRICS
from harness.specs import BertScoreSpec


def score_text(families: Sequence[str], predictions: Sequence[str], references: Sequence[str],
               bert: BertScoreSpec) -> Scores:
    """Every listed family that scores text (METRICS[name].score), merged."""
    per_example: dict[str, list[float]] = {}
    corpus: dict[str, CorpusMetric] = {}
    for name in families:
        family = METRICS.get(name)
        if family is None or family.score is None:
            raise ValueError(f"not a text metric family: {name}")
        part = family.score(predictions, references, bert)
        per_example.update(part.per_example)
        corpus.update(part.corpus)
    return Scores(per_example=per_example, corpus=corpus)


def metric_config(families: Sequence[str], bert: BertScoreSpec) -> dict[str, object]:
    """What a report records about how each metric family was computed."""
    return {name: config(bert) for name in families
            if name in METRICS and (config := METRICS[name].config) is not None}
