"""Task kinds: KINDS, one `Kind` (harness/kinds/base.py) per entry. The runner, compare and
task-file validation read it; a new kind is a module ending in its KIND and one entry here.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.kinds import generation, multiple_choice, perplexity
from harness.kinds.base import Kind
from harness.metrics import Scores
from harness.shapes import Record

KINDS: dict[str, Kind] = {
    "generation": generation.KIND,
    "multiple_choice": multiple_choice.KIND,
    "perplexity": perplexity.KIND,
}


def rebuild_scores(kind: str, records: Sequence[Record]) -> Scores:
    """A task's Scores from its records as stored in samples, without re-running any metric
    library. lm-eval tasks (kind "lm_eval") keep their per-example values as lm-eval gave.
    """
    if kind == "lm_eval":
        names = list(records[0].get("metrics", {}))
        return Scores(per_example={k: [float(r["metrics"][k]) for r in records] for k in names})
    return KINDS[kind].rebuild(records)
