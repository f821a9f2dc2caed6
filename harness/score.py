"""`harness score`: score outputs made elsewhere (vLLM, an API) with the same metrics."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from harness import __version__ as harness_version
from harness.data import load_task_data, read_file
from harness.errors import ConfigError, DataError
from harness.policy import DEFAULT_POLICY, CodePolicy
from harness.report import SCHEMA_VERSION
from harness.report.build import versions
from harness.runner import summarize_task
from harness.shapes import Record, RunReport
from harness.specs import BertScoreSpec, TaskSpec


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_predictions(path: Path) -> list[dict[str, Any]]:
    """A predictions file's rows, checked: text predictions, references or task ids."""
    rows = read_file(path)
    if not rows:
        raise DataError(f"--predictions {path} holds no predictions")
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, 1):
        ident = row.get("id")
        if not isinstance(row.get("prediction"), str):
            problems.append(f"row {i}: 'prediction' must be a string")
        elif "reference" not in row and "id" not in row:
            problems.append(f"row {i}: needs 'reference' or an 'id' of a task row")
        elif "reference" in row and not isinstance(row["reference"], str):
            problems.append(f"row {i}: 'reference' must be a string")
        elif "id" in row and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
            problems.append(f"row {i}: 'id' must be text or an integer, got {ident!r}")
        elif not all(_encodable(row[k]) for k in ("prediction", "reference", "id")
                     if isinstance(row.get(k), str)):
            problems.append(f"row {i}: holds text that is not valid Unicode (a lone "
                            f"surrogate?)")
        elif "id" in row and str(ident) in seen:
            problems.append(f"row {i}: id '{ident}' was already given on row "
                            f"{seen[str(ident)]}; ids must be unique")
        if "id" in row and isinstance(ident, (str, int)):
            seen.setdefault(str(ident), i)
        if len(problems) >= 3:
            break
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    return rows


def score_predictions(task: TaskSpec, predictions: Path, data_path: str | None,
                      limit: int | None, bert: BertScoreSpec, resamples: int,
                      seed: int, policy: CodePolicy = DEFAULT_POLICY,
                      ) -> tuple[RunReport, list[Record]]:
    """A run report and records for predictions scored on a generation task."""
    if task.kind != "generation":
        raise ConfigError(f"harness score takes generation tasks; '{task.name}' is "
                          f"{task.kind} (it needs the model's log-likelihoods: use harness run)")
    rows = load_predictions(predictions)
    by_id: dict[str, str] = {}
    if any("reference" not in r for r in rows):
        data = load_task_data(task, data_path, None, policy=policy)
        by_id = {e.id: e.fields[task.target] for e in data.examples}
    records: list[Record] = []
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
    report: RunReport = {
        "schema_version": SCHEMA_VERSION, "kind": "run", "harness_version": harness_version,
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
