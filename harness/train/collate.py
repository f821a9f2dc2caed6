"""Training examples from a task: the evaluation prompt, then the target, loss on the target.

- The prompt is the registry's (same template, chat template and truncation as evaluation).
- Labels are -100 on the prompt; the target gets EOS appended.
- Too long: only the task's truncatable field (the article) is cut; if even the template
  alone leaves no room, the target is cut; an example whose target would be cut away
  entirely is dropped and counted (not "un-masked" as seed 002's collator did).
- Empty targets are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.data import Example
from harness.errors import DataError
from harness.prompts import PromptBuilder, encode
from harness.specs import TaskSpec

IGNORE = -100


@dataclass(frozen=True)
class TrainExample:
    """One training row as token ids, labels masked to the target, and whether it was cut."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    truncated: bool


@dataclass(frozen=True)
class BuildStats:
    """What building training examples kept, cut and dropped, and why."""

    rows: int
    kept: int
    truncated: int
    dropped_no_target_room: int
    dropped_empty_target: int

    def to_json(self) -> dict[str, int]:
        """The counts as train_summary.json's data entry."""
        return {"rows": self.rows, "kept": self.kept, "truncated": self.truncated,
                "dropped_no_target_room": self.dropped_no_target_room,
                "dropped_empty_target": self.dropped_empty_target}


def template_tokens(task: TaskSpec, tokenizer: Any) -> int:
    """Tokens of the prompt with every field empty: the least any example needs."""
    builder = PromptBuilder(task, tokenizer)
    return len(encode(tokenizer, builder.text(dict.fromkeys(task.field_map, "")),
                      add_special_tokens=False if builder.use_chat else None))


def build_train_examples(task: TaskSpec, examples: Sequence[Example], tokenizer: Any,
                         max_length: int) -> tuple[list[TrainExample], BuildStats]:
    """Token ids and loss masks (prompt masked out); what was kept, cut or dropped."""
    builder = PromptBuilder(task, tokenizer)
    eos = tokenizer.eos_token_id
    out: list[TrainExample] = []
    truncated = no_room = empty = 0
    for ex in examples:
        target = ex.fields[task.target]
        if not isinstance(target, str) or not target.strip():
            empty += 1
            continue
        target_ids = list(tokenizer.encode(task.target_delimiter + target,
                                           add_special_tokens=False))
        if eos is not None:
            target_ids.append(eos)
        cut = False
        try:
            prompt = builder.build(ex.fields, max_length - len(target_ids), ex.id)
        except DataError:
            # Even with the truncatable field emptied the target does not fit: cut the target.
            values = dict(ex.fields)
            if task.truncate:
                values[task.truncate] = ""
            prompt = replace(builder.build(values, None, ex.id), truncated=True)
            room = max_length - len(prompt.ids)
            if room <= 0:
                no_room += 1
                continue
            target_ids, cut = target_ids[:room], True
        ids = tuple(prompt.ids) + tuple(target_ids)
        labels = (IGNORE,) * len(prompt.ids) + tuple(target_ids)
        is_cut = prompt.truncated or cut
        truncated += is_cut
        out.append(TrainExample(ex.id, ids, labels, is_cut))
    stats = BuildStats(rows=len(examples), kept=len(out), truncated=truncated,
                       dropped_no_target_room=no_room, dropped_empty_target=empty)
    return out, stats


def collate(batch: Sequence[TrainExample], pad_id: int) -> dict[str, Any]:
    """Dynamic padding to the longest row of the batch (right side)."""
    import torch

    width = max(len(x.input_ids) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        n = len(x.input_ids)
        ids[i, :n] = torch.tensor(x.input_ids)
        labels[i, :n] = torch.tensor(x.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
