"""Before/after comparison: paired deltas with intervals and tests chosen by the kind of value
(harness.stats), minimum detectable effects, Holm (or BH) adjustment across the target cells
and across the forgetting cells, and the forgetting set (general tasks). Works from per-example
sample records, so it runs on two finished run folders as well as on a fresh in-process
evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from harness import __version__, degenerate, seeds
from harness.adjust import adjust
from harness.errors import ConfigError, DataError
from harness.kinds import rebuild_scores
from harness.metrics import INFO, Scores, is_proportion
from harness.report import SCHEMA_VERSION
from harness.report.build import iter_runs, versions
from harness.report.write import load_report, strict_loads
from harness.shapes import (
    ComparedMetric,
    ComparedTask,
    ComparisonReport,
    Record,
    RunReport,
    TaskResult,
)
from harness.specs import RunSpec, TaskSpec
from harness.stats import ALPHA, POWER, PairedDelta, paired_delta, paired_delta_corpus

N_EXAMPLES = 3
DATA_ONLY = frozenset({"ref_words"})  # metrics of the references alone: the same both sides


@dataclass
class RunView:
    """One evaluated model: its report entry and its per-example records."""

    label: str
    model: dict[str, Any]
    tasks: dict[str, TaskResult]
    samples: dict[str, list[Record]]
    versions: dict[str, Any]
    device: dict[str, Any]


def read_samples(path: Path, task: str) -> list[Record]:
    """samples/TASK.jsonl, checked line by line: objects with an id and per-example metrics."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; is it a samples file?") from None
    records: list[Record] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = strict_loads(line)
        except (ValueError, RecursionError) as err:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({err}); the file is "
                            f"cut or damaged: re-run that evaluation") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {lineno} must be a JSON object")
        if "id" not in rec or not isinstance(rec.get("metrics"), dict) or not rec["metrics"]:
            raise DataError(f"{path}: line {lineno} has no id or no per-example metrics; "
                            f"compare needs samples written by harness run or score")
        records.append(cast(Record, rec))  # checked above: an id and its metrics
    if not records:
        raise DataError(f"{path}: no samples for task '{task}'")
    return records


def load_run_dir(folder: Path) -> RunView:
    """A single-model run folder (report.json + samples/TASK.jsonl)."""
    report = load_report(folder)
    runs = list(iter_runs(report))
    if len(runs) != 1:
        raise ConfigError(f"{folder}: the report holds {len(runs)} models "
                          f"({', '.join(r['label'] for r in runs)}); compare takes one-model runs")
    run = runs[0]
    samples = {}
    for task in run["tasks"]:
        path = (folder if folder.is_dir() else folder.parent) / "samples" / f"{task}.jsonl"
        if not path.exists():
            raise DataError(f"{path} is missing: compare needs the run's per-example samples")
        samples[task] = read_samples(path, task)
    return RunView(run["label"], run["model"], run["tasks"], samples, report["versions"],
                   report["device"])


def _check_same_examples(before: RunView, after: RunView) -> None:
    b_tasks, a_tasks = set(before.tasks), set(after.tasks)
    if b_tasks != a_tasks:
        parts = []
        if b_tasks - a_tasks:
            parts.append(f"only before: {', '.join(sorted(b_tasks - a_tasks))}")
        if a_tasks - b_tasks:
            parts.append(f"only after: {', '.join(sorted(a_tasks - b_tasks))}")
        raise DataError(f"the runs evaluated different tasks ({'; '.join(parts)}); "
                        f"run both on the same --tasks")
    for task in sorted(b_tasks):
        b_ids = [r["id"] for r in before.samples[task]]
        a_ids = [r["id"] for r in after.samples[task]]
        b_hash = [r.get("example_hash") for r in before.samples[task]]
        a_hash = [r.get("example_hash") for r in after.samples[task]]
        b_seeds = [r.get("seed") for r in before.samples[task]]
        a_seeds = [r.get("seed") for r in after.samples[task]]
        if b_seeds != a_seeds and b_ids == a_ids:
            raise DataError(f"task '{task}': the runs sampled with different seeds (before "
                            f"{sorted(set(map(str, b_seeds)))}, after "
                            f"{sorted(set(map(str, a_seeds)))}); run both with the same --seeds")
        if b_ids != a_ids or b_hash != a_hash:
            only_b = len(set(b_ids) - set(a_ids))
            only_a = len(set(a_ids) - set(b_ids))
            changed = sum(1 for i, h in zip(b_ids, b_hash, strict=False)
                          if i in set(a_ids) and h not in set(a_hash))
            raise DataError(
                f"task '{task}': the runs used different example sets (before n={len(b_ids)}, "
                f"after n={len(a_ids)}; {only_b} ids only before, {only_a} only after, "
                f"{changed} with other content); run both on the same --data and --limit")


