"""report.html: one self-contained page (inline CSS, JS and SVG; no network) rendered from
report.json and the samples alone, beside report.md.

The summary is static HTML: the forgetting block first, then per task the metric table (Δ,
95% CI, p, verdict) and an inline SVG of every Δ in percentage points with its CI. The examples
are embedded once as compact JSON (each example's input once, each side's prediction beside
it) and rendered by the page's script 100 rows at a time: filters (multiple choice: right →
wrong, wrong → right, unchanged, confidence moved most), sorting by any per-example metric's Δ,
search, and a row opened in full (endings with every log-likelihood; reference, before and
after with a word-level diff). Every piece of data reaches the page as text (escaped here,
textContent there), never as markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, cast

from harness import degenerate
from harness.metrics import INFO
from harness.report.comparison_md import fmt_delta, forgetting_line, verdict
from harness.report.markdown import fmt_value, metric_label, metric_order
from harness.shapes import ComparisonReport, Record, Report

DIGITS = 4  # log-likelihoods and per-example metrics in the page (the samples keep all)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def _side(kind: str, rec: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"m": {k: _round(v) for k, v in rec.get("metrics", {}).items()}}
    pred = rec.get("prediction")
    if kind == "multiple_choice" and isinstance(pred, dict):
        out["c"] = pred.get("choice")
        out["ll"] = [_round(v) for v in pred.get("loglikelihoods", [])]
    elif isinstance(pred, str):
        out["p"] = pred
        flags = [name for name, hit in (
            ("empty", not pred.strip()), ("cut at max tokens", rec.get("hit_max_new_tokens")),
            ("repeats a sentence", degenerate.repeats_a_sentence(pred))) if hit]
        if flags:
            out["f"] = flags
    return out


def page_data(report: Report,
              samples: Mapping[str, Mapping[str, list[Record]]]) -> dict[str, Any]:
    """The JSON the page embeds: labels, and per task its examples with every side."""
    labels = list(samples)
    kinds = _task_kinds(report)
    tasks = []
    for task in dict.fromkeys(t for side in samples.values() for t in side):
        kind = kinds.get(task, "")
        by_side = [{str(r["id"]): r for r in samples[label].get(task, [])} for label in labels]
        ids = list(dict.fromkeys(i for side in by_side for i in side))
        rows: list[dict[str, Any]] = []
        for ex_id in ids:
            first = next(side[ex_id] for side in by_side if ex_id in side)
            ref = first.get("reference")
            rows.append({"id": ex_id, "in": first.get("input") or {},
                         "ref": ref if isinstance(ref, (str, int)) else None,
                         "s": [_side(kind, side[ex_id]) if ex_id in side else None
                               for side in by_side]})
        metrics = sorted({m for row in rows for s in row["s"] if s for m in s["m"]},
                         key=metric_order)
        for row in rows:  # metrics as arrays in `metrics` order: the page is smaller
            for side in row["s"]:
                if side:
                    side["m"] = [side["m"].get(m) for m in metrics]
        tasks.append({"name": task, "kind": kind, "metrics": metrics,
                      "labels": {m: metric_label(m) for m in metrics},
                      "fraction": [m for m in metrics if _fraction(m)], "rows": rows})
    if report.get("kind") == "comparison" and len(labels) == 2:  # .get: a kind-less file
        comparison = cast(ComparisonReport, report)                # renders as a run
        labels = [comparison["before"]["label"], comparison["after"]["label"]]
    return {"kind": report.get("kind"), "labels": labels, "tasks": tasks}


def _fraction(metric: str) -> bool:
    info = INFO.get(metric)
    return info is not None and info.scale == "fraction"


def _task_kinds(report: Mapping[str, Any]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for run in report.get("runs") or [report]:
        for name, block in (run.get("tasks") or {}).items():
            if isinstance(block, dict) and block.get("kind"):
                kinds[name] = block["kind"]
    return kinds


def _svg(report: Mapping[str, Any]) -> str:
    """Every fraction-scale Δ with its 95% CI, one row each, on one axis in pp."""
    rows = []
    for task, entry in sorted(report["tasks"].items(), key=lambda kv: (kv[1]["role"], kv[0])):
        for metric, m in sorted(entry["metrics"].items(), key=lambda kv: metric_order(kv[0])):
            if _fraction(metric):
                rows.append((f"{task} {metric_label(metric)}", 100 * m["delta"],
                             100 * m["ci95"][0], 100 * m["ci95"][1], m["significant"]))
    if not rows:
        return ""
    span = max(max(abs(lo), abs(hi)) for _, _, lo, hi, _ in rows) or 1.0
    left, width, step = 300, 420, 24
    height = step * len(rows) + 40

    def x(v: float) -> float:
        return left + width / 2 + v / span * (width / 2 - 10)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="deltas" width="{left + width + 20}"'
             f' height="{height}" role="img" aria-label="Δ with 95% CI, percentage points">',
             f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="5" y2="{height - 25}" '
             f'stroke="#000" stroke-width="0.8"/>']
    for i, (name, d, lo, hi, sig) in enumerate(rows):
        y = 20 + i * step
        color = "#1a7f37" if sig and d > 0 else "#cf222e" if sig else "#57606a"
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{_e(name)}</text>'
                     f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y}" y2="{y}" '
                     f'stroke="{color}" stroke-width="2"/>'
                     f'<circle cx="{x(d):.1f}" cy="{y}" r="4" fill="{color}">'
                     f'<title>{_e(f"{d:+.2f} pp [{lo:+.2f}, {hi:+.2f}]")}</title></circle>')
    parts.append(f'<text x="{x(-span):.1f}" y="{height - 8}">{-span:+.2f} pp</text>'
                 f'<text x="{x(span):.1f}" y="{height - 8}" text-anchor="end">'
                 f'{span:+.2f} pp</text></svg>')
    return "".join(parts)


def _cell(task: str, metric: str, field: str, value: Any, text: str) -> str:
    raw = "" if value is None else repr(float(value))
    return (f'<td data-key="{_e(f"{task}.{metric}.{field}")}" data-value="{_e(raw)}">'
            f'{_e(text)}</td>')


def _comparison_summary(report: Mapping[str, Any]) -> str:
    before, after = report["before"]["label"], report["after"]["label"]
    adjustment = report.get("settings", {}).get("adjustment", "holm")
    out = [f"<h1>{_e(before)} → {_e(after)}</h1>"]
    forgetting = report.get("forgetting") or []
    if forgetting:
        out.append('<section id="forgetting"><h2>Forgetting (general tasks)</h2><ul>')
        for m in forgetting:
            out.append(f"<li>{_e(forgetting_line(m, adjustment))}</li>")
        out.append("</ul></section>")
    divergence = report.get("divergence")
    if isinstance(divergence, dict):
        out.append("<section><h2>Divergence (candidate vs base)</h2><p>"
                   f"mean KLD {divergence['kld_mean']:.4g}, 99th pct "
                   f"{divergence['kld_p99']:.4g}, same top token "
                   f"{100 * divergence['same_top_token']:.2f}%, PPL ratio "
                   f"{divergence['ppl_ratio']:.4f} over {divergence['tokens']} tokens</p>"
                   "</section>")
    svg = _svg(report)
    if svg:
        out.append(f"<section><h2>Δ with 95% CI</h2>{svg}</section>")
    for task, block in sorted(report["tasks"].items(), key=lambda kv: (kv[1]["role"] != "general",
                                                                       kv[0])):
        out.append(f'<section class="task-summary" data-task="{_e(task)}"><h2>{_e(task)} '
                   f'<small>({_e(block["role"])}, n = {_e(block["n"])})</small></h2>'
                   f"<table><thead><tr><th>Metric</th><th>{_e(before)}</th><th>{_e(after)}</th>"
                   "<th>Δ</th><th>95% CI</th><th>p</th><th></th></tr></thead><tbody>")
        for metric in sorted(block["metrics"], key=metric_order):
            m = {**block["metrics"][metric], "metric": metric}
            lo, hi = m["ci95"]
            out.append(f"<tr><td>{_e(metric_label(metric))}</td>"
                       + _cell(task, metric, "before", m["before"],
                               fmt_value(metric, m["before"]))
                       + _cell(task, metric, "after", m["after"], fmt_value(metric, m["after"]))
                       + _cell(task, metric, "delta", m["delta"], fmt_delta(metric, m["delta"]))
                       + f"<td>[{_e(fmt_delta(metric, lo))}, {_e(fmt_delta(metric, hi))}]</td>"
                       + _cell(task, metric, "p_value", m["p_value"],
                               "–" if m["p_value"] is None else f"{m['p_value']:.3g}")
                       + f"<td>{_e(verdict(m, adjustment))}</td></tr>")
        out.append("</tbody></table></section>")
    return "".join(out)


def _run_summary(report: Mapping[str, Any]) -> str:
    out = []
    runs = report.get("runs") or [report]
    out.append("<h1>" + " · ".join(_e(r.get("label", "run")) for r in runs) + "</h1>")
    for run in runs:
        for task, block in sorted((run.get("tasks") or {}).items()):
            out.append(f'<section class="task-summary" data-task="{_e(task)}"><h2>'
                       f'{_e(run.get("label", ""))} · {_e(task)} <small>(n = '
                       f'{_e(block.get("n"))})</small></h2><table><thead><tr><th>Metric</th>'
                       "<th>Value</th><th>95% CI</th></tr></thead><tbody>")
            for metric in sorted(block.get("metrics", {}), key=metric_order):
                m = block["metrics"][metric]
                ci = m.get("ci95")
                out.append(f"<tr><td>{_e(metric_label(metric))}</td>"
                           + _cell(task, metric, "value", m.get("value"),
                                   fmt_value(metric, m.get("value")))
                           + "<td>" + ("–" if not ci else
                                       f"[{_e(fmt_value(metric, ci[0]))}, "
                                       f"{_e(fmt_value(metric, ci[1]))}]") + "</td></tr>")
            out.append("</tbody></table></section>")
    return "".join(out)


def _asset(name: str) -> str:
    from importlib.resources import files

    return files("harness.report").joinpath(name).read_text(encoding="utf-8")


def render_html(report: Report, samples: Mapping[str, Mapping[str, list[Record]]]) -> str:
    """The page for a run or comparison report and its samples (label -> task -> records)."""
    summary = (_comparison_summary(report) if report.get("kind") == "comparison"
               else _run_summary(report))
    data = json.dumps(page_data(report, samples), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).replace("<", "\\u003c")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>harness report</title><style>{_asset('page.css')}</style></head><body>"
            f"<main>{summary}<section id=\"examples\"><h2>Examples</h2>"
            f"<div id=\"tasks\"></div></section></main>"
            f"<script type=\"application/json\" id=\"data\">{data}</script>"
            f"<script>{_asset('page.js')}</script></body></html>")
