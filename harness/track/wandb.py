"""Weights & Biases: a run with its config, metrics (with steps while training), the summary,
and the samples as W&B Tables. $WANDB_MODE decides online or offline; where it is unset the
run is offline (nothing leaves the machine, no login prompt) and `wandb sync OUT/wandb/…`
uploads it later; WANDB_MODE=online needs a login (checked first). The run's files, and
wandb's cache and data folders (offline also its settings folder) where the user has not set
them, stay in OUT. The project is $WANDB_PROJECT or "harness".
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from harness import env
from harness.errors import ConfigError
from harness.track import Scalar, TrackerContext

MODES = ("online", "offline", "disabled")


def mode() -> str:
    """$WANDB_MODE, checked; offline where it is unset or empty."""
    value = env.text("WANDB_MODE") or "offline"
    if value not in MODES:
        raise ConfigError(f"WANDB_MODE={value!r}: give one of {', '.join(MODES)} (or leave it "
                          f"unset for an offline run in --out)")
    os.environ["WANDB_MODE"] = value  # wandb reads it too
    return value


def logged_in() -> bool:
    """A W&B key in the environment or in ~/.netrc for the W&B host."""
    import netrc
    from urllib.parse import urlparse

    if env.text("WANDB_API_KEY"):
        return True
    host = urlparse(env.text("WANDB_BASE_URL") or
                    "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker:
    """One W&B run (offline unless $WANDB_MODE says otherwise)."""

    def __init__(self, ctx: TrackerContext) -> None:
        run_mode = mode()
        if run_mode == "online" and not logged_in():
            raise ConfigError("WANDB_MODE=online needs a W&B login: run `wandb login` or set "
                              "WANDB_API_KEY (or leave WANDB_MODE unset for an offline run in "
                              "--out)")
        with warnings.catch_warnings():  # pydantic warnings some wandb versions give on import
            warnings.simplefilter("ignore")
            import wandb
        self.wandb = wandb
        local = (ctx.out / "wandb" / ".local").resolve()
        # offline, wandb's settings folder too: online runs keep the user's (their login)
        folders = ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR") + (
            ("WANDB_CONFIG_DIR",) if run_mode != "online" else ())
        for var in folders:
            if not env.text(var):
                os.environ[var] = str(local)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=env.text("WANDB_PROJECT") or "harness",
                              name=ctx.name, job_type=ctx.job, dir=str(ctx.out.resolve()),
                              mode=run_mode,  # type: ignore[arg-type]
                              reinit="create_new")

    def params(self, values: Mapping[str, Scalar]) -> None:
        """Log parameters into the run's config."""
        self.run.config.update(dict(values), allow_val_change=True)

    def metrics(self, values: Mapping[str, float], step: int | None) -> None:
        """Log figures at the step; evaluation figures also go into the run's summary."""
        if step is None:  # evaluation figures: the run's summary, and one history row
            self.run.summary.update(dict(values))
        self.run.log(dict(values), step=step)

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log the table as a W&B Table under samples/."""
        self.run.log({f"samples/{name}": self.wandb.Table(columns=list(columns),
                                                         data=[list(r) for r in rows])})

    def close(self, ok: bool) -> None:
        """Finish the run with exit code 0 or 1."""
        self.run.finish(exit_code=0 if ok else 1)


def open_tracker(ctx: TrackerContext) -> WandbTracker:
    """A W&B run: offline unless WANDB_MODE says otherwise, its files in OUT."""
    return WandbTracker(ctx)
