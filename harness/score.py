"""`harness score`: score outputs made elsewhere (vLLM, an API) with the same metrics."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from harness.data import load_task_data, read_file
from harness.errors import ConfigError, DataError
from harness.report import SCHEMA_VERSION
from harness.report.build import versions
from harness.runner import summarize_task
from harness.specs import BertScoreSpec, TaskSpec


def load_predictions(path: Path) -> list[dict[str, Any]]:
    rows = read_file(path)
    problems: list[str] = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("prediction"), str):
            problems.append(f"line {i}: 'prediction' must be a string")
        elif "reference" not in row and "id" not in row:
            problems.append(f"line {i}: needs 'reference' or an 'id' of a task row")
        elif "reference" in row and not isinstance(row["reference"], str):
            problems.append(f"line {i}: 'reference' must be a string")
        if len(problems) >= 3:
            break
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    return rows


def score_predictions(task: TaskSpec, predictions: Path, data_path: str | None,
                      limit: int | None, bert: BertScoreSpec, resamples: int,
                      seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if task.kind != "generation":
        raise ConfigError(f"harness score takes generation tasks; '{task.name}' is "
                          f"{task.kind} (it needs the model's log-likelihoods: use harness run)")
    rows = load_predictions(predictions)
    by_id: dict[str, str] = {}
    if any("reference" not in r for r in rows):
        data = load_task_data(task, data_path, None)
        by_id = {e.id: e.fields[task.target] for e in data.examples}
    records = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        ex_id = str(row.get("id", i))
        if "reference" in row:
            reference = row["reference"]
        elif ex_id in by_id:
            reference = by_id[ex_id]
        else:
            raise DataError(f"{predictions}: id '{ex_id}' matches no row of task "
                            f"'{task.name}' (ids look like: {', '.join(list(by_id)[:3])})")
        if not reference.strip():
            raise DataError(f"{predictions}: example '{ex_id}' has an empty reference")
        records.append({"id": ex_id, "prediction": row["prediction"], "reference": reference})
    if any("bertscore" in m for m in task.metrics):
        from harness.metrics.bertscore import get_scorer

        get_scorer(bert)
    digest = hashlib.sha256(json.dumps([[r["id"], r["prediction"], r["reference"]]
                                        for r in records]).encode()).hexdigest()
    started = time.time()
    result = summarize_task(task, f"file:{predictions}", digest, records, bert, resamples, seed,
                            None)
    report = {
        "schema_version": SCHEMA_VERSION, "kind": "run", "harness_version": versions()["harness"],
        "versions": versions(), "device": {"type": "none", "name": "scored predictions",
                                          "dtype": "n/a"},
        "settings": {"limit": limit, "bootstrap_resamples": resamples, "seed": seed},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "timings": {"wall_seconds": round(time.time() - started, 3)},
        "label": "predictions",
        "model": {"id": digest[:16], "predictions": str(predictions)},
        "tasks": {task.name: result},
    }
    return report, records
