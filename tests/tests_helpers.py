"""Helpers shared by tests."""

import json


def strip_report(report: dict) -> dict:
    """A report without what may differ between identical runs: timings and timestamps."""
    report = json.loads(json.dumps(report))
    report.pop("created_at", None)
    report.pop("timings", None)
    for run in report.get("runs", [report]):
        for task in run.get("tasks", {}).values():
            task.pop("timings", None)
    return report
