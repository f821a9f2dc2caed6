"""evaluate(RunSpec) -> report dict + samples: load data, load model once, run every variant."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from harness import RESULTS_VERSION, distributed, env, lmeval, seeds
from harness.backend import BACKENDS, Backend
from harness.data import TaskData, canonical_json, load_task_data
from harness.errors import ConfigError
from harness.kinds import KINDS, rebuild_scores
from harness.metrics import Scores, is_proportion
from harness.metrics.text import metric_config
from harness.models import LoadedModel, Variant, load_model
from harness.policy import DEFAULT_POLICY, CodePolicy
from harness.progress import Progress
from harness.prompts import shown_input, with_chat_template
from harness.registry import pick
from harness.shapes import (
    EngineRan,
    LmEvalIndex,
    MetricSummary,
    Record,
    RunEntry,
    RunReport,
    TaskExtras,
    TaskResult,
)
from harness.specs import BertScoreSpec, RunSpec, TaskSpec
from harness.stats import summarize, summarize_corpus
from harness.store import Store


def task_config(task: TaskSpec, max_new_tokens: int | None) -> dict[str, Any]:
    """The task as it ran (YAML content, overrides applied; no file path)."""
    cfg = asdict(task)
    cfg.pop("source")
    cfg["fields"] = dict(task.fields)
    settings = KINDS[task.kind].settings
    if settings is not None:  # the kind's own part (generation: its decoding settings)
        cfg["generation"] = settings(task, max_new_tokens)
    else:
        cfg.pop("generation")
    return cfg


def task_fingerprint(config: Mapping[str, Any]) -> str:
    """Everything that changes a task's outputs (not its metrics): the store key's task part."""
    relevant = {k: v for k, v in config.items() if k not in ("metrics", "description")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def score_records(task: TaskSpec, records: Sequence[Record],
                  bert: BertScoreSpec) -> Scores:
    """The task's metrics on its records, through its kind."""
    return KINDS[task.kind].score(task, records, bert)


def stats_key(metric: str) -> str | None:
    """Where a corpus metric's family keeps its per-example statistics in the records."""
    from harness.metrics.families import METRICS

    return next((f.stats_key for f in METRICS.values() if metric in f.metrics), None)


def summarize_task(task: TaskSpec, data_source: str, data_sha: str,
                   records: list[Record], bert: BertScoreSpec, resamples: int,
                   seed: int, max_new_tokens: int | None) -> TaskResult:
    """Metrics (value, CI, stderr, n) for one task; per-example values go into the records."""
    raw = score_records(task, records, bert)
    for name, values in raw.per_example.items():
        for rec, v in zip(records, values, strict=True):
            rec.setdefault("metrics", {})[name] = v
    scores = seeds.cluster(records, raw)  # per example: averaged over seeds, if several
    metrics: dict[str, MetricSummary] = {}
    for name, values in scores.per_example.items():
        metrics[name] = summarize(values, resamples, seed,
                                  proportion=is_proportion(name, values)).to_json()
    stats_seen: set[int] = set()
    for name, cm in raw.corpus.items():  # per record; the clustered sums feed the CI below
        if id(cm.stats) not in stats_seen:
            stats_seen.add(id(cm.stats))
            key = stats_key(name)  # perplexity's statistics are in the records already
            if key is not None:
                for rec, row in zip(records, cm.stats.tolist(), strict=True):
                    rec.setdefault("metrics", {})[key] = row
    for name, cm in scores.corpus.items():
        metrics[name] = summarize_corpus(cm.stats, cm.compute, resamples, seed).to_json()
    config = task_config(task, max_new_tokens)
    extras = KINDS[task.kind].extras
    extra: TaskExtras = extras(records) if extras is not None else {}
    k = seeds.seed_count(records)
    if k > 1:
        extra["seeds"] = {"k": k, "seeds": sorted({r["seed"] for r in records}),
                          "variance": seeds.variance(records, raw),
                          "ci": "clustered by example: per-example values averaged over "
                                "seeds, corpus statistics summed over seeds"}
    n = len(records) // k
    return {
        **extra,
        "kind": task.kind,
        "dataset": {"source": data_source, "sha256": data_sha, "n": n},
        "n": n,
        "truncated": sum(1 for r in records if r.get("truncated")) // k,
        "config": config,
        "task_fingerprint": task_fingerprint(config),
        "metrics": metrics,
        "metric_config": metric_config(task.metrics, bert),
    }


