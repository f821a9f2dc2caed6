"""`harness gate`: rules over a report -> exit 0 (all hold), 1 (one fails), 2 (bad rule/file).

A rule is `TASK.METRIC[.FIELD] OP NUMBER`. FIELD is `delta` (default on comparisons), `before`,
`after`, `mde` (the minimum detectable effect), `p` or `p_adjusted` on comparisons, `value`
(default) on run reports. With a CI (deltas, run values), a rule fails by default only when the
whole CI lies on the wrong side (the violation is significant); with --strict it must hold
over the whole CI. With significance="adjusted", a delta rule fails only when, besides, the
cell is significant after the report's multiple-comparison adjustment. Values without a CI
(before, after, mde, p) are compared as they are.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import yamlio
from harness.degenerate import RATE_METRICS
from harness.errors import ConfigError, DataError
from harness.report import SCHEMA_VERSION
from harness.report.build import iter_runs
from harness.shapes import Report

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
FIELDS = "delta|before|after|value|mde|p_adjusted|p"
COMPARISON_KEYS = {"delta": "delta", "before": "before", "after": "after", "mde": "mde",
                   "p": "p_value", "p_adjusted": "p_adjusted"}
_RULE = re.compile(r"^\s*([\w\-:]+)\.([\w\-]+)(?:\.(" + FIELDS + r"))?\s*"
                   r"(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Rule:
    """One gate rule as parsed: TASK.METRIC[.field] OP NUMBER, and its source text."""

    text: str
    task: str
    metric: str
    field: str | None
    op: str
    threshold: float


@dataclass(frozen=True)
class Verdict:
    """A rule checked against a report: the value found, its CI, and whether it passed."""

    rule: Rule
    value: float
    ci95: tuple[float, float] | None
    passed: bool


def parse_rule(text: str) -> Rule:
    """One rule (`TASK.METRIC[.FIELD] OP NUMBER`) checked and parsed."""
    m = _RULE.match(text)
    if not m:
        raise ConfigError(f"rule '{text}' is not of the form TASK.METRIC[.delta|.before|.after|"
                          f".mde|.p|.p_adjusted|.value] OP NUMBER with OP one of > >= < <= "
                          f"(e.g. 'hellaswag.acc.delta >= -0.01')")
    task, metric, field, op, number = m.groups()
    return Rule(text.strip(), task, metric, field, op, float(number))


def load_rules(rules: Sequence[str], files: Sequence[Path]) -> list[Rule]:
    """Rules from --rule flags and rule files, each checked."""
    texts = list(rules)
    for f in files:
        data = yamlio.load_file(f, "--rules file")
        items = data.get("rules") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(r, str) for r in items):
            raise ConfigError(f"--rules {f}: expected a list of rule strings under 'rules:'")
        texts += items
    if not texts:
        raise ConfigError("no rules given: add --rule 'TASK.METRIC OP NUMBER' or --rules FILE")
    return [parse_rule(t) for t in texts]


def _pick(names: Sequence[str], name: str, what: str, where: str = "") -> None:
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown {what} '{name}'{where} in rule.{hint} Known: "
                          f"{', '.join(sorted(names))}")


def _metrics(task: Mapping[str, Any], comparison: bool) -> dict[str, Any]:
    """A task's metric entries, plus its degenerate-output rates (generation tasks) in the same
    shape: `value` on runs; `before`, `after` and `delta` (after - before) on comparisons;
    no CI.
    """
    metrics = dict(task["metrics"])
    block = task.get("degenerate")
    if not isinstance(block, dict):
        return metrics
    for name, key in RATE_METRICS.items():
        if not comparison:
            metrics[name] = {"value": block.get("rates", {}).get(key), "ci95": None}
            continue
        b, a = ((block.get(side) or {}).get("rates", {}).get(key) for side in ("before", "after"))
        metrics[name] = {"before": b, "after": a, "ci95": None,
                         "delta": None if a is None or b is None else a - b}
    return metrics


@dataclass(frozen=True)
class Found:
    """The value a rule names in a report, with its CI and adjusted significance."""

    value: float | None
    ci95: tuple[float, float] | None
    significant_adjusted: bool | None  # comparisons' deltas; None: not in an adjusted family


DIVERGENCE = ("kld_mean", "kld_p99", "kld_max", "same_top_token", "ppl_before", "ppl_after",
              "ppl_ratio")


def _divergence(report: Report, rule: Rule) -> Found:
    """`divergence.kld_mean < 0.05`: a figure of compare --candidate's divergence block."""
    block = report.get("divergence")
    if not isinstance(block, dict):
        raise ConfigError(f"rule '{rule.text}': this report has no divergence block (compare "
                          f"--candidate MODEL writes one)")
    if rule.field is not None:
        raise ConfigError(f"rule '{rule.text}': divergence figures have no .{rule.field}")
    _pick(list(DIVERGENCE), rule.metric, "divergence figure")
    value = block.get(rule.metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DataError(f"rule '{rule.text}': the report's divergence.{rule.metric} is not a "
                        f"number")
    return Found(float(value), None, None)


def _lookup(report: Report, rule: Rule) -> Found:
    if rule.task == "divergence" and report["kind"] == "comparison" \
            and "divergence" not in report.get("tasks", {}):
        return _divergence(report, rule)
    tasks: Mapping[str, Mapping[str, Any]]
    if report["kind"] == "comparison":
        tasks, comparison, field = report["tasks"], True, rule.field or "delta"
        if field == "value":
            raise ConfigError(f"rule '{rule.text}': a comparison has .delta, .before, .after, "
                              f".mde, .p and .p_adjusted")
    else:
        runs = list(iter_runs(report))
        if len(runs) != 1:
            raise ConfigError(f"the report holds {len(runs)} models; gate a comparison or a "
                              f"one-model run")
        tasks, comparison, field = runs[0]["tasks"], False, rule.field or "value"
        if field != "value":
            raise ConfigError(f"rule '{rule.text}': .{rule.field} needs a comparison report; "
                              f"a run report has .value")
    _pick(list(tasks), rule.task, "task")
    metrics = _metrics(tasks[rule.task], comparison)
    _pick(list(metrics), rule.metric, "metric", f" of task '{rule.task}'")
    m = metrics[rule.metric]
    key = COMPARISON_KEYS[field] if comparison else field
    if key not in m:
        version = report.get("schema_version")
        raise DataError(f"rule '{rule.text}': this report (schema_version {version}) has no "
                        f"{key} for {rule.task}.{rule.metric}; re-run harness compare to get "
                        f"reports of schema_version {SCHEMA_VERSION}")
    ci = m["ci95"] if field in ("delta", "value") else None
    return Found(m[key], (ci[0], ci[1]) if ci else None, m.get("significant_adjusted"))


def evaluate_rules(report: Report, rules: Sequence[Rule], strict: bool,
                   significance: str = "raw") -> list[Verdict]:
    """significance: "raw" (a violation counts when the cell's CI lies wholly on the wrong
    side) or "adjusted" (and the cell is significant after the report's adjustment).
    """
    if significance == "adjusted" and report["kind"] == "comparison" \
            and "adjustment" not in report.get("settings", {}):
        raise DataError(f"--significance adjusted: this comparison (schema_version "
                        f"{report.get('schema_version')}) has no adjusted p-values; re-run "
                        f"harness compare to get reports of schema_version {SCHEMA_VERSION}")
    verdicts = []
    for rule in rules:
        found = _lookup(report, rule)
        value, ci = found.value, found.ci95
        if value is None or (ci is not None and None in ci):
            what = "value" if value is None else "95% CI"
            raise DataError(f"rule '{rule.text}': the report has no {what} for "
                            f"{rule.task}.{rule.metric} (null: the metric could not be "
                            f"computed); fix the run, or drop the rule")
        holds = OPS[rule.op]
        if ci is None:
            passed = holds(value, rule.threshold)
        elif strict:
            passed = holds(ci[0], rule.threshold) and holds(ci[1], rule.threshold)
        else:  # fails only when the whole CI violates the rule
            passed = holds(ci[0], rule.threshold) or holds(ci[1], rule.threshold)
            if not passed and significance == "adjusted" and found.significant_adjusted is False:
                passed = True  # a violation, but not significant after the adjustment
        verdicts.append(Verdict(rule, value, ci, passed))
    return verdicts


def render_verdicts(verdicts: Sequence[Verdict], strict: bool,
                    significance: str = "raw") -> str:
    """The verdicts as a table, one line per rule."""
    lines = []
    for v in verdicts:
        ci = f" [95% CI {v.ci95[0]:+.4g}, {v.ci95[1]:+.4g}]" if v.ci95 else ""
        status = "PASS" if v.passed else "FAIL"
        lines.append(f"{status}  {v.rule.text}: value {v.value:+.4g}{ci}")
    failed = sum(1 for v in verdicts if not v.passed)
    mode = "strict: whole CI must hold" if strict else "fails only on significant violations"
    if significance == "adjusted" and not strict:
        mode = "fails only on violations significant after the report's adjustment"
    lines.append(f"{len(verdicts) - failed} passed, {failed} failed ({mode})")
    return "\n".join(lines)
