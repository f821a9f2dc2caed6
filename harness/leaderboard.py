"""`harness leaderboard`: one ranked table over many run and comparison reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError
from harness.report.build import iter_runs
from harness.report.markdown import fmt_value, metric_label, metric_order
from harness.report.write import load_report


def _find_reports(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            found.append(p)
        elif (p / "report.json").exists():
            found.append(p / "report.json")
        elif p.is_dir():
            found += sorted(p.rglob("report.json"))
        else:
            raise DataError(f"{p}: no such report or folder")
    if not found:
        raise DataError("no report.json found under " + ", ".join(map(str, paths)))
    return found


def _model_name(model: dict[str, Any]) -> tuple[str, str]:
    base = (model.get("base") or {}).get("id", model.get("predictions", "?"))
    adapter = (model.get("adapter") or {}).get("path") or "–"
    return str(base), str(adapter)


def collect_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per model of every report found under the paths."""
    rows = []
    for path in _find_reports(paths):
        report = load_report(path)
        if report["kind"] == "comparison":
            base, adapter = _model_name(report["after"]["model"])
            scores: dict[str, dict[str, dict[str, Any]]] = {
                t: {m: {"value": v["after"], "ci95": None} for m, v in e["metrics"].items()}
                      for t, e in report["tasks"].items() if e["role"] == "target"}
            forgetting = {f"{f['task']}.{f['metric']}": f["delta"] for f in report["forgetting"]}
            rows.append({"source": str(path), "label": report["after"]["label"], "base": base,
                         "adapter": adapter, "scores": scores, "forgetting": forgetting})
        else:
            for run in iter_runs(report):
                base, adapter = _model_name(run["model"])
                scores = {t: {m: {"value": v["value"], "ci95": v["ci95"]}
                              for m, v in e["metrics"].items()} for t, e in run["tasks"].items()}
                rows.append({"source": str(path), "label": run["label"], "base": base,
                             "adapter": adapter, "scores": scores, "forgetting": {}})
    return rows


def build_leaderboard(paths: Sequence[Path], sort: str | None) -> dict[str, Any]:
    """The leaderboard: rows ranked by the sort metric, with its columns."""
    rows = collect_rows(paths)
    columns: dict[str, str] = {}
    for r in rows:
        for task, metrics in r["scores"].items():
            columns.setdefault(task, min(metrics, key=metric_order))
    if sort:
        task, _, metric = sort.partition(".")
        if not metric or not any(task in r["scores"] and metric in r["scores"][task]
                                 for r in rows):
            known = sorted({f"{t}.{m}" for r in rows for t, ms in r["scores"].items()
                            for m in ms})
            raise ConfigError(f"--sort {sort}: no report has it (known: {', '.join(known)})")
        columns[task] = metric
    else:
        first: tuple[str | None, str | None] = next(iter(sorted(columns.items())),
                                                     (None, None))
        task, metric = first  # type: ignore[assignment]  # None where no report has scores
    forgetting_keys = sorted({k for r in rows for k in r["forgetting"]})

    def key(r: dict[str, Any]) -> float:
        v = r["scores"].get(task or "", {}).get(metric or "")
        return -v["value"] if v and v["value"] is not None else float("inf")

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    return {"kind": "leaderboard", "sort": f"{task}.{metric}" if task else None,
            "columns": [{"task": t, "metric": m} for t, m in sorted(columns.items())],
            "forgetting_columns": forgetting_keys, "rows": ranked}


def render_leaderboard_md(board: dict[str, Any]) -> str:
    """The leaderboard as Markdown."""
    cols = board["columns"]
    head = ["#", "model", "adapter"] + [f"{c['task']} {metric_label(c['metric'])}" for c in cols]
    head += [f"Δ {k}" for k in board["forgetting_columns"]]
    lines = ["# harness leaderboard", "", f"Ranked by {board['sort']}. Values (%) are ×100; "
             "run reports show their 95% CI; comparison rows show the adapter's score and "
             "the forgetting Δ on general tasks.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board["rows"]:
        cells = [str(r["rank"]), f"{r['base']} ({r['label']})", r["adapter"]]
        for c in cols:
            v = r["scores"].get(c["task"], {}).get(c["metric"])
            if v is None:
                cells.append("–")
            elif v["ci95"]:
                cells.append(f"{fmt_value(c['metric'], v['value'])} "
                             f"[{fmt_value(c['metric'], v['ci95'][0])}, "
                             f"{fmt_value(c['metric'], v['ci95'][1])}]")
            else:
                cells.append(fmt_value(c["metric"], v["value"]))
        for k in board["forgetting_columns"]:
            d = r["forgetting"].get(k)
            cells.append("–" if d is None else f"{100 * d:+.2f} pp")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_leaderboard_csv(board: dict[str, Any]) -> str:
    """The leaderboard as CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    cols = board["columns"]
    writer.writerow(["rank", "label", "base", "adapter"]
                    + [f"{c['task']}.{c['metric']}" for c in cols]
                    + [f"{c['task']}.{c['metric']}.ci_low" for c in cols]
                    + [f"{c['task']}.{c['metric']}.ci_high" for c in cols]
                    + [f"delta.{k}" for k in board["forgetting_columns"]])
    for r in board["rows"]:
        vals = [r["scores"].get(c["task"], {}).get(c["metric"]) for c in cols]
        writer.writerow([r["rank"], r["label"], r["base"], r["adapter"]]
                        + ["" if v is None else v["value"] for v in vals]
                        + ["" if not v or not v["ci95"] else v["ci95"][0] for v in vals]
                        + ["" if not v or not v["ci95"] else v["ci95"][1] for v in vals]
                        + [r["forgetting"].get(k, "") for k in board["forgetting_columns"]])
    return buf.getvalue()
