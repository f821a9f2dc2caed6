"""Where `harness run`'s HellaSwag time goes (RESULTS.md §2d): the same rows through the CLI's
loader (a model read back from disk), in one call, in the runner's chunks of 2,048, and
through `run_task` with a result store (the runner's own path: pipelined chunks, store
writes); the first and the last 2,000 validation rows (their items differ in length); the
bench's in-memory model; tokenization alone. Each line says the tokens scored, so speeds
compare per token. python bench/runner_check.py (GPU; BENCH_SMOKE=1 on CPU)
Run 1 (results/runner_check_run1.json) also had the collector off and the CLI's max_length:
no difference; both left out since."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from common import DATA, DEVICE, QWEN3_1_7B, model, save_model, tokenizer, write_result


def main() -> None:
    import torch

    from harness.data import load_task_data
    from harness.engine import Engine, encode_pairs
    from harness.kinds import multiple_choice
    from harness.models import Variant, load_model
    from harness.progress import Progress
    from harness.prompts import render
    from harness.registry import discover_tasks
    from harness.runner import run_task
    from harness.specs import ModelSpec, RunSpec
    from harness.store import Store

    if DEVICE == "cpu":  # smoke test: no CUDA calls
        torch.cuda.synchronize = torch.cuda.empty_cache = lambda: None
    tok = tokenizer(Path("/tmp/bench-tok"))
    folder = save_model(model(QWEN3_1_7B), tok, Path("/tmp/qwen3-random"))
    torch.cuda.empty_cache()
    task = discover_tasks()["hellaswag"]
    data = load_task_data(task, str(DATA / "hellaswag_all.parquet"),
                          300 if DEVICE == "cpu" else None)
    ex = data.examples
    out = {}

    def instrument(eng):
        """Seconds the main thread spends in submit_choices (queueing device work), waiting
        for the tokenizer thread between submits, and in collect_choices (waiting for the
        device, reading results)."""
        phases = {"submit": 0.0, "wait_tokenizer": 0.0, "collect": 0.0}
        last = [None]
        submit, collect = eng.submit_choices, eng.collect_choices

        def timed_submit(*a, **k):
            t0 = time.perf_counter()
            if last[0] is not None:
                phases["wait_tokenizer"] += t0 - last[0]
            r = submit(*a, **k)
            last[0] = time.perf_counter()
            phases["submit"] += last[0] - t0
            return r

        def timed_collect(*a, **k):
            t0 = time.perf_counter()
            last[0] = None
            r = collect(*a, **k)
            phases["collect"] += time.perf_counter() - t0
            return r

        eng.submit_choices, eng.collect_choices = timed_submit, timed_collect
        return phases

    def pairs(examples):
        return [(render(task.prompt, e.fields), task.target_delimiter + c)
                for e in examples for c in e.fields[task.choices or ""]]

    def tokens(t, examples):
        """Tokens laid out for the items: each context once plus every continuation."""
        enc = encode_pairs(t, pairs(examples))
        return sum(len(c) for _, c in enc) + sum(
            len(enc[i][0]) for i in range(0, len(enc), 4))

    def timed(label, m, t, examples, chunk=None, store=None):
        eng = Engine(m, t, DEVICE, 4096)
        phases = instrument(eng)
        n_tokens = tokens(t, examples)
        torch.cuda.synchronize()
        start = time.perf_counter()
        if store is not None:  # the runner's own path: pipelined chunks, store writes
            variant = Variant("base", None, {"id": f"check-{time.time()}"})
            run_task(task, data, eng, variant, RunSpec(model=None, tasks=("hellaswag",)),
                     store, Progress(False), "hs")
        elif chunk:
            for i in range(0, len(examples), chunk):
                multiple_choice.run(task, examples[i: i + chunk], eng, Progress(False), "hs")
        else:
            multiple_choice.run(task, examples, eng, Progress(False), "hs")
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        out[label] = {"seconds": round(seconds, 2), "items": len(examples),
                      "items_per_s": round(len(examples) / seconds, 1),
                      "tokens_per_item": round(n_tokens / len(examples), 1),
                      "tokens_per_s": round(n_tokens / seconds),
                      **{k: round(v, 2) for k, v in phases.items()},
                      "token_budget": eng.token_budget, "fused": eng.fused_kernels,
                      "flash_segments": eng._flash_choices_ok(m.model),
                      "attn": m.config._attn_implementation,
                      "dtype": str(next(m.parameters()).dtype)}
        print(label, out[label], flush=True)

    def tokenize_only(label, t):
        flat = pairs(ex)
        start = time.perf_counter()
        encode_pairs(t, flat)
        out[label] = {"seconds": round(time.perf_counter() - start, 2), "pairs": len(flat)}
        print(label, out[label], flush=True)

    loaded = load_model(ModelSpec(base=str(folder), dtype="bfloat16", device=DEVICE))
    lm, lt = loaded.model, loaded.tokenizer
    n = len(ex)
    tokenize_only("tokenize all pairs, cli tokenizer", lt)
    tokenize_only("tokenize all pairs, bench tokenizer", tok)
    timed("cli loader, first call, first 2,000 rows", lm, lt, ex[:2000])
    timed("cli loader, first 2,000 rows again", lm, lt, ex[:2000])
    timed("cli loader, last 2,000 rows", lm, lt, ex[-2000:])
    timed(f"cli loader, {n:,} rows in one call", lm, lt, ex)
    timed(f"cli loader, {n:,} rows in chunks of 2,048, one after another", lm, lt, ex, 2048)
    timed(f"cli loader, run_task with a store (the runner's path), {n:,} rows", lm, lt, ex,
          store=Store(Path(tempfile.mkdtemp())))
    del loaded, lm
    torch.cuda.empty_cache()
    m = model(QWEN3_1_7B)
    timed(f"bench model, {n:,} rows in one call", m, tok, ex)
    timed("bench model, first 2,000 rows", m, tok, ex[:2000])
    write_result("runner_check", out)


if __name__ == "__main__":
    os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
    main()