def _delta(metric: str, before_scores: Any, after_scores: Any, resamples: int,
           seed: int) -> PairedDelta:
    if metric in before_scores.per_example:
        b, a = before_scores.per_example[metric], after_scores.per_example[metric]
        return paired_delta(b, a, resamples, seed,
                            proportion=is_proportion(metric, list(b) + list(a)))
    cb, ca = before_scores.corpus[metric], after_scores.corpus[metric]
    return paired_delta_corpus(cb.stats, ca.stats, cb.compute, resamples, seed)


def _adjust_family(cells: list[tuple[str, ComparedMetric]], method: str) -> None:
    """Adjusted p-values across one family of (metric, cell) pairs, in place. Descriptive
    metrics without a better direction (lengths) and cells without a p-value are left out
    (null).
    """
    family = [(c, p) for name, c in cells if (p := c.get("p_value")) is not None
              and not (name in INFO and INFO[name].higher_is_better is None)]
    for (cell, _), adjusted in zip(family, adjust([p for _, p in family], method), strict=True):
        cell["p_adjusted"] = adjusted
        cell["significant_adjusted"] = adjusted < ALPHA


def _examples(before: list[Record], after: list[Record]) -> list[dict[str, Any]]:
    def clip(text: str, n: int = 400) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    return [{"id": b["id"], "reference": clip(b["reference"]), "before": clip(b["prediction"]),
             "after": clip(a["prediction"])} for b, a in zip(before[:N_EXAMPLES],
                                                             after[:N_EXAMPLES], strict=True)]


def _scores(kind: str, records: list[Record], task: str, side: str) -> Scores:
    try:
        return seeds.cluster(records, rebuild_scores(kind, records))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise DataError(f"task '{task}': the {side} run's samples lack the per-example values "
                        f"its metrics need ({type(err).__name__}: {err}); re-run that "
                        f"evaluation") from None


