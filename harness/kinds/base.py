"""`Kind`: what a task kind is to the runner, the store and compare. Each kind module ends
with its `KIND`; harness/kinds/__init__.py lists them in `KINDS`, which the runner, task-file
validation and compare read. Adding a kind is a module and an entry there (and its name in
`specs.TaskSpec.kind`), docs/extending.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.backend import Backend
    from harness.data import Example
    from harness.metrics import Scores
    from harness.progress import Progress
    from harness.shapes import Record, TaskExtras
    from harness.specs import BertScoreSpec, TaskSpec



@dataclass(frozen=True)
class Kind:
    """A task kind's functions.

    - run(task, examples, backend, progress, label, max_new_tokens) -> records, one per example;
    - start(...same...) -> finish(): the same in two halves, where the kind can queue its
      device work and build records later (the runner then overlaps store writes with the
      device); None where the kind has no such split;
    - record_ok(record): a stored record has the shape `score` reads (else it is recomputed);
    - score(task, records, bertscore) -> Scores, running the metric libraries;
    - rebuild(records) -> Scores from records as stored in samples (no metric library: what
      compare and seeds read);
    - settings(task, max_new_tokens) -> the kind's part of the task config (None: none);
    - extras(records) -> keys the report adds for the task (degenerate outputs, prompt format);
    - chunk: examples per result-store chunk (a crash loses at most the chunks in flight).
    """

    run: Callable[[TaskSpec, Sequence[Example], Backend, Progress, str, int | None],
                  list[Record]]
    record_ok: Callable[[Record], bool]
    score: Callable[[TaskSpec, Sequence[Record], BertScoreSpec], Scores]
    rebuild: Callable[[Sequence[Record]], Scores]
    chunk: int
    start: Callable[[TaskSpec, Sequence[Example], Backend, Progress, str, int | None],
                    Callable[[], list[Record]]] | None = None
    settings: Callable[[TaskSpec, int | None], dict[str, Any] | None] | None = None
    extras: Callable[[Sequence[Record]], TaskExtras] | None = None
