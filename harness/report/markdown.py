"""Render report.md from report.json alone (the Markdown adds no facts of its own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.degenerate import warning_lines
from harness.metrics import INFO
from harness.report.build import iter_runs
from harness.shapes import RunReport


def fmt_value(name: str, value: float | None) -> str:
    """A metric value as the reports show it: a percentage for fractions."""
    if value is None:
        return "–"
    info = INFO.get(name)
    if info is not None and info.scale == "fraction":
        return f"{100 * value:.2f}"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def metric_order(name: str) -> tuple[int, str]:
    """Display order: as listed in harness.metrics.INFO, unknown names last."""
    order = list(INFO)
    return (order.index(name) if name in order else len(order), name)


def metric_label(name: str) -> str:
    """A metric's display name."""
    info = INFO.get(name)
    if info is None:
        return name
    return f"{info.label} (%)" if info.scale == "fraction" else info.label


def model_format(model: dict[str, Any]) -> str:
    """How the base's weights were read: "GGUF Q4_1 (llama), dequantized to float32"."""
    base = model.get("base") or {}
    if base.get("format") == "gguf":
        return (f"GGUF {base.get('gguf_file_type') or '?'} ({base.get('gguf_architecture')}), "
                f"dequantized to {model.get('dtype')}")
    return f"transformers weights, {model.get('dtype')}"


def adapter_check(adapter: dict[str, Any]) -> str:
    """The adapter-on check's figures, or "–" where none was recorded."""
    check = adapter.get("check")
    if not check:
        return "–"
    return (f"yes: on a {check['probe_tokens']}-token probe, max \\|Δ log-prob\\| "
            f"{check['max_abs_logprob_delta']:.3g}, mean KL "
            f"{check['mean_kl_adapter_vs_base']:.3g} vs the base")


def _model_lines(model: dict[str, Any]) -> list[str]:
    if "predictions" in model:
        return [f"| Predictions | `{model['predictions']}` (scored with `harness score`) |"]
    base = model.get("base", {})
    ident = base.get("revision") or (base.get("weights_sha256") or "")[:12]
    rows = [f"| Base | `{base.get('id')}` ({ident or 'revision unknown'}) |"]
    if base.get("format") == "gguf":
        rows.append(f"| Format | {model_format(model)} |")
    adapter = model.get("adapter")
    if adapter:
        rows.append(f"| Adapter | `{adapter['path']}` ({adapter.get('peft_type')}, r="
                    f"{adapter.get('r')}, weights {adapter['weights_sha256'][:12]}) |")
        if adapter.get("check"):
            rows.append(f"| Adapter on? | {adapter_check(adapter)} |")
    else:
        rows.append("| Adapter | none (base model) |")
    rows.append(f"| Quantization | {model.get('quantization')} |")
    rows.append(f"| Model fingerprint | `{model.get('id')}` |")
    return rows


def _prompt_line(task: Mapping[str, Any]) -> list[str]:
    fmt = task.get("prompt_format")
    if fmt is None:
        return []
    if fmt == "chat template":
        return ["", "Prompt: through the model's chat template (the task's instruction as the "
                    "user turn)."]
    return ["", "Prompt: the task's template as plain text (no chat template)."]


def _task_section(name: str, task: Mapping[str, Any]) -> list[str]:
    ds = task["dataset"]
    out = [f"### {name}", "",
           f"Data: `{ds['source']}` — n = {ds['n']}, sha256 `{ds['sha256'][:12]}`; "
           f"{task['truncated']} of {task['n']} prompts truncated (only the "
           f"`{task['config'].get('truncate')}` field is cut)." if task['config'].get('truncate')
           else f"Data: `{ds['source']}` — n = {ds['n']}, sha256 `{ds['sha256'][:12]}`.",
           *_prompt_line(task),
           "", "| Metric | Value | 95% CI | ± SE | n |", "|---|---:|---:|---:|---:|"]
    for metric, m in sorted(task["metrics"].items(), key=lambda kv: metric_order(kv[0])):
        lo, hi = m["ci95"]
        out.append(f"| {metric_label(metric)} | {fmt_value(metric, m['value'])} | "
                   f"[{fmt_value(metric, lo)}, {fmt_value(metric, hi)}] | "
                   f"{fmt_value(metric, m['stderr'])} | {m['n']} |")
    out += methods_line(task["metrics"])
    out += _seeds_lines(task)
    bert = task.get("metric_config", {}).get("bertscore")
    if bert:
        out += ["", f"BERTScore: `{bert['model']}`, layer {bert['num_layers']}, "
                    f"{bert['library']}."]
    return out + [""]


