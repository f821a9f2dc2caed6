"""The shape of report.json as gate, leaderboard and compare read it, checked once on load so
that a hand-edited or foreign file gives one line naming the key, not a KeyError later.
docs/report-schema.md documents every field; this checks the ones the readers use.
"""

from __future__ import annotations

from typing import Any

from harness.errors import DataError

KINDS = ("run", "comparison")


def _num(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, what: str) -> None:
        raise DataError(f"{self.where}: '{key}' {what}; is this a report written by harness?")

    def mapping(self, obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
        value = obj.get(key)
        if not isinstance(value, dict):
            self.fail(f"{path}{key}", "is missing or not an object")
        return value  # type: ignore[return-value]

    def text(self, obj: dict[str, Any], key: str, path: str) -> None:
        if not isinstance(obj.get(key), str):
            self.fail(f"{path}{key}", "is missing or not text")

    def number(self, obj: dict[str, Any], key: str, path: str) -> None:
        if key not in obj or not _num(obj[key]):
            self.fail(f"{path}{key}", "is missing or not a number")

    def ci(self, obj: dict[str, Any], path: str) -> None:
        ci = obj.get("ci95")
        if not (isinstance(ci, list) and len(ci) == 2 and all(_num(x) for x in ci)):
            self.fail(f"{path}ci95", "is missing or not a [low, high] pair")


def _check_run_tasks(c: _Checker, tasks: dict[str, Any], path: str) -> None:
    for name, task in tasks.items():
        p = f"{path}tasks.{name}."
        if not isinstance(task, dict):
            c.fail(p[:-1], "is not an object")
        c.text(task, "kind", p)
        c.mapping(task, "dataset", p)
        c.mapping(task, "config", p)
        for metric, m in c.mapping(task, "metrics", p).items():
            if not isinstance(m, dict):
                c.fail(f"{p}metrics.{metric}", "is not an object")
            c.number(m, "value", f"{p}metrics.{metric}.")
            c.ci(m, f"{p}metrics.{metric}.")


def _check_comparison(c: _Checker, report: dict[str, Any]) -> None:
    for side in ("before", "after"):
        entry = c.mapping(report, side, "")
        c.text(entry, "label", f"{side}.")
        c.mapping(entry, "model", f"{side}.")
    for name, task in c.mapping(report, "tasks", "").items():
        p = f"tasks.{name}."
        if not isinstance(task, dict):
            c.fail(p[:-1], "is not an object")
        if task.get("role") not in ("target", "general"):
            c.fail(f"{p}role", "must be 'target' or 'general'")
        for metric, m in c.mapping(task, "metrics", p).items():
            mp = f"{p}metrics.{metric}."
            if not isinstance(m, dict):
                c.fail(mp[:-1], "is not an object")
            for key in ("before", "after", "delta"):
                c.number(m, key, mp)
            c.ci(m, mp)
            if report.get("schema_version", 1) >= 2:  # intervals by kind, MDE, adjustment
                for key in ("p_value", "p_adjusted", "mde"):
                    c.number(m, key, mp)
    forgetting = report.get("forgetting")
    if not isinstance(forgetting, list):
        c.fail("forgetting", "is missing or not a list")
    for i, f in enumerate(forgetting):  # type: ignore[arg-type]
        if not isinstance(f, dict):
            c.fail(f"forgetting[{i}]", "is not an object")
        c.text(f, "task", f"forgetting[{i}].")
        c.text(f, "metric", f"forgetting[{i}].")
        c.number(f, "delta", f"forgetting[{i}].")


def check_report(report: dict[str, Any], where: str) -> None:
    """Raise DataError naming the first key that is missing or of the wrong type."""
    c = _Checker(where)
    kind = report.get("kind")
    if kind not in KINDS:
        c.fail("kind", f"is {kind!r}, not one of {', '.join(KINDS)}")
    if kind == "comparison":
        _check_comparison(c, report)
        return
    c.mapping(report, "versions", "")
    c.mapping(report, "device", "")
    if "runs" in report:
        runs = report["runs"]
        if not isinstance(runs, list) or not runs:
            c.fail("runs", "is not a non-empty list")
        entries = [(r, f"runs[{i}].") for i, r in enumerate(runs)]
    else:
        entries = [(report, "")]
    for run, p in entries:
        if not isinstance(run, dict):
            c.fail(p[:-1], "is not an object")
        c.text(run, "label", p)
        c.mapping(run, "model", p)
        _check_run_tasks(c, c.mapping(run, "tasks", p), p)
