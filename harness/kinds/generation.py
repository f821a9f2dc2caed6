"""Generation tasks: prompt -> generated text, scored against the reference text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from harness.backend import Backend
from harness.data import Example
from harness.errors import ConfigError
from harness.kinds.base import Kind
from harness.metrics import Scores
from harness.metrics.text import score_text
from harness.progress import Progress
from harness.prompts import PromptBuilder, prompt_hash
from harness.shapes import Record, TaskExtras
from harness.specs import BertScoreSpec, GenerationSpec, TaskSpec


def generation_settings(task: TaskSpec, max_new_tokens: int | None) -> GenerationSpec:
    """The task's decoding settings, with --max-new-tokens applied."""
    gen = task.generation
    return replace(gen, max_new_tokens=max_new_tokens) if max_new_tokens else gen


def run(task: TaskSpec, examples: Sequence[Example], engine: Backend, progress: Progress,
        max_new_tokens: int | None, label: str) -> list[Record]:
    """Generate for each example and build its record (and the reference's NLL for perplexity)."""
    gen = generation_settings(task, max_new_tokens)
    budget = engine.max_length - gen.max_new_tokens
    if budget < 1:
        raise ConfigError(f"task '{task.name}': max_new_tokens {gen.max_new_tokens} leaves no "
                          f"room for the prompt in the model's {engine.max_length} tokens")
    builder = PromptBuilder(task, engine.tokenizer)
    prompts = [builder.build(ex.fields, budget, ex.id) for ex in examples]
    outputs = engine.generate_detailed([p.ids for p in prompts], gen, progress, label)
    records: list[Record] = [
        {"id": ex.id, "example_hash": ex.hash, "prompt_hash": prompt_hash(p.text),
         "prompt_tokens": len(p.ids), "truncated": p.truncated, "prediction": out.text,
         "new_tokens": out.new_tokens, "hit_max_new_tokens": out.hit_max_new_tokens,
         "chat_template": builder.use_chat,
         "reference": ex.fields[task.target]}
        for ex, p, out in zip(examples, prompts, outputs, strict=True)
    ]
    if "perplexity" in task.metrics:
        # Perplexity of the reference given the same prompt (seed 003 reports it with BLEU/ROUGE).
        from harness.kinds.perplexity import target_nll

        for rec, nll in zip(records, target_nll(task, examples, engine, progress, label),
                            strict=True):
            rec["target_nll"] = nll
    return records


def record_ok(record: Record) -> bool:
    """A stored record has the shape `score` reads."""
    from harness.kinds.perplexity import nll_ok

    return isinstance(record.get("prediction"), str) and \
        isinstance(record.get("reference"), str) and \
        ("target_nll" not in record or nll_ok(record["target_nll"]))


def score(task: TaskSpec, records: Sequence[Record], bert: BertScoreSpec) -> Scores:
    """Every text metric of the task on the predictions, plus perplexity from target_nll."""
    text = [m for m in task.metrics if m != "perplexity"]
    scores = score_text(text, [r["prediction"] for r in records],
                        [r["reference"] for r in records], bert)
    if "perplexity" in task.metrics:
        from harness.kinds.perplexity import perplexity_metric

        scores.corpus["perplexity"] = perplexity_metric([r["target_nll"] for r in records])
    return scores


def rebuild(records: Sequence[Record]) -> Scores:
    """Scores from records as stored: per-example values as they are, corpus metrics from
    their families' stored statistics (METRICS[...].stats_key), perplexity from target_nll.
    """
    import numpy as np

    from harness.kinds.perplexity import perplexity_metric
    from harness.metrics.families import METRICS

    rebuilders = {f.stats_key: f.rebuild for f in METRICS.values() if f.stats_key and f.rebuild}
    first = records[0].get("metrics", {})
    names = [k for k in first if k not in rebuilders]
    per_example = {k: [float(r["metrics"][k]) for r in records] for k in names}
    corpus = {}
    for key, fn in rebuilders.items():
        if key in first:
            corpus.update(fn(np.array([r["metrics"][key] for r in records],
                                      dtype=np.float64)).corpus)
    if "target_nll" in records[0]:
        corpus["perplexity"] = perplexity_metric([r["target_nll"] for r in records])
    return Scores(per_example=per_example, corpus=corpus)


def _run(task: TaskSpec, examples: Sequence[Example], backend: Backend, progress: Progress,
         label: str, max_new_tokens: int | None) -> list[Record]:
    return run(task, examples, backend, progress, max_new_tokens, label)


def _settings(task: TaskSpec, max_new_tokens: int | None) -> dict[str, Any]:
    return asdict(generation_settings(task, max_new_tokens))


def _extras(records: Sequence[Record]) -> TaskExtras:
    from harness import degenerate

    out: TaskExtras = {"degenerate": degenerate.summarize(records)}
    if records:
        out["prompt_format"] = "chat template" if records[0].get("chat_template") else "plain"
    return out


KIND = Kind(run=_run, record_ok=record_ok, score=score, rebuild=rebuild, chunk=128,
            settings=_settings, extras=_extras)