def compare_runs(before: RunView, after: RunView, general: Sequence[str], resamples: int = 10_000,
                 seed: int = 0, adjustment: str = "holm") -> ComparisonReport:
    """The comparison report (kind: comparison)."""
    _check_same_examples(before, after)
    unknown = [g for g in general if g not in before.tasks]
    if unknown:
        raise ConfigError(f"--general names {', '.join(unknown)}, not among the compared tasks "
                          f"({', '.join(sorted(before.tasks))})")
    tasks: dict[str, ComparedTask] = {}
    forgetting: list[dict[str, Any]] = []
    for name in sorted(before.tasks):
        kind = before.tasks[name]["kind"]
        sb = _scores(kind, before.samples[name], name, "before")
        sa = _scores(kind, after.samples[name], name, "after")
        names_b = set(sb.per_example) | set(sb.corpus)
        names_a = set(sa.per_example) | set(sa.corpus)
        metrics: dict[str, ComparedMetric] = {}
        if not names_b & names_a:
            raise DataError(f"task '{name}': the two runs share no per-example metric "
                            f"(before: {', '.join(sorted(names_b)) or 'none'}; after: "
                            f"{', '.join(sorted(names_a)) or 'none'})")
        for metric in sorted((names_b & names_a) - DATA_ONLY):
            d = _delta(metric, sb, sa, resamples, seed)
            info = INFO.get(metric)
            metrics[metric] = {"before": d.before, "after": d.after, "delta": d.delta,
                               "ci95": list(d.ci95), "ci_method": d.method,
                               "p_value": d.p_value, "significant": d.significant,
                               "p_adjusted": None, "significant_adjusted": None,
                               "mde": d.mde,
                               "higher_is_better": info.higher_is_better if info else None}
        role: Literal["target", "general"] = "general" if name in general else "target"
        entry: ComparedTask = {
            "role": role, "kind": kind,
            "n": len(before.samples[name]) // seeds.seed_count(before.samples[name]),
            "dataset": before.tasks[name]["dataset"], "metrics": metrics,
            "metrics_not_compared": sorted(names_b ^ names_a),
            "config": before.tasks[name]["config"],
        }
        k = seeds.seed_count(before.samples[name])
        if k > 1:
            entry["seeds"] = {"k": k, "ci": "clustered by example (values averaged over seeds)"}
        if "ref_words" in sb.per_example:  # a property of the data: shown, not compared
            entry["reference_words"] = round(float(sum(sb.per_example["ref_words"]))
                                             / max(len(sb.per_example["ref_words"]), 1), 12)
        if kind == "generation":
            entry["examples"] = _examples(before.samples[name], after.samples[name])
            entry["degenerate"] = {"before": degenerate.summarize(before.samples[name]),
                                   "after": degenerate.summarize(after.samples[name])}
        tasks[name] = entry
        if role == "general":
            forgetting += [{"task": name, "metric": m, **v} for m, v in metrics.items()]
    for role in ("target", "general"):
        _adjust_family([(name, m) for t in tasks.values() if t["role"] == role
                        for name, m in t["metrics"].items()], adjustment)
    return {
        "schema_version": SCHEMA_VERSION, "kind": "comparison", "harness_version": __version__,
        "versions": after.versions or versions(), "device": after.device,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"bootstrap_resamples": resamples, "seed": seed, "alpha": ALPHA,
                     "power": POWER, "adjustment": adjustment,
                     "ci": "by the kind of value; each metric names its ci_method",
                     "significant": "p_value < alpha; the 95% CI then excludes 0",
                     "significant_adjusted": f"p_adjusted < alpha ({adjustment} across the "
                                             f"target cells and across the forgetting cells)",
                     "mde": f"smallest true |delta| found significant with {POWER:.0%} power"},
        "before": {"label": before.label, "model": before.model},
        "after": {"label": after.label, "model": after.model},
        "general": sorted(general), "targets": sorted(set(tasks) - set(general)),
        "forgetting": forgetting, "tasks": tasks,
    }


def views_from_run(report: RunReport, samples: Mapping[str, dict[str, list[Record]]],
                   ) -> list[RunView]:
    """RunViews of an in-process multi-model run (base first, then adapters)."""
    return [RunView(r["label"], r["model"], r["tasks"], samples[r["label"]], report["versions"],
                    report["device"]) for r in iter_runs(report)]


def write_comparison(out: Path, report: ComparisonReport, before: RunView, after: RunView,
                     run_report: Mapping[str, object] | None) -> str:
    """report.json, report.md, deltas.png, both runs' samples (and the run report if fresh)."""
    from harness.report.comparison_md import render_comparison
    from harness.report.plots import render_deltas_png
    from harness.report.write import dumps, write_report

    extra = {"deltas.png": render_deltas_png(report)}
    if run_report is not None:
        extra["runs.json"] = dumps(run_report).encode()
    return write_report(out, report, render_comparison,
                        {"before": before.samples, "after": after.samples}, extra)


