"""Row transforms named by task YAMLs (`transform: harness.transforms:NAME`)."""

from __future__ import annotations

import re
from typing import Any

from harness.errors import DataError


def _hellaswag_clean(text: str) -> str:
    # lm-eval's hellaswag/utils.py `preprocess`, step for step: the brackets are WikiHow markup.
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag(row: dict[str, Any]) -> dict[str, Any]:
    """HellaSwag row -> {query, choices, label} as lm-eval's process_docs builds them.

    Rows with `ctx_a`/`ctx_b` (the hub dataset) join them as `ctx_a + " " + ctx_b.capitalize()`;
    rows with a single `ctx` (some copies keep only that) use it as it is.
    """
    missing = [k for k in ("activity_label", "endings", "label") if k not in row]
    if "ctx_a" in row and "ctx_b" in row:
        ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    elif "ctx" in row:
        ctx = row["ctx"]
    else:
        missing.append("ctx_a/ctx_b or ctx")
    if missing:
        raise DataError(f"hellaswag row lacks {', '.join(missing)} (columns: {', '.join(row)})")
    try:
        label = int(row["label"])
    except (TypeError, ValueError):
        raise DataError(f"hellaswag label must be an integer, got {row['label']!r}") from None
    return {
        **row,
        "query": _hellaswag_clean(row["activity_label"] + ": " + ctx),
        "choices": [_hellaswag_clean(e) for e in row["endings"]],
        "label": label,
    }


def research_qa(row: dict[str, Any]) -> dict[str, Any]:
    """question/answer rows with an optional context: `context_block` is "Context:\\n…\\n\\n"
    when the row has a non-empty context, else empty, so one template serves both."""
    context = row.get("context") or ""
    if not isinstance(context, str):
        raise DataError(f"research_qa: 'context' must be text, got {type(context).__name__}")
    return {**row, "context_block": f"Context:\n{context.strip()}\n\n" if context.strip() else ""}
