"""Where the time goes: HellaSwag scoring phases at several token budgets, and training steps
with and without gradient checkpointing (plus a torch.profiler table). Diagnostic only."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from common import DATA, DEVICE, QWEN3_1_7B, Timer, model, tokenizer, write_result  # noqa: I001


def hellaswag_phases(tok) -> list[dict]:
    import torch

    from harness.data import load_task_data
    from harness.engine import Engine
    from harness.kinds import multiple_choice
    from harness.progress import Progress
    from harness.registry import discover_tasks

    m = model(QWEN3_1_7B)
    task = discover_tasks()["hellaswag"]
    t0 = time.perf_counter()
    data = load_task_data(task, str(DATA / "hellaswag.jsonl"), 2000)
    load_s = time.perf_counter() - t0
    out = [{"phase": "load + transform 2000 rows", "seconds": round(load_s, 3)}]
    eng = Engine(m, tok, DEVICE, 4096)
    multiple_choice.run(task, data.examples[:64], eng, Progress(False), "warm")
    orig = eng.loglikelihood_choices
    timing = {}

    def timed(groups, progress, label):
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = orig(groups, progress, label)
        torch.cuda.synchronize()
        timing["gpu"] = time.perf_counter() - t
        return r

    for budget in (8192, 32768, 131072, None):
        eng = Engine(m, tok, DEVICE, 4096, token_budget=budget)
        auto = eng.token_budget
        eng.loglikelihood_choices = timed
        orig = Engine.loglikelihood_choices.__get__(eng)
        with Timer() as t:
            multiple_choice.run(task, data.examples, eng, Progress(False), "hs")
        out.append({"phase": f"run, token budget {budget or f'auto ({auto})'}",
                    "seconds": round(t.seconds, 3), "scoring_s": round(timing["gpu"], 3),
                    "tokenize_etc_s": round(t.seconds - timing["gpu"], 3),
                    "peak_gib": round(t.peak_gib, 1)})
        print(out[-1], flush=True)
    del m
    torch.cuda.empty_cache()
    return out


def train_variants() -> list[dict]:
    from dataclasses import replace

    import torch

    from harness.train.recipe import load_recipe
    from harness.train.trainer import train

    base = Path("/tmp/qwen3-1.7b-random")
    if not (base / "config.json").exists():
        from common import save_model

        m = model(QWEN3_1_7B)
        save_model(m, tokenizer(Path("/tmp/bench-tok")), base)
        del m
        torch.cuda.empty_cache()
    recipe = Path(__file__).resolve().parents[1] / "adapters" / "qwen3-1.7b-pubmed.yaml"
    out = []
    for gc_on, compiled in ((True, False), (True, True)):
        shutil.rmtree("/tmp/prof-adapter", ignore_errors=True)
        spec = load_recipe(recipe, [f"base={base}", "training.max_steps=30", "training.log_every=1",
                                    "training.eval_every=100000", "training.save_every=100000",
                                    f"training.gradient_checkpointing={str(gc_on).lower()}",
                                    f"training.compile={str(compiled).lower()}",
                                    "out=/tmp/prof-adapter"])
        spec = replace(spec, eval=replace(spec.eval, limit=2))
        torch.cuda.reset_peak_memory_stats()
        try:
            train(spec, {"pubmed": str(DATA / "pubmed_train.jsonl"),
                         "pubmed:eval": str(DATA / "pubmed_validation.jsonl")})
        except Exception as err:  # report and go on: this is a diagnostic
            out.append({"gradient_checkpointing": gc_on, "compile": compiled,
                        "error": f"{type(err).__name__}: {str(err)[:500]}"})
            print(out[-1], flush=True)
            continue
        log = [json.loads(x) for x in Path("/tmp/prof-adapter/train_log.jsonl").read_text()
               .splitlines()]
        rows = [r for r in log if "tokens_per_s" in r][10:]
        out.append({"gradient_checkpointing": gc_on, "compile": compiled,
                    "tokens_per_s": round(sum(r["tokens_per_s"] for r in rows) / len(rows)),
                    "peak_gib": round(max(r["peak_memory_gib"] for r in rows), 2)})
        print(out[-1], flush=True)
    return out


def profile_steps() -> dict:
    """torch.profiler over 4 training steps (gradient checkpointing on, no compile): GPU busy
    time against wall time says whether the step waits on kernel launches."""
    from dataclasses import replace

    import torch

    from harness.train import trainer as tr
    from harness.train.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[1] / "adapters" / "qwen3-1.7b-pubmed.yaml"
    shutil.rmtree("/tmp/prof2", ignore_errors=True)
    spec = load_recipe(recipe, ["base=/tmp/qwen3-1.7b-random", "training.max_steps=8",
                                "training.eval_every=100000", "training.save_every=100000",
                                "out=/tmp/prof2"])
    spec = replace(spec, eval=replace(spec.eval, limit=2))
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                              torch.profiler.ProfilerActivity.CUDA],
                                  schedule=torch.profiler.schedule(wait=2, warmup=1, active=4))
    original = tr.collate

    def stepping(batch, pad_id):  # one collate per step at micro batch 1, no accumulation
        prof.step()
        return original(batch, pad_id)

    tr.collate = stepping
    prof.start()
    t = time.perf_counter()
    try:
        tr.train(spec, {"pubmed": str(DATA / "pubmed_train.jsonl"),
                        "pubmed:eval": str(DATA / "pubmed_validation.jsonl")})
    finally:
        tr.collate = original
        prof.stop()
    wall = time.perf_counter() - t
    events = prof.key_averages()
    cuda_total = sum(e.self_device_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:15]
    return {"wall_s_8_steps_incl_load": round(wall, 2),
            "profiled_steps": 4, "gpu_busy_s_profiled": round(cuda_total, 3),
            "top_kernels": [{"name": e.key[:80], "gpu_ms": round(e.self_device_time_total / 1e3, 1),
                             "calls": e.count} for e in top],
            "cpu_ops": sum(e.count for e in events)}


def main() -> None:
    tok = tokenizer(Path("/tmp/bench-tok"))
    result = {}
    if "hellaswag" in sys.argv:
        result["hellaswag"] = hellaswag_phases(tok)
    if "train" in sys.argv:
        result["train"] = train_variants()
    if "steps" in sys.argv:
        result["steps"] = profile_steps()
    write_result("profile", result)


if __name__ == "__main__":
    main()