def methods_line(metrics: dict[str, Any]) -> list[str]:
    """Which interval (and test) each metric used, grouped by method."""
    groups: dict[str, list[str]] = {}
    for metric in sorted(metrics, key=metric_order):
        method = metrics[metric].get("ci_method")
        if method:
            groups.setdefault(method, []).append(metric_label(metric))
    if not groups:
        return []
    return ["", "Methods: " + "; ".join(f"{method} ({', '.join(names)})"
                                        for method, names in groups.items()) + "."]


def _seeds_lines(task: Mapping[str, Any]) -> list[str]:
    """Sampled with several seeds: what the interval is clustered on, and the two variance
    components of one draw per metric.
    """
    block = task.get("seeds")
    if not block:
        return []
    out = ["", f"Sampled with {block['k']} seeds ({', '.join(map(str, block['seeds']))}); each "
               f"example's value is its mean over the seeds, and the CI is taken over the "
               f"{task['n']} examples (clustered by example).", "",
           "| Metric | Variance between examples | Variance between seeds |", "|---|---:|---:|"]
    for metric, v in sorted(block["variance"].items(), key=lambda kv: metric_order(kv[0])):
        out.append(f"| {metric_label(metric)} | {v['between_examples']:.4g} | "
                   f"{v['between_seeds']:.4g} |")
    return out


def backend_note(settings: Mapping[str, Any]) -> str:
    """" · model calls by BACKEND" where a run's model calls were not the harness's engine."""
    backend = settings.get("backend", "hf")
    return "" if backend == "hf" else f" · model calls by {backend} (--backend {backend})"


def render_run(report: RunReport) -> str:
    """report.md of a run, from its report.json alone."""
    runs = list(iter_runs(report))
    dev = report["device"]
    lines = ["# harness run report", "",
             f"harness {report['harness_version']} · {dev['type']} ({dev.get('name')}) · "
             f"{dev['dtype']} · created {report['created_at']}"
             f"{backend_note(report.get('settings', {}))}", "",
             "Scores marked (%) are shown ×100; report.json holds them as fractions in [0, 1]. "
             "95% CIs by the kind of value: Wilson for accuracies, Student t for per-example "
             "scores, BCa bootstrap over documents for corpus metrics "
             f"({report['settings']['bootstrap_resamples']} resamples); report.json names "
             "each metric's method (ci_method).", ""]
    warnings = [w for r in runs for name, task in r["tasks"].items()
                for w in warning_lines(f"{name} ({r['label']})", task.get("degenerate"))]
    if warnings:
        lines[1:1] = ["", *warnings]
    if len(runs) > 1:
        names = list(runs[0]["tasks"])
        heads = [(t, min(runs[0]["tasks"][t]["metrics"], key=metric_order)) for t in names]
        lines += ["## Summary", "",
                  "| Model | " + " | ".join(f"{t} {metric_label(m)}" for t, m in heads) + " |",
                  "|---|" + "---:|" * len(heads)]
        for r in runs:
            cells = []
            for t, m in heads:
                v = r["tasks"][t]["metrics"][m]
                cells.append(f"{fmt_value(m, v['value'])} [{fmt_value(m, v['ci95'][0])}, "
                             f"{fmt_value(m, v['ci95'][1])}]")
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    for r in runs:
        lines += [f"## {r['label']}", "", "| | |", "|---|---|", *_model_lines(r["model"]), ""]
        for name, task in r["tasks"].items():
            lines += _task_section(name, task)
    libs = report["versions"]
    lines += ["## Set-up", "", "| Library | Version |", "|---|---|"]
    lines += [f"| {k} | {val} |" for k, val in libs.items() if val]
    return "\n".join(lines) + "\n"
