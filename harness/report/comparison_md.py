"""Render a comparison report (report.json, kind: comparison) as GitHub-flavoured Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.degenerate import warning_lines
from harness.metrics import INFO
from harness.report.markdown import (
    adapter_check,
    backend_note,
    fmt_value,
    methods_line,
    metric_label,
    metric_order,
    model_format,
)
from harness.shapes import ComparisonReport


def fmt_delta(metric: str, value: float) -> str:
    """A delta with its sign: percentage points for fractions, else 4 significant digits."""
    info = INFO.get(metric)
    if info is not None and info.scale == "fraction":
        return f"{100 * value:+.2f}"
    return f"{value:+.4g}"


def unit(metric: str) -> str:
    """" pp" for fraction metrics, else nothing."""
    info = INFO.get(metric)
    return " pp" if info is not None and info.scale == "fraction" else ""


ADJUSTMENT_NAMES = {"holm": "Holm", "bh": "BH", "none": "none"}


def verdict(m: Mapping[str, Any], adjustment: str = "holm") -> str:
    """A compared metric in words: not significant (with what it could detect), or an improvement,
    regression or change, and whether it survives the adjustment.
    """
    if not m["significant"]:
        mde = m.get("mde")
        return "not significant" + ("" if mde is None else
                                    f"; could detect ≥ {fmt_size(m['metric'], mde)}")
    if m["higher_is_better"] is None:
        text = "significant change"
    else:
        better = (m["delta"] > 0) == m["higher_is_better"]
        text = "significant improvement" if better else "significant regression"
    if m.get("significant_adjusted") is False:
        text += f" (not after {ADJUSTMENT_NAMES.get(adjustment, adjustment)})"
    return text


def forgetting_line(m: Mapping[str, Any], adjustment: str = "holm") -> str:
    """One forgetting cell as text: "TASK METRIC: Δunit [lo, hi], verdict" (show and the
    HTML page; report.md puts the same figures in its table).
    """
    lo, hi = m["ci95"]
    return (f"{m['task']} {metric_label(m['metric'])}: {fmt_delta(m['metric'], m['delta'])}"
            f"{unit(m['metric'])} [{fmt_delta(m['metric'], lo)}, {fmt_delta(m['metric'], hi)}]"
            f", {verdict(m, adjustment)}")


def fmt_size(metric: str, value: float) -> str:
    """An effect size without sign: "2.10 pp" for fractions, "0.031" otherwise."""
    info = INFO.get(metric)
    if info is not None and info.scale == "fraction":
        return f"{100 * value:.2f} pp"
    return f"{value:.4g}"


def headline(metrics: dict[str, Any]) -> str:
    """The task's headline metric: the first in display order."""
    return min(metrics, key=metric_order)


def summary_line(task: str, metric: str, m: Mapping[str, Any], adjustment: str,
                 lead_with_mde: bool = False) -> str:
    """One sentence for a compared metric: delta, interval, verdict (or the MDE first)."""
    m = {**m, "metric": metric}
    lo, hi = m["ci95"]
    change = (f"{fmt_delta(metric, m['delta'])}{unit(metric)} "
              f"[{fmt_delta(metric, lo)}, {fmt_delta(metric, hi)}]")
    if lead_with_mde and m.get("mde") is not None:
        items = f"{m['n']} items" if m.get("n") else "these items"
        return (f"{task} {metric}: {items} could detect a change of ≥ "
                f"{fmt_size(metric, m['mde'])} (80% power); measured {change}, "
                f"{verdict({**m, 'mde': None}, adjustment)}")
    return f"{task} {metric} {change}, {verdict(m, adjustment)}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _row(metric: str, m: Mapping[str, Any], adjustment: str, task: str | None = None) -> str:
    m = {**m, "metric": metric}
    lo, hi = m["ci95"]
    lead = f"| {task} " if task else ""
    mde = "–" if m.get("mde") is None else fmt_size(metric, m["mde"])
    return (f"{lead}| {metric_label(metric)} | {fmt_value(metric, m['before'])} | "
            f"{fmt_value(metric, m['after'])} | {fmt_delta(metric, m['delta'])} | "
            f"[{fmt_delta(metric, lo)}, {fmt_delta(metric, hi)}] | {_p(m['p_value'])} | "
            f"{_p(m.get('p_adjusted'))} | {mde} | {verdict(m, adjustment)} |")


