"""BERTScore F1 through bert-score, the scoring model loaded once per process and spec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.errors import ModelError, first_line
from harness.metrics import Family, MetricInfo, Scores
from harness.specs import BertScoreSpec

_SCORERS: dict[BertScoreSpec, Any] = {}


def get_scorer(spec: BertScoreSpec) -> Any:
    """The BERTScore scorer for this spec, loaded once per process."""
    if spec not in _SCORERS:
        import torch
        from bert_score import BERTScorer

        try:
            _SCORERS[spec] = BERTScorer(
                model_type=spec.model, num_layers=spec.num_layers, batch_size=spec.batch_size,
                idf=False, device="cuda" if torch.cuda.is_available() else "cpu")
        except Exception as err:
            raise ModelError(f"cannot load BERTScore model '{spec.model}' "
                             f"({first_line(err)}); offline, give a local folder with "
                             f"--bertscore-model PATH and its layer with --bertscore-layers N") \
                from None
    return _SCORERS[spec]


def bertscore(predictions: Sequence[str], references: Sequence[str],
              spec: BertScoreSpec) -> Scores:
    """Per-example BERTScore F1 (no idf, no baseline rescaling), as bert_score.score gives.

    An empty (or blank) prediction scores 0, which is what bert-score itself sets ("Empty
    candidate sentence detected; setting raw BERTscores to 0"); it is not sent to bert-score,
    whose empty-string path calls a tokenizer method transformers 5 removed. Pairs are scored
    independently, so leaving them out changes no other value.
    """
    scorer = get_scorer(spec)
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    values = [0.0] * len(predictions)
    if keep:
        _, _, f1 = scorer.score([predictions[i] for i in keep], [references[i] for i in keep],
                                batch_size=spec.batch_size)
        for i, v in zip(keep, f1.tolist(), strict=True):
            values[i] = float(v)
    return Scores(per_example={"bertscore_f1": values})


def _config(spec: BertScoreSpec) -> dict[str, object]:
    import importlib.metadata as md

    return {"library": f"bert-score {md.version('bert-score')}", "model": spec.model,
            "num_layers": spec.num_layers, "idf": spec.idf, "rescale_with_baseline": False}


FAMILY = Family(frozenset({"generation"}),
                {"bertscore_f1": MetricInfo("fraction", True, "BERTScore F1")},
                score=bertscore, config=_config)
