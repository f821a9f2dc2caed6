"""Degenerate generations, counted so that a report never hides them: empty predictions,
predictions cut at max_new_tokens (no EOS, no stop string), predictions identical to another
example's, and predictions that repeat one sentence. A share above THRESHOLD puts a warning
line at the top of report.md; `harness gate` reads the rates (`TASK.empty_rate <= 0.05`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from harness.shapes import Record

THRESHOLD = 0.10
COUNTS = ("empty", "hit_max_new_tokens", "duplicate", "repeated_sentence")
RATE_METRICS = {f"{k}_rate": k for k in COUNTS}  # the names gate rules use
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    return [" ".join(s.split()).lower() for s in _SENTENCE_END.split(text) if s.strip()]


def repeats_a_sentence(text: str) -> bool:
    """Some sentence (case and spacing ignored) occurs twice or more."""
    seen = Counter(_sentences(text))
    return any(n > 1 for n in seen.values())


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """Counts and rates over a task's generation records. hit_max_new_tokens is None where
    the records do not say (scored predictions, records of an older harness).
    """
    preds: list[str] = [p if isinstance(p := r.get("prediction"), str) else ""
                         for r in records]
    n = len(preds)
    normal = [" ".join(p.split()) for p in preds]
    owners: dict[str, set[str]] = {}  # text -> the examples that wrote it (seeds of one
    for i, (r, x) in enumerate(zip(records, normal, strict=True)):  # example are not copies)
        if x:
            owners.setdefault(x, set()).add(str(r.get("id", i)))
    counts: dict[str, int | None] = {
        "empty": sum(1 for x in normal if not x),
        "hit_max_new_tokens": sum(1 for r in records if r.get("hit_max_new_tokens"))
        if any("hit_max_new_tokens" in r for r in records) else None,
        "duplicate": sum(1 for x in normal if x and len(owners[x]) > 1),
        "repeated_sentence": sum(1 for p in preds if repeats_a_sentence(p)),
    }
    rates = {k: (v / n if n and v is not None else None) for k, v in counts.items()}
    flagged = [k for k, r in rates.items() if r is not None and r > THRESHOLD]
    return {"n": n, "counts": counts, "rates": rates, "threshold": THRESHOLD,
            "flagged": flagged}


_WORDS = {"empty": "empty", "hit_max_new_tokens": "cut at max_new_tokens",
          "duplicate": "identical to another example's", "repeated_sentence":
          "repeating a sentence"}


def warning_lines(where: str, summary: Mapping[str, Any] | None) -> list[str]:
    """Markdown warning lines for one task and variant ([] when nothing is flagged)."""
    if not summary or not summary.get("flagged"):
        return []
    n = summary["n"]
    parts = [f"{summary['counts'][k]} of {n} {_WORDS[k]} ({100 * summary['rates'][k]:.0f}%)"
             for k in summary["flagged"]]
    return [f"> **Warning — degenerate outputs, {where}:** " + "; ".join(parts) + "."]
