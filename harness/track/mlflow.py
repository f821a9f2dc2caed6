"""MLflow: a run with params, metrics (with steps while training) and the samples as table
artifacts. The store is $MLFLOW_TRACKING_URI where set (a server, a database); otherwise a
local SQLite store in OUT (mlflow.db, artifacts in OUT/mlruns), MLflow's own local default
since its file store went into maintenance. The experiment is $MLFLOW_EXPERIMENT_NAME or
"harness".
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness import env
from harness.paths import folder_lock
from harness.track import Scalar, TrackerContext

PARAM_CHARS = 6000  # MLflow's limit on a parameter value
_KEY = re.compile(r"[^\w\-. /]")  # the characters MLflow allows in a key


def key(name: str) -> str:
    """A key MLflow accepts: characters it refuses become _."""
    return _KEY.sub("_", name)


class MlflowTracker:
    """One MLflow run through MlflowClient (no global active run)."""

    def __init__(self, ctx: TrackerContext) -> None:
        import mlflow

        # their INFO lines (database set-up) and warnings before an error are not ours: an error
        # reaches the user as one line from open_trackers
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.ERROR)
        uri = env.text("MLFLOW_TRACKING_URI") or None
        experiment = env.text("MLFLOW_EXPERIMENT_NAME") or "harness"
        # The local store is created (tables, experiment) by whichever run comes first: two
        # commands into one --out take turns at it.
        ctx.out.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if uri else folder_lock(ctx.out):
            self.client = mlflow.MlflowClient(
                tracking_uri=uri or f"sqlite:///{(ctx.out / 'mlflow.db').resolve()}")
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:  # local default: artifacts inside OUT, not in the current folder
                location = None if uri else (ctx.out / "mlruns").resolve().as_uri()
                experiment_id = self.client.create_experiment(experiment,
                                                              artifact_location=location)
        self.run_id = self.client.create_run(experiment_id, run_name=ctx.name,
                                             tags={"harness.job": ctx.job}).info.run_id

    def params(self, values: Mapping[str, Scalar]) -> None:
        """Log parameters in one batch (values cut to MLflow's length limit)."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[
            Param(key(k), str(v)[:PARAM_CHARS]) for k, v in values.items()])

    def metrics(self, values: Mapping[str, float], step: int | None) -> None:
        """Log figures in one batch at the step (0 for evaluation figures)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key(k), float(v), now, step or 0) for k, v in values.items()])

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log the table as an MLflow table artifact under samples/."""
        data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
        self.client.log_table(self.run_id, data=data, artifact_file=f"samples/{key(name)}.json")

    def close(self, ok: bool) -> None:
        """Mark the run FINISHED or FAILED."""
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


def open_tracker(ctx: TrackerContext) -> MlflowTracker:
    """An MLflow run in $MLFLOW_TRACKING_URI, else in OUT/mlflow.db."""
    return MlflowTracker(ctx)
