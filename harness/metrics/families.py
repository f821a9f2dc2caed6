"""METRICS: every metric family, one entry each; INFO: every metric's MetricInfo, in the
order reports list them. Task validation (registry.py), scoring (metrics/text.py), the runner's
corpus statistics and the renderers all read these two. To add a metric: a module with its
Family, and one entry here (docs/extending.md).
"""

from __future__ import annotations

from harness.metrics import Family, MetricInfo, bertscore, bleu, rouge, simple, squad_f1

GENERATION = frozenset({"generation"})

METRICS: dict[str, Family] = {
    "rouge": rouge.FAMILY,
    "bleu": bleu.FAMILY,
    "bertscore": bertscore.FAMILY,
    "words": simple.WORDS,
    "exact_match": simple.EXACT_MATCH,
    "squad_f1": squad_f1.FAMILY,
    # computed by the task kind itself (kinds/multiple_choice.py, kinds/perplexity.py)
    "acc": Family(frozenset({"multiple_choice"}), {
        "acc": MetricInfo("fraction", True, "Accuracy", proportion=True),
        "acc_norm": MetricInfo("fraction", True, "Accuracy (length-normalised)",
                               proportion=True)}),
    "perplexity": Family(frozenset({"generation", "perplexity"}), {
        "perplexity": MetricInfo("raw", False, "Perplexity")}),
}

INFO: dict[str, MetricInfo] = {name: info for family in METRICS.values()
                               for name, info in family.metrics.items()}


def families_for(kind: str) -> set[str]:
    """The family names a task of this kind may list under `metrics:`."""
    return {name for name, family in METRICS.items() if kind in family.kinds}