def resolve_tasks(names: Sequence[str], registry: Mapping[str, TaskSpec],
                  data: Mapping[str, str]) -> list[TaskSpec]:
    """The named tasks from the registry (lm_eval: names left out), --data checked against them."""
    if not names:
        raise ConfigError("--tasks is empty; name at least one task (see `harness tasks`)")
    tasks = [pick(registry, n, "task") for n in names if not n.startswith(lmeval.PREFIX)]
    for name in data:
        if name not in names:
            raise ConfigError(f"--data names task '{name}', which is not in --tasks "
                              f"({', '.join(names)})")
    return tasks


def load_all_data(tasks: Sequence[TaskSpec], data: Mapping[str, str],
                  limit: int | None, code: CodePolicy = DEFAULT_POLICY) -> dict[str, TaskData]:
    """Each task's examples, read and checked."""
    return {t.name: load_task_data(t, data.get(t.name), limit, policy=code) for t in tasks}


def numerics(spec: RunSpec, device: str) -> dict[str, Any]:
    """What besides model and task changes the numbers an example gets: the harness's results
    version, the device type, and the engine options that change numbers (fused
    kernels, layouts, decode path: EngineOptions.numerics).
    """
    out = {"results_version": RESULTS_VERSION, "device_type": device.split(":")[0],
           **spec.engine.numerics()}
    if spec.backend != "hf":  # another backend's model calls: its own numbers
        out["backend"] = spec.backend
    return out


def store_key(task: TaskSpec, spec: RunSpec, max_length: int, device: str = "cpu") -> str:
    """The task part of the store key: what changes outputs, plus the context length (it
    decides truncation) and the numerics (see `numerics`).
    """
    config = task_config(task, spec.max_new_tokens)
    extra = json.dumps(numerics(spec, device), sort_keys=True)
    return hashlib.sha256(f"{task_fingerprint(config)}:{max_length}:{extra}".encode()
                          ).hexdigest()[:16]


def chunk_size(task: TaskSpec) -> int:
    """Examples per result-store chunk: HARNESS_STORE_CHUNK, else the kind's."""
    configured = env.positive("HARNESS_STORE_CHUNK")
    if configured:
        return configured
    return KINDS[task.kind].chunk


def run_task(task: TaskSpec, data: TaskData, engine: Backend, variant: Variant, spec: RunSpec,
             store: Store | None, progress: Progress, label: str,
             ) -> tuple[list[Record], int]:
    """Records for every example: from the store where it has them, computed (and stored a
    chunk at a time, so a crash loses at most the chunks in flight) where not. Returns
    (records, number computed).
    """
    key = store_key(task, spec, engine.max_length, engine.device)
    model_fp = variant.fingerprint["id"]
    hashes = [e.hash for e in data.examples]
    kind = KINDS[task.kind]
    record_ok = kind.record_ok
    have = store.get(model_fp, key, hashes, record_ok, task.name) \
        if store is not None and not spec.refresh else {}
    distributed.barrier()  # every rank has read the store before any rank writes to it
    missing = [e for e in data.examples if e.hash not in have]
    seen: set[str] = set()
    unique = []  # the first example of each content hash
    for e in missing:
        if e.hash not in seen:
            seen.add(e.hash)
            unique.append(e)
    missing = unique
    # Longest first: a batch that does not fit in memory shows up (and backs off) at once.
    missing.sort(key=lambda e: -len(canonical_json(e.fields)))
    # Under a launcher each rank takes every world_size-th missing example.
    mine = missing[distributed.rank()::distributed.world_size()]
    size = chunk_size(task)
    computed: list[Record] = []

    def keep(records: list[Record]) -> None:
        if store is not None:
            store.put(model_fp, key, task.name, records)
        computed.extend(records)

    # A kind with a `start` (multiple choice) is pipelined: chunk k + 1's device work is
    # queued before chunk k's records are built and stored, so the store writes overlap the
    # device. If queueing chunk k + 1 fails, chunk k is still finished and stored before the
    # error propagates.
    finish: Any = None
    for i in range(0, len(mine), size):
        part = mine[i: i + size]
        if kind.start is None:
            keep(kind.run(task, part, engine, progress, label, spec.max_new_tokens))
            continue
        try:
            queued = kind.start(task, part, engine, progress, label, spec.max_new_tokens)
        finally:
            if finish is not None:
                keep(finish())
                finish = None
        finish = queued
    if finish is not None:
        keep(finish())
    for gathered in distributed.gather(computed):
        have.update({r["example_hash"]: r for r in gathered})
    out = []
    for e in data.examples:
        rec = json.loads(json.dumps(have[e.hash]))  # a fresh copy per example
        rec["id"] = e.id
        out.append(rec)
    return out, len(missing)


