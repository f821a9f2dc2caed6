"""Run a generation task's metric families over predictions and references."""

from __future__ import annotations

from collections.abc import Sequence

from harness.metrics import Scores
from harness.metrics.bertscore import bertscore
from harness.metrics.bleu import bleu
from harness.metrics.rouge import rouge
from harness.metrics.simple import exact_match, words
from harness.specs import BertScoreSpec


def score_text(families: Sequence[str], predictions: Sequence[str], references: Sequence[str],
               bert: BertScoreSpec) -> Scores:
    per_example: dict[str, list[float]] = {}
    corpus = {}
    for family in families:
        if family == "rouge":
            part = rouge(predictions, references)
        elif family == "bleu":
            part = bleu(predictions, references)
        elif family == "bertscore":
            part = bertscore(predictions, references, bert)
        elif family == "words":
            part = words(predictions, references)
        elif family == "exact_match":
            part = exact_match(predictions, references)
        else:
            raise ValueError(f"not a text metric family: {family}")
        per_example.update(part.per_example)
        corpus.update(part.corpus)
    return Scores(per_example=per_example, corpus=corpus)


def metric_config(families: Sequence[str], bert: BertScoreSpec) -> dict[str, object]:
    """What a report records about how each metric family was computed."""
    import importlib.metadata as md

    cfg: dict[str, object] = {}
    if "rouge" in families:
        cfg["rouge"] = {"library": f"rouge-score {md.version('rouge-score')}",
                        "use_stemmer": True, "aggregate": "mean of per-example F1",
                        "rougeLsum_sentences": "split by harness.metrics.rouge.split_sentences"}
    if "bleu" in families:
        from harness.metrics.bleu import _scorer

        scorer = _scorer()
        scorer.corpus_score(["x"], [["x"]])  # the signature needs the number of references
        cfg["bleu"] = {"library": f"sacrebleu {md.version('sacrebleu')}",
                       "signature": str(scorer.get_signature())}
    if "bertscore" in families:
        cfg["bertscore"] = {"library": f"bert-score {md.version('bert-score')}",
                            "model": bert.model, "num_layers": bert.num_layers, "idf": bert.idf,
                            "rescale_with_baseline": False}
    return cfg
