"""TensorBoard: event files in OUT/tensorboard/JOB-TIME-PID (one folder per run, as
TensorBoard lists runs), through torch's SummaryWriter (which needs the tensorboard package).
Parameters go in as one text entry; TensorBoard has no tables, so the samples stay in the
report folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from harness.track import Scalar, TrackerContext


class TensorBoardTracker:
    """One TensorBoard run folder written by a SummaryWriter."""

    def __init__(self, ctx: TrackerContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = ctx.out / "tensorboard" / f"{ctx.job}-{stamp}-{os.getpid()}"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.job = ctx.job

    def params(self, values: Mapping[str, Scalar]) -> None:
        """Log parameters as one text summary."""
        text = "\n".join(f"    {k}: {json.dumps(v, ensure_ascii=False)}"
                         for k, v in sorted(values.items()))
        self.writer.add_text(f"{self.job}/params", text, 0)

    def metrics(self, values: Mapping[str, float], step: int | None) -> None:
        """Log each figure as a scalar at the step (0 for evaluation figures)."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step or 0)

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """TensorBoard has no tables: nothing is logged."""
        return None

    def close(self, ok: bool) -> None:
        """Flush and close the event file."""
        self.writer.close()


def open_tracker(ctx: TrackerContext) -> TensorBoardTracker:
    """A TensorBoard event folder in OUT/tensorboard."""
    return TensorBoardTracker(ctx)