def compare_models(spec: RunSpec, registry: Mapping[str, TaskSpec], general: Sequence[str],
                   resamples: int, out: Path, adjustment: str = "holm") -> str:
    """Load the base once, evaluate it with the adapter off ("before") and on ("after") on
    every task, compare, write. `spec` is a RunSpec with one adapter and include_base.
    """
    from harness.distributed import is_main
    from harness.runner import evaluate

    run_report, samples = evaluate(spec, registry)
    if not is_main():  # under a launcher, rank 0 compares and writes
        return ""
    before, after = views_from_run(run_report, samples)
    report = compare_runs(before, after, general, resamples, spec.seed, adjustment)
    report["settings"]["backend"] = spec.backend
    return write_comparison(out, report, before, after, run_report)


@dataclass(frozen=True)
class DivergenceSpec:
    """compare --candidate: the texts the divergence is measured on (None: the tasks'
    prompts and references) and the most predicted tokens it reads.
    """

    text: Path | None = None
    max_tokens: int = 16_384


def compare_two_models(spec: RunSpec, candidate: str, registry: Mapping[str, TaskSpec],
                       general: Sequence[str], resamples: int, out: Path,
                       adjustment: str = "holm",
                       divergence: DivergenceSpec = DivergenceSpec()) -> str:
    """Two models, not base vs adapter: `spec.model.base` ("before") and `candidate`
    ("after", e.g. its merged export or a quantised GGUF), each evaluated on every task, the
    same paired report, plus how far the candidate's next-token distributions are from the
    base's (harness.divergence).
    """
    from dataclasses import replace

    from harness.distributed import is_main
    from harness.paths import safe_label
    from harness.runner import evaluate

    base_spec = replace(spec, model=replace(spec.model, adapters=(), include_base=False))
    cand_spec = replace(base_spec, model=replace(base_spec.model, base=candidate))
    divergence_block = _divergence(base_spec, cand_spec, registry, divergence)
    before_report, before_samples = evaluate(base_spec, registry)
    after_report, after_samples = evaluate(cand_spec, registry)
    if not is_main():
        return ""
    before = views_from_run(before_report, before_samples)[0]
    after = views_from_run(after_report, after_samples)[0]
    before.label = safe_label(Path(str(spec.model.base).rstrip("/")).name, "base")
    after.label = safe_label(Path(candidate.rstrip("/")).name, "candidate")
    if after.label == before.label:
        before.label, after.label = "base", "candidate"
    report = compare_runs(before, after, general, resamples, spec.seed, adjustment)
    report["mode"] = "models"
    report["settings"]["backend"] = spec.backend
    report["divergence"] = divergence_block
    return write_comparison(out, report, before, after,
                            {"before": before_report, "after": after_report})


def _divergence(base_spec: RunSpec, cand_spec: RunSpec, registry: Mapping[str, TaskSpec],
                spec: DivergenceSpec) -> dict[str, Any]:
    """Both models loaded at once; measured before the task runs, so a tokenizer mismatch
    stops the command before hours of evaluation.
    """
    from harness import divergence
    from harness.models import load_model
    from harness.prompts import with_chat_template
    from harness.runner import load_all_data, resolve_tasks

    first = load_model(base_spec.model)
    second = load_model(cand_spec.model)
    divergence.check_same_tokenizer(first.tokenizer, second.tokenizer,
                                    (base_spec.model.base, cand_spec.model.base))
    if spec.text is not None:
        texts, source = divergence.read_texts(spec.text), f"file:{spec.text}"
    else:
        data = dict(base_spec.data)
        tasks = [with_chat_template(t, base_spec.chat_template)
                 for t in resolve_tasks(base_spec.tasks, registry, data)]
        datasets = load_all_data(tasks, data, base_spec.limit, base_spec.code)
        texts = divergence.task_texts(tasks, datasets, first.tokenizer)
        source = "the tasks' prompts (and references)"
    result = divergence.measure(first.model, second.model, first.tokenizer, texts,
                                spec.max_tokens)
    return {"source": source, **result}
