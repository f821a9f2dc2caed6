"""SQuAD's token F1 through torchmetrics (its port of the official SQuAD v1.1 script): the
harmonic mean of token precision and recall after lower-casing and removing punctuation and
articles; per example, against one reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.metrics import Family, MetricInfo, Scores


def squad_f1(predictions: Sequence[str], references: Sequence[str], _bert: Any = None) -> Scores:
    """Token F1 as the official SQuAD script computes it, per example (torchmetrics' port)."""
    from torchmetrics.functional.text import squad

    values = []
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        out = squad([{"prediction_text": pred, "id": str(i)}],
                    [{"answers": {"answer_start": [0], "text": [ref]}, "id": str(i)}])
        values.append(float(out["f1"]) / 100.0)  # torchmetrics reports percent
    return Scores(per_example={"squad_f1": values})


def _config(_bert: Any) -> dict[str, object]:
    import importlib.metadata as md

    return {"library": f"torchmetrics {md.version('torchmetrics')}",
            "function": "torchmetrics.functional.text.squad (f1), one reference per example"}


FAMILY = Family(frozenset({"generation"}),
                {"squad_f1": MetricInfo("fraction", True, "Token F1 (SQuAD)")},
                score=squad_f1, config=_config)
