"""Prompt building shared by evaluation and training: template, chat template, truncation.

A prompt longer than its token budget keeps the template whole and cuts only the field the
task marks as truncatable (seed 002, section 5.2.2: cutting the template itself — "[INST]",
"Summary: [/INST]" — corrupted the inputs and destabilised training).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import DataError
from harness.specs import TaskSpec

_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def placeholders(template: str) -> list[str]:
    """The {field} names a template uses ({{ and }} are literal braces)."""
    return _PLACEHOLDER.findall(template)


_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def with_chat_template(task: TaskSpec, mode: str | None) -> TaskSpec:
    """The task with --chat-template applied (prompted kinds; multiple choice keeps lm-eval's
    plain context, as lm-eval does).
    """
    if mode is None or task.kind == "multiple_choice":
        return task
    return replace(task, chat_template=mode)  # type: ignore[arg-type]


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill {field} placeholders; {{ and }} are literal braces. No attribute access, no code."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return str(values[m.group(1)])

    return _TOKEN.sub(sub, template)


def shown_input(task: TaskSpec, fields: Mapping[str, Any]) -> dict[str, Any]:
    """What reports show of an example's input: the task's template filled in (before any chat
    template or truncation) and, for multiple choice, the choices.
    """
    shown: dict[str, Any] = {"prompt": render(task.prompt, fields)}
    if task.kind == "multiple_choice" and task.choices:
        shown["choices"] = [str(c) for c in fields[task.choices]]
    return shown


def encode(tokenizer: Any, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """Token ids as lm-eval's HFLM.tok_encode makes them: the tokenizer's own special-token
    default, except that a text already starting with BOS gets no second one.
    """
    if add_special_tokens is None:
        bos = tokenizer.bos_token
        add_special_tokens = not (bos and text.startswith(bos))
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


def prompt_hash(text: str) -> str:
    """A prompt's 16-hex-digit hash, kept in each record."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: its text, token ids, and whether a field was cut to fit."""

    text: str
    ids: tuple[int, ...]
    truncated: bool


class PromptBuilder:
    """Renders a task's prompt for one tokenizer within a token budget."""

    def __init__(self, task: TaskSpec, tokenizer: Any, use_chat: bool | None = None):
        self.task = task
        self.tokenizer = tokenizer
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if use_chat is None:
            use_chat = task.chat_template == "always" or (task.chat_template == "auto"
                                                         and has_chat)
        if use_chat and not has_chat:
            raise DataError(f"task '{task.name}' needs a chat template "
                            f"(chat_template: always) but the tokenizer has none")
        self.use_chat = use_chat

    def text(self, values: Mapping[str, Any]) -> str:
        """The prompt text for these field values: the template, or the chat template around it."""
        if not self.use_chat:
            return render(self.task.prompt, values)
        user = render(self.task.chat_prompt or self.task.prompt, values)
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True))

    def _ids(self, text: str) -> list[int]:
        # A chat template writes its own special tokens.
        return encode(self.tokenizer, text, add_special_tokens=False if self.use_chat else None)

    def build(self, values: Mapping[str, Any], budget: int | None, example_id: str) -> Prompt:
        """The prompt for one example, cut to at most `budget` tokens (None: no limit)."""
        text = self.text(values)
        ids = self._ids(text)
        if budget is None or len(ids) <= budget:
            return Prompt(text, tuple(ids), False)
        field = self.task.truncate
        if field is None:
            raise DataError(
                f"task '{self.task.name}', example {example_id}: the prompt has {len(ids)} "
                f"tokens but only {budget} fit; mark a field as 'truncate' in the task or "
                f"raise --max-length")
        piece = self.tokenizer.encode(str(values[field]), add_special_tokens=False)
        current = dict(values)
        # Decoding and re-encoding can shift token boundaries by a few, so repeat until it fits.
        for _ in range(16):
            excess = len(ids) - budget
            keep = min(len(piece) - excess, len(piece) - 1)
            if keep <= 0:
                current[field] = ""
            else:
                piece = piece[:keep]
                current[field] = self.tokenizer.decode(piece, skip_special_tokens=True)
            text = self.text(current)
            ids = self._ids(text)
            if len(ids) <= budget:
                return Prompt(text, tuple(ids), True)
            if keep <= 0:
                break
        raise DataError(
            f"task '{self.task.name}', example {example_id}: even with '{field}' cut away the "
            f"prompt has {len(ids)} tokens, more than the {budget} available; shorten the "
            f"template, lower max_new_tokens or raise --max-length")


# -- token ids of many texts (the engine's and the kinds' tokenisation) ------------------
def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's context/continuation split: trailing spaces of the context move to the
    continuation; the pair is encoded whole and the context's tokens are cut off the front.
    """
    return encode_pairs(tokenizer, [(context, continuation)])[0]


def encode_many(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """`prompts.encode` over many texts in batched tokenizer calls (same ids, far fewer calls)."""
    bos = tokenizer.bos_token
    out: list[list[int]] = [[] for _ in texts]
    for special in (True, False):
        idx = [i for i, t in enumerate(texts) if (not (bos and t.startswith(bos))) == special]
        if idx:
            ids = _batch_ids(tokenizer, [texts[i] for i in idx], special)
            for i, x in zip(idx, ids, strict=True):
                out[i] = list(x)
    return out


def _batch_ids(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    """Token ids of many texts. A transformers fast tokenizer's `__call__` is its Rust
    backend's `encode_batch` plus Python bookkeeping; the backend's `encode_batch_fast` (no
    offsets) gives the same ids in about half the time. Used when the backend has it and gives
    the same ids as `__call__` on the first text; `__call__` otherwise.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    if backend is not None and fast is not None:
        first = tokenizer(texts[:1], add_special_tokens=special)["input_ids"][0]
        if list(first) == backend.encode(texts[0], add_special_tokens=special).ids:
            return [e.ids for e in fast(texts, add_special_tokens=special)]
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]],
                 ) -> list[tuple[list[int], list[int]]]:
    """`encode_pair` over many (context, continuation) pairs, batched."""
    moved = []
    for context, continuation in pairs:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        moved.append((context, continuation))
    contexts = sorted({c for c, _ in moved})
    ctx_ids = dict(zip(contexts, encode_many(tokenizer, contexts), strict=True))
    wholes = encode_many(tokenizer, [c + x for c, x in moved])
    return [(ctx_ids[c], w[len(ctx_ids[c]):]) for (c, _), w in zip(moved, wholes, strict=True)]
