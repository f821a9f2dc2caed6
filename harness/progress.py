"""Rich progress bars with examples/s, on stderr; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
from typing import Any

from harness import env


class Progress:
    """A thin wrapper so engine code does not depend on rich's API details."""

    def __init__(self, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty() and not env.text("HARNESS_NO_PROGRESS")
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, label: str, total: int) -> int:
        """A bar for `label`; the same label again (a later chunk) extends that bar."""
        if self._bar is None:
            return 0
        for task in self._bar.tasks:
            if task.description == label:
                self._bar.update(task.id, total=(task.total or 0) + total)
                return int(task.id)
        return int(self._bar.add_task(label, total=total, rate=""))

    def advance(self, task_id: int, n: int) -> None:
        """Move a bar on by n items."""
        if self._bar is None:
            return
        self._bar.advance(task_id, n)
        task = next(t for t in self._bar.tasks if t.id == task_id)
        elapsed = task.elapsed or 0.0
        if elapsed > 0:
            self._bar.update(task_id, rate=f"{task.completed / elapsed:.1f} ex/s")
