"""Bridge: run lm-evaluation-harness tasks (`--tasks lm_eval:NAME`) on the model the harness has
already loaded (base, or base + adapter, 4-bit or not; "before" with the adapter switched off),
and fold their per-example values into our records, reports, store and comparisons.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, first_line
from harness.shapes import Record

PREFIX = "lm_eval:"


def task_manager(include: Sequence[Path]) -> Any:
    """lm-eval's TaskManager over its tasks and the --lm-eval-include folders."""
    from lm_eval.tasks import TaskManager

    for d in include:
        if not d.is_dir():
            raise ConfigError(f"--lm-eval-include {d} is not a folder")
    return TaskManager(include_path=[str(d) for d in include] or None)


def check_names(names: Sequence[str], manager: Any) -> None:
    """Raise ConfigError for a task lm-eval does not know, with close names."""
    import difflib

    known = set(manager.all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
            raise ConfigError(f"lm-eval knows no task '{name}'.{hint} Local task YAMLs: "
                              f"--lm-eval-include DIR")


def _plain(value: Any) -> Any:
    """JSON-safe copy: functions and other objects become "<type>" (stable across runs)."""
    import json

    return json.loads(json.dumps(value, default=lambda o: f"<{type(o).__name__}>"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def run_lm_eval(names: Sequence[str], model: Any, tokenizer: Any, manager: Any,
                limit: int | None, batch_size: int | None, max_length: int,
                ) -> dict[str, tuple[list[Record], dict[str, Any]]]:
    """Run lm-eval tasks: name -> (records, info).

    Records carry per-example metric values; a metric joins them only where lm-eval aggregates
    it as the mean of those values (checked against lm-eval's own figure), so every folded
    number is lm-eval's number.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size or "auto",
              max_length=max_length)
    try:
        out = simple_evaluate(model=lm, tasks=list(names), task_manager=manager,
                              log_samples=True, limit=limit, bootstrap_iters=0)
    except Exception as err:
        raise DataError(f"lm-eval could not run {', '.join(names)}: {first_line(err)}") \
            from None
    result: dict[str, tuple[list[Record], dict[str, Any]]] = {}
    for name in names:
        samples = sorted(out["samples"].get(name, []), key=lambda s: s["doc_id"])
        if not samples:
            raise DataError(f"lm-eval task '{name}' produced no samples (is it a group? name "
                            f"its member tasks)")
        agg = out["results"][name]
        records: list[Record] = []
        folded, skipped = [], []
        metric_names = sorted({m for s in samples for m in s.get("metrics", [])})
        for metric in metric_names:
            values = [_number(s.get(metric)) for s in samples]
            theirs = agg.get(f"{metric},{samples[0].get('filter', 'none')}")
            numbers = [v for v in values if v is not None]
            if len(numbers) < len(values) or _number(theirs) is None or \
                    abs(sum(numbers) / len(numbers) - float(theirs)) > 1e-9:
                skipped.append(metric)
            else:
                folded.append(metric)
        for s in samples:
            records.append({
                "id": str(s["doc_id"]), "example_hash": s.get("doc_hash") or hashlib.sha256(
                    repr(s.get("doc")).encode()).hexdigest(),
                "prompt_hash": (s.get("prompt_hash") or "")[:16], "truncated": False,
                "prediction": {"filtered_resps": s.get("filtered_resps")},
                "reference": s.get("target"),
                "metrics": {m: _number(s[m]) for m in folded},
            })
        info = {"lm_eval_task": name, "version": out.get("versions", {}).get(name),
                "n_samples": out.get("n-samples", {}).get(name),
                "lm_eval_results": {k: v for k, v in agg.items() if k not in ("name", "alias")},
                "metrics_not_folded": skipped,
                "config": _plain(out["configs"].get(name, {}))}
        result[name] = (records, info)
    return result


def write_local_hellaswag_task(folder: Path, data: Path, name: str = "hs_local") -> Path:
    """An lm-eval task YAML running lm-eval's own HellaSwag (its process_docs, acc, acc_norm)
    over a local JSONL in the hub's columns. Offline parity checks and benchmarks use it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text("from lm_eval.tasks.hellaswag.utils import process_docs\n")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {data}\n"
        "output_type: multiple_choice\n"
        "validation_split: validation\n"
        "process_docs: !function utils.process_docs\n"
        'doc_to_text: "{{query}}"\n'
        'doc_to_target: "{{label}}"\n'
        'doc_to_choice: "choices"\n'
        "metric_list:\n"
        "  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n"
        "metadata: {version: 1.0}\n")
    return folder
