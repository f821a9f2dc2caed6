"""`harness show DIR`: a run or comparison folder in the terminal (rich), read from report.json
and samples/ alone. The summary first; `--flips [N]` the examples that changed most per task
(multiple choice: right → wrong, then wrong → right, then the largest move in confidence;
generation and perplexity: the largest per-example Δ of the headline metric); `--example ID`
one example in full, before and after; `--task T` one task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.compare import read_samples
from harness.errors import ConfigError, DataError
from harness.kinds import multiple_choice
from harness.report.build import iter_runs
from harness.report.comparison_md import fmt_delta, forgetting_line, unit, verdict
from harness.report.markdown import fmt_value, metric_label, metric_order
from harness.report.write import load_report
from harness.shapes import Record, Report

NOT_PER_EXAMPLE = ("gen_words", "ref_words")  # lengths, not scores to rank by


@dataclass(frozen=True)
class ShowOptions:
    """What `harness show` prints: a folder, one task or all, flips, one example."""

    folder: Path
    task: str | None = None
    flips: int | None = None      # None: no flips section
    example: str | None = None


@dataclass(frozen=True)
class Side:
    """One model's samples: task -> example id -> record (the first, for sampled tasks)."""

    label: str
    samples: dict[str, dict[str, Record]]


def _by_id(records: list[Record]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for rec in records:
        out.setdefault(str(rec["id"]), rec)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problem(kind: str, rec: Record) -> str | None:
    """What is wrong with a record for show, or None (samples files are user input)."""
    if not all(v is None or _number(v) for v in rec["metrics"].values()):
        return "a per-example metric that is not a number"
    shown = rec.get("input")
    if shown is not None and not (isinstance(shown, dict) and
                                  isinstance(shown.get("prompt", ""), str)):
        return "an input that is not {\"prompt\": text, …}"
    if kind == "multiple_choice":
        if not multiple_choice.record_ok(rec):
            return "no choice, log-likelihoods or gold index"
        lls = rec["prediction"]["loglikelihoods"]
        if not lls or not all(_number(v) for v in lls) or \
                not 0 <= rec["reference"] < len(lls) or \
                not 0 <= rec["prediction"]["choice"] < len(lls):
            return "log-likelihoods that do not match its choices or gold index"
        choices = (shown or {}).get("choices")
        if choices is not None and not (isinstance(choices, list) and len(choices) == len(lls)
                                        and all(isinstance(c, str) for c in choices)):
            return "input choices that do not match its log-likelihoods"
    return None


def _read_side(folder: Path, label: str, sub: str | None, tasks: Mapping[str, str]) -> Side:
    """tasks: name -> kind."""
    base = folder / "samples" / sub if sub else folder / "samples"
    samples = {}
    for task, kind in tasks.items():
        path = base / f"{task}.jsonl"
        if not path.exists():
            raise DataError(f"{path} is missing: show reads the per-example samples beside "
                            f"report.json")
        records = read_samples(path, task)
        for n, rec in enumerate(records, 1):
            problem = _problem(kind, rec)
            if problem is not None:
                raise DataError(f"{path}: record {n} (id {str(rec['id'])[:40]!r}) has "
                                f"{problem}; re-run that evaluation")
        samples[task] = _by_id(records)
    return Side(label, samples)


def load(folder: Path) -> tuple[Report, list[Side]]:
    """The report and its sides: [before, after] for a comparison, one per model for a run."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: give a run or comparison folder (with report.json)")
    report = load_report(folder)
    if report["kind"] == "comparison":
        tasks = {name: block["kind"] for name, block in report["tasks"].items()}
        return report, [_read_side(folder, report["before"]["label"], "before", tasks),
                        _read_side(folder, report["after"]["label"], "after", tasks)]
    runs = list(iter_runs(report))
    nested = len(runs) > 1
    return report, [_read_side(folder, run["label"], run["label"] if nested else None,
                               {name: block.get("kind", "")
                                for name, block in run["tasks"].items()}) for run in runs]


def mc_margin(rec: Record) -> float:
    """Gold log-likelihood minus the best other choice's: > 0 where the model is right."""
    lls = rec["prediction"]["loglikelihoods"]
    gold = int(rec["reference"])
    others = [v for i, v in enumerate(lls) if i != gold]
    return float(lls[gold] - max(others)) if others else math.inf


def rank_metric(report_task: Mapping[str, Any], records: dict[str, Record]) -> str | None:
    """The per-example metric to rank generation examples by: the task's headline one."""
    names = [m for m in report_task["metrics"] if m not in NOT_PER_EXAMPLE]
    names = [m for m in names if any(m in r.get("metrics", {}) for r in records.values())]
    return min(names, key=metric_order) if names else None


def flips(kind: str, before: dict[str, Record], after: dict[str, Record],
          n: int, metric: str | None) -> list[dict[str, Any]]:
    """The n examples that changed most, most important first."""
    rows = []
    for ex_id in before.keys() & after.keys():
        b, a = before[ex_id], after[ex_id]
        if kind == "multiple_choice":
            right_b = b["prediction"]["choice"] == b["reference"]
            right_a = a["prediction"]["choice"] == a["reference"]
            move = mc_margin(a) - mc_margin(b)
            change = ("right → wrong" if right_b and not right_a else
                      "wrong → right" if right_a and not right_b else "unchanged")
            order = {"right → wrong": 0, "wrong → right": 1, "unchanged": 2}[change]
            rows.append({"id": ex_id, "change": change, "delta": move,
                         "key": (order, -abs(move))})
        elif metric is not None and metric in b["metrics"] and metric in a["metrics"]:
            delta = float(a["metrics"][metric]) - float(b["metrics"][metric])
            rows.append({"id": ex_id, "change": "worse" if delta < 0 else "better"
                         if delta > 0 else "same", "delta": delta, "key": (0, -abs(delta))})
    rows.sort(key=lambda r: (r["key"], r["id"]))
    return rows[:n]


def _short(text: Any, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def show(opts: ShowOptions) -> None:
    """Print a report folder's summary, flips or one example."""
    from rich.console import Console

    report, sides = load(opts.folder)
    tasks = list(report["tasks"]) if report["kind"] == "comparison" else \
        list(dict.fromkeys(t for s in sides for t in s.samples))
    if opts.task is not None:
        if opts.task not in tasks:
            raise ConfigError(f"--task {opts.task}: not in this report (tasks: "
                              f"{', '.join(tasks)})")
        tasks = [opts.task]
    if opts.flips is not None and report["kind"] != "comparison":
        raise ConfigError("--flips needs two models: give a comparison folder "
                          "(written by harness compare)")
    # no markup: prompts, references and outputs are data ("[/INST]", "[bold]") and print as is
    console = Console(width=120, highlight=False, markup=False)
    if opts.example is not None:
        _example(console, report, sides, tasks, opts.example)
        return
    _summary(console, report, sides, tasks)
    if opts.flips is not None:
        _flips(console, report, sides, tasks, opts.flips)


def _summary(console: Any, report: Report, sides: list[Side], tasks: list[str]) -> None:
    from rich.table import Table

    if report["kind"] == "comparison":
        before, after = sides
        console.print(f"{before.label} → {after.label}", style="bold")
        adjustment = report.get("settings", {}).get("adjustment", "holm")
        forgetting = report.get("forgetting") or []
        if forgetting:
            console.print("Forgetting", style="bold")
            for m in forgetting:
                console.print(f"  {forgetting_line(m, adjustment)}")
        for task in tasks:
            block = report["tasks"][task]
            table = Table(title=f"{task} ({block['role']}, n = {block['n']})",
                          title_justify="left")
            for col in ("metric", before.label, after.label, "Δ", "95% CI", "p", ""):
                table.add_column(col, justify="left" if col in ("metric", "") else "right")
            for name in sorted(block["metrics"], key=metric_order):
                m = {**block["metrics"][name], "metric": name}
                lo, hi = m["ci95"]
                table.add_row(metric_label(name), fmt_value(name, m["before"]),
                              fmt_value(name, m["after"]), fmt_delta(name, m["delta"]),
                              f"[{fmt_delta(name, lo)}, {fmt_delta(name, hi)}]",
                              "–" if m["p_value"] is None else f"{m['p_value']:.3g}",
                              verdict(m, adjustment))
            console.print(table)
        return
    for run in iter_runs(report):
        for task in tasks:
            if task not in run["tasks"]:
                continue
            result = run["tasks"][task]
            table = Table(title=f"{run['label']} · {task} (n = {result.get('n')})",
                          title_justify="left")
            for col in ("metric", "value", "95% CI"):
                table.add_column(col, justify="left" if col == "metric" else "right")
            for name in sorted(result["metrics"], key=metric_order):
                summary = result["metrics"][name]
                ci = summary.get("ci95")
                table.add_row(metric_label(name), fmt_value(name, summary.get("value")),
                              "–" if not ci else
                              f"[{fmt_value(name, ci[0])}, {fmt_value(name, ci[1])}]")
            console.print(table)


def _flips(console: Any, report: Report, sides: list[Side], tasks: list[str],
           n: int) -> None:
    from rich.table import Table
    from rich.text import Text

    before, after = sides
    for task in tasks:
        block = report["tasks"][task]
        b, a = before.samples[task], after.samples[task]
        metric = None if block["kind"] == "multiple_choice" else rank_metric(block, b)
        rows = flips(block["kind"], b, a, n, metric)
        what = ("confidence = gold log-likelihood minus the best other ending's"
                if block["kind"] == "multiple_choice" else
                f"per-example Δ {metric_label(metric)}" if metric else "no per-example metric")
        table = Table(title=f"{task}: the {len(rows)} examples that changed most ({what})",
                      title_justify="left")
        for col in ("id", "change", "Δ", "input", before.label, after.label):
            table.add_column(col, overflow="fold")
        for row in rows:
            rb, ra = b[row["id"]], a[row["id"]]
            shown = (rb.get("input") or {}).get("prompt", "")
            if block["kind"] == "multiple_choice":
                delta = f"{row['delta']:+.3g}"
                pb, pa = (f"chose {r['prediction']['choice']} (gold {r['reference']})"
                          for r in (rb, ra))
            else:
                delta = f"{fmt_delta(metric, row['delta'])}{unit(metric)}" if metric else ""
                pb, pa = (_short(r.get("prediction"), 50) for r in (rb, ra))
            table.add_row(Text(row["id"]), row["change"], delta, Text(_short(shown, 40)),
                          Text(pb), Text(pa))
        console.print(table)


def _example(console: Any, report: Report, sides: list[Side], tasks: list[str],
             ex_id: str) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    found = [t for t in tasks if any(ex_id in s.samples.get(t, {}) for s in sides)]
    if not found:
        raise ConfigError(f"--example {ex_id}: no example with that id"
                          f"{'' if len(tasks) > 1 else ' in ' + tasks[0]} (ids are the "
                          f"samples' \"id\" field)")
    for task in found:
        recs = [(s.label, s.samples[task].get(ex_id)) for s in sides]
        first = next(r for _, r in recs if r is not None)
        shown = first.get("input") or {}
        console.print(Panel(Text(str(shown.get("prompt", "(no input recorded: samples "
                                                 "written by an older harness)"))),
                            title=Text(f"{task} · example {ex_id}"), title_align="left"))
        prediction = first.get("prediction")
        if "choices" in shown and isinstance(prediction, dict) and \
                prediction.get("loglikelihoods"):
            table = Table(title="choices", title_justify="left")
            table.add_column("#")
            table.add_column("ending", overflow="fold")
            for label, _ in recs:
                table.add_column(f"log-lik {label}", justify="right")
            for i, ending in enumerate(shown["choices"]):
                marks = ["✓ gold" if i == first["reference"] else ""]
                cells = []
                for _label, rec in recs:
                    if rec is None:
                        cells.append("–")
                        continue
                    chosen = " ◀" if rec["prediction"]["choice"] == i else ""
                    cells.append(f"{rec['prediction']['loglikelihoods'][i]:.3f}{chosen}")
                table.add_row(f"{i} {marks[0]}".strip(), Text(ending), *cells)
            console.print(table)
        else:
            console.print(Panel(Text(str(first.get("reference"))), title="reference",
                                title_align="left"))
            for label, rec in recs:
                if rec is not None:
                    console.print(Panel(Text(str(rec.get("prediction"))), title=Text(label),
                                        title_align="left"))
        table = Table(title="per-example metrics", title_justify="left")
        table.add_column("metric")
        for label, _ in recs:
            table.add_column(label, justify="right")
        names = sorted({m for _, r in recs if r for m in r.get("metrics", {})},
                       key=metric_order)
        for name in names:
            table.add_row(metric_label(name), *("–" if r is None or name not in r["metrics"]
                                                else fmt_value(name, r["metrics"][name])
                                                for _, r in recs))
        console.print(table)