def divergence_lines(block: dict[str, Any] | None) -> list[str]:
    """For compare --candidate: how far the candidate's next-token distributions are from the
    base's (llama.cpp's KL-divergence statistics).
    """
    if not block:
        return []
    return ["## Divergence (candidate vs base)", "",
            f"Over {block['tokens']} predicted tokens of {block['texts']} texts "
            f"({block['source']}); KL(base ‖ candidate) per token.", "",
            "| Mean KLD | 99th pct KLD | Max KLD | Same top token | PPL base | PPL candidate "
            "| PPL ratio |", "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {block['kld_mean']:.4g} | {block['kld_p99']:.4g} | {block['kld_max']:.4g} | "
            f"{100 * block['same_top_token']:.2f}% | {block['ppl_before']:.4g} | "
            f"{block['ppl_after']:.4g} | {block['ppl_ratio']:.4f} |", ""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def render_comparison(report: ComparisonReport) -> str:
    """report.md of a comparison, from its report.json alone."""
    before, after = report["before"], report["after"]
    tasks = report["tasks"]
    lines = [f"# harness comparison: {before['label']} → {after['label']}", ""]
    if backend_note(report.get("settings", {})):
        lines += [backend_note(report["settings"]).removeprefix(" · ").capitalize() + ".", ""]
    for name, task in sorted(tasks.items()):
        for side in ("before", "after"):
            label = before["label"] if side == "before" else after["label"]
            lines += warning_lines(f"{name} ({label})", (task.get("degenerate") or {}).get(side))
    if len(lines) > 2:
        lines.append("")
    general = report["general"]
    adjustment = report["settings"].get("adjustment", "none")
    adj_name = ADJUSTMENT_NAMES.get(adjustment, adjustment)
    if general:
        lines += ["**Forgetting:** " + "; ".join(
            summary_line(t, headline(tasks[t]["metrics"]),
                         {**tasks[t]["metrics"][headline(tasks[t]["metrics"])],
                          "n": tasks[t]["n"]}, adjustment, lead_with_mde=True)
            for t in general) + ".", ""]
    targets = [t for t in report["targets"] if tasks[t]["metrics"]]
    if targets:
        lines += ["**Targets:** " + "; ".join(
            summary_line(t, headline(tasks[t]["metrics"]),
                         tasks[t]["metrics"][headline(tasks[t]["metrics"])], adjustment)
            for t in targets) + ".", ""]
    other = "Candidate" if report.get("mode") == "models" else "+Adapter"
    lines += [f"Base = `{before['label']}`, {other} = `{after['label']}`. Scores marked (%) are "
              "×100 and their Δ in percentage points. Each metric's 95% CI and p-value come "
              "from one method, named under its table: a change is significant when p < 0.05, "
              f"and then its CI excludes 0. {adj_name} p adjusts for the number of cells "
              f"(across the targets, and across the forgetting tasks); MDE is the smallest "
              f"true change these examples would find significant with 80% power.", ""]
    header = (f"| Metric | Base | {other} | Δ | 95% CI | p | {adj_name} p | MDE | |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    lines += divergence_lines(report.get("divergence"))
    if general:
        lines += ["## Forgetting (general tasks)", "",
                  "| Task " + header.replace("\n", "\n|---"), ]
        for t in general:
            for metric, m in sorted(tasks[t]["metrics"].items(),
                                    key=lambda kv: metric_order(kv[0])):
                lines.append(_row(metric, m, adjustment, t))
        lines.append("")
    for t in sorted(tasks, key=lambda t: (tasks[t]["role"] != "target", t)):
        entry = tasks[t]
        ds = entry["dataset"]
        lines += [f"## {t} ({entry['role']})", "",
                  f"n = {entry['n']} examples, `{ds['source']}` (sha256 `{ds['sha256'][:12]}`)"
                  + (f"; references average {entry['reference_words']:.1f} words."
                     if entry.get("reference_words") is not None else "."),
                  "", header]
        for metric, m in sorted(entry["metrics"].items(), key=lambda kv: metric_order(kv[0])):
            lines.append(_row(metric, m, adjustment))
        lines += methods_line(entry["metrics"])
        if entry.get("seeds"):
            lines += ["", f"Sampled with {entry['seeds']['k']} seeds per model; each example's "
                          f"value is its mean over the seeds, and the intervals are taken over "
                          f"the {entry['n']} examples (clustered by example)."]
        if entry.get("metrics_not_compared"):
            lines += ["", "Not in both runs, not compared: "
                      + ", ".join(entry["metrics_not_compared"]) + "."]
        if entry.get("examples"):
            lines += ["", "<details><summary>Example outputs</summary>", "",
                      f"| id | Reference | Base | {other} |", "|---|---|---|---|"]
            lines += [f"| {e['id']} | {_cell(e['reference'])} | {_cell(e['before'])} | "
                      f"{_cell(e['after'])} |" for e in entry["examples"]]
            lines += ["", "</details>"]
        lines.append("")
    lines += ["## Set-up", "", f"| | Base | {other} |", "|---|---|---|"]
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