def run_variant(loaded: LoadedModel, variant: Variant, tasks: Sequence[TaskSpec],
                datasets: Mapping[str, TaskData], spec: RunSpec, progress: Progress,
                store: Store | None = None,
                ) -> tuple[dict[str, TaskResult], dict[str, list[Record]], EngineRan]:
    """Evaluate one variant (base or base + adapter) on every task: (task results, samples,
    what the engine did: its decode path, fused kernels and out-of-memory back-offs).
    """
    engine = BACKENDS[spec.backend](loaded, spec)
    results: dict[str, TaskResult] = {}
    samples: dict[str, list[Record]] = {}
    with loaded.use(variant):
        for task in tasks:
            data = datasets[task.name]
            label = f"{variant.label}/{task.name}"
            start = time.perf_counter()
            records, computed = [], 0
            runs = seeds.seeded(task, spec.seeds)
            for run_as in runs:
                part, done = run_task(run_as, data, engine, variant, spec, store, progress,
                                      label if len(runs) == 1 else
                                      f"{label} (seed {run_as.generation.seed})")
                if len(runs) > 1:
                    for rec in part:
                        rec["seed"] = run_as.generation.seed
                records += part
                computed += done
            model_seconds = time.perf_counter() - start
            result = summarize_task(task, data.source, data.sha256, records, spec.bertscore,
                                    spec.bootstrap, spec.seed, spec.max_new_tokens)
            total = time.perf_counter() - start
            result["timings"] = {"model_seconds": round(model_seconds, 3),
                                 "total_seconds": round(total, 3),
                                 "examples_computed": computed,
                                 "examples_from_store": len(records) - computed,
                                 "examples_per_second": round(computed / model_seconds, 3)
                                 if model_seconds > 0 and computed else None}
            results[task.name] = result
            shown = {e.id: shown_input(task, e.fields) for e in data.examples}
            for rec in records:  # fresh copies (run_task): the store keeps no inputs
                rec["input"] = shown[rec["id"]]
            samples[task.name] = records
        if spec.lm_eval_tasks:
            results_lm, samples_lm = run_lm_eval_tasks(loaded, variant, spec, store)
            results.update(results_lm)
            samples.update(samples_lm)
    return results, samples, engine.ran()


def run_lm_eval_tasks(loaded: LoadedModel, variant: Variant, spec: RunSpec,
                      store: Store | None,
                      ) -> tuple[dict[str, TaskResult], dict[str, list[Record]]]:
    """lm-eval tasks on the active variant; per-example values into records and the store.
    The store key holds the lm-eval task, its version and --limit; a fully stored task is
    served from the store, anything less runs lm-eval again.
    """
    manager = lmeval.task_manager(spec.lm_eval_include)
    model_fp = variant.fingerprint["id"]
    results: dict[str, TaskResult] = {}
    samples: dict[str, list[Record]] = {}
    todo = []
    # Besides the per-example rows, the store keeps an "__index__" row per task: its example
    # hashes and ids in lm-eval's order, and lm-eval's own figures.
    for name in spec.lm_eval_tasks:
        key = hashlib.sha256(f"lm_eval:{name}:{spec.limit}".encode()).hexdigest()[:16]
        index = store.get_index(model_fp, key) if store and not spec.refresh else None
        if index is not None and store is not None:
            have = store.get(model_fp, key, index["hashes"])
            if len(have) == len(set(index["hashes"])):
                info = index["info"]
                records: list[Record] = [{**have[h], "id": i} for h, i in zip(
                    index["hashes"], index["ids"], strict=True)]
                results[_lm_name(name)] = _lm_eval_result(name, records, info, spec, 0)
                samples[_lm_name(name)] = records
                continue
        todo.append((name, key))
    if todo:
        start = time.perf_counter()
        # lm-eval runs on rank 0 (it takes an already loaded model as one process); the other
        # ranks receive its results.
        ran = lmeval.run_lm_eval([n for n, _ in todo], loaded.model, loaded.tokenizer, manager,
                                 spec.limit, spec.batch_size, loaded.max_length) \
            if distributed.is_main() else None
        ran = distributed.broadcast(ran)
        assert ran is not None  # rank 0's results, on every rank
        seconds = time.perf_counter() - start
        for name, key in todo:
            records, info = ran[name]
            if store is not None and distributed.is_main():
                store.put(model_fp, key, _lm_name(name), records)
                store.put(model_fp, key, _lm_name(name), [LmEvalIndex(
                    example_hash="__index__", hashes=[r["example_hash"] for r in records],
                    ids=[r["id"] for r in records], info=info)])
            result = _lm_eval_result(name, records, info, spec, len(records))
            result["timings"]["model_seconds"] = round(seconds, 3)
            results[_lm_name(name)] = result
            samples[_lm_name(name)] = records
    return results, samples


