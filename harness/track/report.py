"""A finished report folder as tracker entries, read from report.json and samples/ alone (as
show and report.html are): every metric with its 95% CI bounds, the comparison's Δ, p and
forgetting, the models and settings as parameters, and one samples table per task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.build import iter_runs
from harness.shapes import Record, Report
from harness.show import Side, load
from harness.track import Scalar, Trackers, flat_params


def _numbers(prefix: str, block: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in fields:
        value = block.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value):
            out[f"{prefix}/{name}"] = float(value)
    ci = block.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        out[f"{prefix}/ci_low"], out[f"{prefix}/ci_high"] = float(ci[0]), float(ci[1])
    return out


def report_metrics(report: Report) -> dict[str, float]:
    """Comparison: TASK/METRIC/{before,after,delta,ci_low,ci_high,p_value}, the CI being Δ's.
    Run: [LABEL/]TASK/METRIC/{value,ci_low,ci_high}, the label where the run has several.
    """
    out: dict[str, float] = {}
    if report["kind"] == "comparison":
        for task, block in report["tasks"].items():
            for metric, m in block["metrics"].items():
                out.update(_numbers(f"{task}/{metric}", m,
                                    ("before", "after", "delta", "p_value", "p_adjusted")))
        return out
    runs = list(iter_runs(report))
    for run in runs:
        prefix = f"{run['label']}/" if len(runs) > 1 else ""
        for task, result in run["tasks"].items():
            for metric, summary in result["metrics"].items():
                out.update(_numbers(f"{prefix}{task}/{metric}", summary, ("value",)))
    return out


def report_params(report: Report) -> dict[str, Scalar]:
    """A report's kind, settings and models as flat parameters."""
    params: dict[str, Any] = {"kind": report.get("kind"), "settings": report.get("settings")}
    if report["kind"] == "comparison":
        params.update(before=report["before"]["label"], after=report["after"]["label"],
                      model=report["after"].get("model"))
    else:
        params["models"] = {run["label"]: run.get("model") for run in iter_runs(report)}
    return {k: v for k, v in flat_params(params).items() if v != ""}


def _shown(rec: Record) -> str:
    shown = rec.get("input") or {}
    return str(shown.get("prompt", "")) if isinstance(shown, dict) else ""


def _prediction(rec: Record | None) -> Any:
    if rec is None:
        return None
    pred = rec.get("prediction")
    return pred.get("choice") if isinstance(pred, dict) else pred


def _metric_names(sides: list[Side], task: str) -> list[str]:
    names = {m for side in sides for rec in side.samples.get(task, {}).values()
             for m in rec.get("metrics", {})}
    return sorted(names)


def sample_tables(report: Report, sides: list[Side]
                  ) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(name, columns, rows) per task; for a comparison one table with both sides and each
    per-example metric's Δ, for a run one per model and task.
    """
    tables = []
    if report["kind"] == "comparison":
        before, after = sides
        for task in report["tasks"]:
            metrics = _metric_names(sides, task)
            cols = ["id", "input", "reference", before.label, after.label]
            cols += [f"{side} {m}" for m in metrics for side in (before.label, after.label)]
            cols += [f"Δ {m}" for m in metrics]
            rows = []
            b_recs, a_recs = before.samples.get(task, {}), after.samples.get(task, {})
            for ex_id in dict.fromkeys([*b_recs, *a_recs]):
                b, a = b_recs.get(ex_id), a_recs.get(ex_id)
                first: Record = b or a or {"id": ex_id}
                row = [ex_id, _shown(first), first.get("reference"), _prediction(b),
                       _prediction(a)]
                bm = b.get("metrics", {}) if b else {}
                am = a.get("metrics", {}) if a else {}
                row += [side.get(m) for m in metrics for side in (bm, am)]
                row += [am[m] - bm[m] if isinstance(am.get(m), (int, float))
                        and isinstance(bm.get(m), (int, float)) else None for m in metrics]
                rows.append(row)
            tables.append((task, cols, rows))
        return tables
    for side in sides:
        for task, recs in side.samples.items():
            metrics = _metric_names([side], task)
            rows = [[ex_id, _shown(rec), rec.get("reference"), _prediction(rec)]
                    + [rec.get("metrics", {}).get(m) for m in metrics]
                    for ex_id, rec in recs.items()]
            name = f"{side.label}/{task}" if len(sides) > 1 else task
            tables.append((name, ["id", "input", "reference", "prediction", *metrics], rows))
    return tables


def log_report(trackers: Trackers, folder: Path) -> None:
    """Log a written report folder to every tracker (nothing to do for none)."""
    if not trackers:
        return
    report, sides = load(folder)
    trackers.params(report_params(report))
    trackers.metrics(report_metrics(report))
    for name, columns, rows in sample_tables(report, sides):
        trackers.table(name, columns, rows)
