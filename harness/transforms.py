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


def _text(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"hellaswag '{key}' must be text, got {type(value).__name__} "
                        f"({str(value)[:40]!r})")
    return value


def hellaswag(row: dict[str, Any]) -> dict[str, Any]:
    """HellaSwag row -> {query, choices, label} as lm-eval's process_docs builds them.

    Rows with `ctx_a`/`ctx_b` (the hub dataset) join them as `ctx_a + " " + ctx_b.capitalize()`;
    rows with a single `ctx` (some copies keep only that) use it as it is.
    """
    missing = [k for k in ("activity_label", "endings", "label") if k not in row]
    if "ctx_a" in row and "ctx_b" in row:
        _text(row, "ctx_a")
        ctx = row["ctx_a"] + " " + _text(row, "ctx_b").capitalize()
    elif "ctx" in row:
        ctx = _text(row, "ctx")
    else:
        missing.append("ctx_a/ctx_b or ctx")
    if missing:
        raise DataError(f"hellaswag row lacks {', '.join(missing)} "
                        f"(columns: {', '.join(map(str, row))})")
    _text(row, "activity_label")
    endings = row["endings"]
    if not isinstance(endings, list) or len(endings) < 2 or not all(
            isinstance(e, str) for e in endings):
        raise DataError(f"hellaswag 'endings' must be a list of 2+ strings, got "
                        f"{type(endings).__name__}")
    label = row["label"]
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool):
        raise DataError(f"hellaswag label must be an integer (or a string of digits), got "
                        f"{row['label']!r}")
    return {
        **row,
        "query": _hellaswag_clean(row["activity_label"] + ": " + ctx),
        "choices": [_hellaswag_clean(e) for e in endings],
        "label": label,
    }


def research_qa(row: dict[str, Any]) -> dict[str, Any]:
    r"""Question/answer rows with an optional context: `context_block` is "Context:\n…\n\n"
    when the row has a non-empty context, else empty, so one template serves both.
    """
    context = row.get("context") or ""
    if not isinstance(context, str):
        raise DataError(f"research_qa: 'context' must be text, got {type(context).__name__}")
    return {**row, "context_block": f"Context:\n{context.strip()}\n\n" if context.strip() else ""}
