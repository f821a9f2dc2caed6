"""Render a comparison report (report.json, kind: comparison) as GitHub-flavoured Markdown."""

from __future__ import annotations

from typing import Any

from harness.degenerate import warning_lines
from harness.metrics import INFO
from harness.report.markdown import (
    adapter_check,
    fmt_value,
    metric_label,
    metric_order,
    model_format,
)


def fmt_delta(metric: str, value: float) -> str:
    info = INFO.get(metric)
    if info is not None and info.scale == "fraction":
        return f"{100 * value:+.2f}"
    return f"{value:+.4g}"


def unit(metric: str) -> str:
    info = INFO.get(metric)
    return " pp" if info is not None and info.scale == "fraction" else ""


def verdict(m: dict[str, Any]) -> str:
    if not m["significant"]:
        return "not significant"
    if m["higher_is_better"] is None:
        return "significant change"
    better = (m["delta"] > 0) == m["higher_is_better"]
    return "significant improvement" if better else "significant regression"


def headline(metrics: dict[str, Any]) -> str:
    return min(metrics, key=metric_order)


def summary_line(task: str, metric: str, m: dict[str, Any]) -> str:
    lo, hi = m["ci95"]
    return (f"{task} {metric} {fmt_delta(metric, m['delta'])}{unit(metric)} "
            f"[{fmt_delta(metric, lo)}, {fmt_delta(metric, hi)}], {verdict(m)}")


def _row(metric: str, m: dict[str, Any], task: str | None = None) -> str:
    lo, hi = m["ci95"]
    p = "–" if m["p_value"] is None else f"{m['p_value']:.3g}"
    lead = f"| {task} " if task else ""
    return (f"{lead}| {metric_label(metric)} | {fmt_value(metric, m['before'])} | "
            f"{fmt_value(metric, m['after'])} | {fmt_delta(metric, m['delta'])} | "
            f"[{fmt_delta(metric, lo)}, {fmt_delta(metric, hi)}] | {p} | {verdict(m)} |")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def render_comparison(report: dict[str, Any]) -> str:
    before, after = report["before"], report["after"]
    tasks = report["tasks"]
    lines = [f"# harness comparison: {before['label']} → {after['label']}", ""]
    for name, task in sorted(tasks.items()):
        for side in ("before", "after"):
            label = before["label"] if side == "before" else after["label"]
            lines += warning_lines(f"{name} ({label})", (task.get("degenerate") or {}).get(side))
    if len(lines) > 2:
        lines.append("")
    general = report["general"]
    if general:
        lines += ["**Forgetting:** " + "; ".join(
            summary_line(t, headline(tasks[t]["metrics"]),
                         tasks[t]["metrics"][headline(tasks[t]["metrics"])]) for t in general)
            + ".", ""]
    targets = [t for t in report["targets"] if tasks[t]["metrics"]]
    if targets:
        lines += ["**Targets:** " + "; ".join(
            summary_line(t, headline(tasks[t]["metrics"]),
                         tasks[t]["metrics"][headline(tasks[t]["metrics"])]) for t in targets)
            + ".", ""]
    lines += [f"Base = `{before['label']}`, +Adapter = `{after['label']}`. Scores marked (%) are "
              f"×100 and their Δ in percentage points. 95% CIs are paired bootstrap intervals "
              f"over the same examples ({report['settings']['bootstrap_resamples']} resamples); "
              "a change is significant when its CI excludes 0; p is the exact McNemar test "
              "(accuracies).", ""]
    header = "| Metric | Base | +Adapter | Δ | 95% CI | p | |\n|---|---:|---:|---:|---:|---:|---|"
    if general:
        lines += ["## Forgetting (general tasks)", "",
                  "| Task " + header.replace("\n", "\n|---"), ]
        for t in general:
            for metric, m in sorted(tasks[t]["metrics"].items(),
                                    key=lambda kv: metric_order(kv[0])):
                lines.append(_row(metric, m, t))
        lines.append("")
    for t in sorted(tasks, key=lambda t: (tasks[t]["role"] != "target", t)):
        entry = tasks[t]
        ds = entry["dataset"]
        lines += [f"## {t} ({entry['role']})", "",
                  f"n = {entry['n']} examples, `{ds['source']}` (sha256 `{ds['sha256'][:12]}`).",
                  "", header]
        for metric, m in sorted(entry["metrics"].items(), key=lambda kv: metric_order(kv[0])):
            lines.append(_row(metric, m))
        if entry.get("metrics_not_compared"):
            lines += ["", "Not in both runs, not compared: "
                      + ", ".join(entry["metrics_not_compared"]) + "."]
        if entry.get("examples"):
            lines += ["", "<details><summary>Example outputs</summary>", "",
                      "| id | Reference | Base | +Adapter |", "|---|---|---|---|"]
            lines += [f"| {e['id']} | {_cell(e['reference'])} | {_cell(e['before'])} | "
                      f"{_cell(e['after'])} |" for e in entry["examples"]]
            lines += ["", "</details>"]
        lines.append("")
    lines += ["## Set-up", "", "| | Base | +Adapter |", "|---|---|---|"]
    for key in ("id", "quantization", "dtype"):
        lines.append(f"| {key} | {before['model'].get(key)} | {after['model'].get(key)} |")
    base = before["model"].get("base") or {}
    after_base = (after["model"].get("base") or {}).get("id")
    lines.append(f"| base | `{base.get('id')}` | `{after_base}` |")
    lines.append(f"| format | {model_format(before['model'])} | {model_format(after['model'])} |")
    adapter = after["model"].get("adapter") or {}
    if adapter:
        lines.append(f"| adapter | – | `{adapter.get('path', '–')}` ({adapter.get('peft_type')}, "
                     f"r={adapter.get('r')}) |")
        lines.append(f"| adapter on? | – | {adapter_check(adapter)} |")
    else:
        lines.append("| adapter | – | – |")
    v = report["versions"]
    lines += ["", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + "."]
    return "\n".join(lines) + "\n"
