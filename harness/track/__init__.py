"""Run logs for experiment trackers: `--log-to tensorboard|mlflow|wandb` on train, run and
compare. Each backend is one module with an `open_tracker(ctx)` and one entry in TRACKERS;
its library is imported only when asked for, and a missing one is a one-line error naming
the extra to install.

A command opens its trackers before any work (so a missing package fails first), hands them
down explicitly, and closes them at the end. A tracker that fails while logging (a server
gone, a full disk) is dropped with its error kept: the command's own outputs are written
first and never lost, and the command then ends with that error in one line.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ConfigError, first_line

Scalar = str | int | float | bool


@dataclass(frozen=True)
class TrackerContext:
    """Where and as what a command logs: its --out folder (local logs go inside it), a run
    name, the job ("train", "run", "compare").
    """

    out: Path
    name: str
    job: str


class Tracker(Protocol):
    """What a backend implements. Keys are `/`-separated (`train/loss`, `TASK/METRIC/after`)."""

    def params(self, values: Mapping[str, Scalar]) -> None:
        """Log the run's parameters (a flat mapping)."""

    def metrics(self, values: Mapping[str, float], step: int | None) -> None:
        """Log figures at a training step, or (step None) an evaluation's figures."""

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log a table (a task's samples)."""

    def close(self, ok: bool) -> None:
        """End the run, marked finished or failed."""


# name -> (module under harness.track, the pip extra that brings its library)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("harness.track.tensorboard", "tensorboard"),
    "mlflow": ("harness.track.mlflow", "mlflow"),
    "wandb": ("harness.track.wandb", "wandb"),
}


def missing_extra(name: str, err: ImportError) -> ConfigError:
    """The error for a tracker whose library is not installed, naming its pip extra."""
    extra = TRACKERS[name][1]
    return ConfigError(f"--log-to {name} needs the {extra} package ({first_line(err)}); "
                       f"install it with: pip install 'harness[{extra}]'")


@dataclass
class Trackers:
    """The trackers a command logs to, as one. A backend that raises is dropped; its error is
    kept in `errors` (name -> one line) for the command to report once its outputs are safe.
    """

    active: dict[str, Tracker] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.active)

    def _each(self, call: str, *args: Any) -> None:
        for name, tracker in list(self.active.items()):
            try:
                getattr(tracker, call)(*args)
            except Exception as err:  # the backend's own errors: any type
                self.errors[name] = f"{type(err).__name__}: {first_line(err)}"
                del self.active[name]
                # already failing: the first error is the one to report
                with contextlib.suppress(Exception):
                    tracker.close(False)

    def params(self, values: Mapping[str, Scalar]) -> None:
        """Log parameters to every tracker still active."""
        self._each("params", values)

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Log figures to every tracker still active (nothing for none)."""
        if values:
            self._each("metrics", values, step)

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log a table to every tracker still active."""
        self._each("table", name, columns, rows)

    def close(self, ok: bool) -> None:
        """Close every tracker still active."""
        self._each("close", ok)
        self.active.clear()

    def failure(self) -> str | None:
        """One line for the trackers that failed, or None."""
        if not self.errors:
            return None
        return "; ".join(f"--log-to {n} failed ({e})" for n, e in self.errors.items())


# What the trackers write in --out when they log locally: removed again, where this command
# created it, if the trackers cannot all start (nothing half-written is left behind).
LOCAL_FILES = ("tensorboard", "mlflow.db", "mlflow.db-journal", "mlruns", "wandb")


def open_trackers(names: Sequence[str], ctx: TrackerContext) -> Trackers:
    """Open each named tracker (none: an empty, inert set). Raises ConfigError for an unknown
    name or a missing package, before any work, closing those already open and removing the
    local files they had just created.
    """
    trackers = Trackers()
    existed = {name for name in LOCAL_FILES if (ctx.out / name).exists()}
    try:
        for name in dict.fromkeys(names):
            if name not in TRACKERS:
                raise ConfigError(f"--log-to {name}: unknown tracker (known: "
                                  f"{', '.join(TRACKERS)})")
            try:
                module = importlib.import_module(TRACKERS[name][0])
                trackers.active[name] = module.open_tracker(ctx)
            except ImportError as err:
                raise missing_extra(name, err) from None
            except ConfigError:
                raise
            except Exception as err:  # the library refused to start a run: say which and why
                raise ConfigError(f"--log-to {name}: cannot start a run "
                                  f"({type(err).__name__}: {first_line(err)})") from None
    except ConfigError:
        trackers.close(False)
        for name in set(LOCAL_FILES) - existed:
            path = ctx.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        raise
    return trackers


def flat_params(value: Any, prefix: str = "") -> dict[str, Scalar]:
    """Nested dicts as `a.b.c` keys; lists and None as text (trackers take scalars)."""
    out: dict[str, Scalar] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flat_params(v, f"{prefix}{k}."))
    elif isinstance(value, (str, int, float, bool)):
        out[prefix.rstrip(".")] = value
    else:
        out[prefix.rstrip(".")] = "" if value is None else str(value)
    return out
