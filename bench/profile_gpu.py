"""Where the time goes: HellaSwag scoring phases at several token budgets, and training steps
with and without gradient checkpointing (plus a torch.profiler table). Diagnostic only."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from common import DATA, DEVICE, LLAMA3_8B, QWEN3_1_7B, Timer, model, tokenizer, write_result  # noqa: I001


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
    spec = load_recipe(recipe, ["base=/tmp/qwen3-1.7b-random", "training.max_steps=10",
                                "training.eval_every=100000", "training.save_every=100000",
                                "out=/tmp/prof2"])
    spec = replace(spec, eval=replace(spec.eval, limit=2))
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                              torch.profiler.ProfilerActivity.CUDA])
    original = tr.collate

    calls = {"n": 0}

    def stepping(batch, pad_id):  # one collate per step at micro batch 1, no accumulation
        calls["n"] += 1
        if calls["n"] == 4:      # steps 4..7 profiled (after warm-up)
            torch.cuda.synchronize()
            prof.start()
            calls["t"] = time.perf_counter()
        if calls["n"] == 8:
            torch.cuda.synchronize()
            calls["wall"] = time.perf_counter() - calls["t"]
            prof.stop()
        return original(batch, pad_id)

    tr.collate = stepping
    try:
        tr.train(spec, {"pubmed": str(DATA / "pubmed_train.jsonl"),
                        "pubmed:eval": str(DATA / "pubmed_validation.jsonl")})
    finally:
        tr.collate = original
    return {"profiled_steps": 4, **_table(prof, calls["wall"])}


def profile_choices(tok) -> dict:
    """torch.profiler around multiple-choice scoring of 1,000 HellaSwag items."""
    import torch

    from harness.data import load_task_data
    from harness.engine import Engine
    from harness.kinds import multiple_choice
    from harness.progress import Progress
    from harness.registry import discover_tasks

    m = model(QWEN3_1_7B)
    task = discover_tasks()["hellaswag"]
    data = load_task_data(task, str(DATA / "hellaswag.jsonl"), 1000)
    eng = Engine(m, tok, DEVICE, 4096)
    multiple_choice.run(task, data.examples[:200], eng, Progress(False), "warm")
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        multiple_choice.run(task, data.examples, eng, Progress(False), "hs")
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    return _table(prof, wall)


def profile_generation(tok, arch: str = "qwen3") -> dict:
    """torch.profiler around greedy generation of 128 CNN/DailyMail prompts: the prompt pass
    alone, and 16 eager decode steps (CUDA graphs off, so kernels show one by one)."""
    import os

    import torch
    from generation_bench import prompts_for

    from harness.engine import Engine
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    m = model(QWEN3_1_7B) if arch == "qwen3" else model(LLAMA3_8B, kind="llama")
    prompts = prompts_for(tok, 128)
    eng = Engine(m, tok, DEVICE, 4096)
    os.environ["HARNESS_CUDA_GRAPHS"] = "0"
    eng.generate(prompts[:16], GenerationSpec(max_new_tokens=4), Progress(False), "warm")
    out = {}
    for label, new in (("prompt pass", 1), ("prompt pass + 16 steps", 17)):
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            t = time.perf_counter()
            eng.generate(prompts, GenerationSpec(max_new_tokens=new), Progress(False), "g")
            torch.cuda.synchronize()
            wall = time.perf_counter() - t
        out[label] = _table(prof, wall)
    del os.environ["HARNESS_CUDA_GRAPHS"]
    return out


def _table(prof, wall: float) -> dict:
    events = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in events) / 1e6
    by_gpu = sorted(events, key=lambda e: -e.self_device_time_total)[:15]
    by_cpu = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"wall_s": round(wall, 3), "gpu_busy_s": round(gpu, 3),
            "kernel_launches": sum(e.count for e in events if e.device_type.name == "CUDA"),
            "top_gpu": [(e.key[:70], round(e.self_device_time_total / 1e3, 1), e.count)
                        for e in by_gpu],
            "top_cpu": [(e.key[:70], round(e.self_cpu_time_total / 1e3, 1), e.count)
                        for e in by_cpu]}


def main() -> None:
    tok = tokenizer(Path("/tmp/bench-tok"))
    result = {}
    if "hellaswag" in sys.argv:
        result["hellaswag"] = hellaswag_phases(tok)
    if "train" in sys.argv:
        result["train"] = train_variants()
    if "steps" in sys.argv:
        result["steps"] = profile_steps()
    if "choices" in sys.argv:
        result["choices"] = profile_choices(tok)
    if "gen" in sys.argv:
        result["generation"] = profile_generation(tok)
    if "gen-llama" in sys.argv:
        result["generation_llama3"] = profile_generation(tok, "llama3")
    write_result("profile", result)


if __name__ == "__main__":
    main()