def _lm_name(name: str) -> str:
    """How an lm-eval task is named in reports: with its prefix, as the user gave it."""
    return lmeval.PREFIX + name


def _lm_eval_result(name: str, records: list[Record], info: dict[str, Any],
                    spec: RunSpec, computed: int) -> TaskResult:
    scores = rebuild_scores("lm_eval", records)
    metrics = {m: summarize(v, spec.bootstrap, spec.seed, proportion=is_proportion(m, v)).to_json()
               for m, v in scores.per_example.items()}
    digest = hashlib.sha256("".join(r["example_hash"] for r in records).encode()).hexdigest()
    return {"kind": "lm_eval", "dataset": {"source": f"lm_eval:{name}", "sha256": digest,
                                           "n": len(records)},
            "n": len(records), "truncated": 0,
            "config": {"lm_eval_task": name, "version": info.get("version"),
                       "limit": spec.limit},
            "task_fingerprint": digest[:16], "metrics": metrics,
            "metric_config": {"lm_eval": {"results": info.get("lm_eval_results"),
                                          "metrics_not_folded": info.get("metrics_not_folded")}},
            "timings": {"examples_computed": computed,
                        "examples_from_store": len(records) - computed}}


def evaluate(spec: RunSpec, registry: Mapping[str, TaskSpec],
             progress: Progress | None = None,
             ) -> tuple[RunReport, dict[str, dict[str, list[Record]]]]:
    """Run every variant on every task. Returns (report, samples by variant label)."""
    from harness.report.build import run_report

    data = dict(spec.data)
    tasks = [with_chat_template(t, spec.chat_template)
             for t in resolve_tasks(spec.tasks, registry, data)]
    if spec.lm_eval_tasks:
        spec.code.check_lm_eval_include(list(spec.lm_eval_include))
        lmeval.check_names(spec.lm_eval_tasks, lmeval.task_manager(spec.lm_eval_include))
    datasets = load_all_data(tasks, data, spec.limit, spec.code)
    if any("bertscore" in t.metrics for t in tasks):
        from harness.metrics.bertscore import get_scorer

        get_scorer(spec.bertscore)  # fail before hours of generation, not after
    started = time.time()
    distributed.init()
    if progress is None and not distributed.is_main():
        progress = Progress(False)
    store = None
    if spec.cache_dir is not None:  # rank 0 creates the file; the others open it after
        store = Store(spec.cache_dir) if distributed.is_main() else None
        distributed.barrier()
        store = store or Store(spec.cache_dir)
    loaded = load_model(spec.model)
    runs: list[RunEntry] = []
    samples: dict[str, dict[str, list[Record]]] = {}
    try:
        with progress or Progress() as bar:
            for variant in loaded.variants:
                results, variant_samples, did = run_variant(loaded, variant, tasks, datasets,
                                                            spec, bar, store)
                runs.append(RunEntry(label=variant.label, model=variant.fingerprint,
                                     tasks=results, engine=did))
                samples[variant.label] = variant_samples
    finally:
        if store is not None:
            store.close()
    report = run_report(runs, loaded, spec, started)
    report["settings"]["numerics"] = numerics(spec, loaded.device)
    report["settings"]["engine"] = spec.engine.to_json()
    report["settings"]["backend"] = spec.backend
    return report, samples
