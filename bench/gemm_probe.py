"""Decode-step matmuls at small batch: separate q/k/v and gate/up projections against one
concatenated matmul each, for the Llama-3-8B and Qwen3-1.7B shapes, every layer's weights
distinct (no L2 reuse), timed as a CUDA graph of all layers. python bench/gemm_probe.py (GPU)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from common import graph_ms

SHAPES = {"llama3_8b": dict(h=4096, q=4096, kv=1024, inter=14336, layers=32),
          "qwen3_1_7b": dict(h=2048, q=2048, kv=1024, inter=6144, layers=28)}


def probe(name: str, s: dict, out: dict) -> None:
    L, h, q, kv, inter = s["layers"], s["h"], s["q"], s["kv"], s["inter"]

    def w(n, k):
        return torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02

    layers = [dict(q=w(q, h), k=w(kv, h), v=w(kv, h), o=w(h, q), g=w(inter, h),
                   u=w(inter, h), d=w(h, inter)) for _ in range(L)]
    for lay in layers:
        lay["qkv"] = torch.cat([lay["q"], lay["k"], lay["v"]])
        lay["gu"] = torch.cat([lay["g"], lay["u"]])
    weight_bytes = sum(lay[k].numel() * 2 for lay in layers for k in "qkvogud")
    for m in (64, 128, 256):
        inputs = {"h": torch.randn(m, h, device="cuda", dtype=torch.bfloat16),
                  "q": torch.randn(m, q, device="cuda", dtype=torch.bfloat16),
                  "i": torch.randn(m, inter, device="cuda", dtype=torch.bfloat16)}
        takes = {"q": "h", "k": "h", "v": "h", "o": "q", "g": "h", "u": "h", "d": "i",
                 "qkv": "h", "gu": "h"}

        def run(keys, layers=layers, inputs=inputs, takes=takes):
            for lay in layers:
                for k in keys:
                    F.linear(inputs[takes[k]], lay[k])

        ms_sep = graph_ms(lambda: run(["q", "k", "v", "o", "g", "u", "d"]), 20)
        ms_fused = graph_ms(lambda: run(["qkv", "o", "gu", "d"]), 20)
        parts = {k: round(graph_ms(lambda k=k: run([k]), 20) * 1000 / L, 1) for k in takes}
        floor = weight_bytes / 4.3e12 * 1e3
        out[f"{name} M={m}"] = {
            "separate_ms": round(ms_sep, 3), "fused_ms": round(ms_fused, 3),
            "floor_ms": round(floor, 3),
            "separate_TBps": round(weight_bytes / ms_sep / 1e9, 2),
            "fused_TBps": round(weight_bytes / ms_fused / 1e9, 2),
            "per_layer_us": parts}
        print(name, m, out[f"{name} M={m}"], flush=True)


def main():
    out = {}
    for name, s in SHAPES.items():
        probe(name, s, out)
        torch.cuda.empty_cache()
    Path(os.environ.get("OUT", "/tmp"), "gemm_probe.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__" and "--model" not in __import__("sys").argv:
    main()


def in_model(layers: int = 8) -> dict:
    """The same matmuls inside the engine's decode steps: a Llama-3-8B-shaped model cut to
    `layers` layers, 128 CNN/DailyMail prompts. The decode step's time from CUDA-graph runs
    (17 new tokens minus 1, over 16), and the eager steps' matmuls by input shape under
    torch.profiler."""
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    from common import LLAMA3_8B, model, tokenizer
    from generation_bench import prompts_for

    from harness.engine import Engine
    from harness.progress import Progress
    from harness.specs import GenerationSpec

    tok = tokenizer(Path("/tmp/bench-tok"))
    m = model({**LLAMA3_8B, "num_hidden_layers": layers}, kind="llama")
    prompts = prompts_for(tok, 128)
    eng = Engine(m, tok, "cuda", 4096)
    res = {"layers": layers}

    def gen(new):
        torch.cuda.synchronize()
        t = time.perf_counter()
        eng.generate(prompts, GenerationSpec(max_new_tokens=new), Progress(False), "g")
        torch.cuda.synchronize()
        return time.perf_counter() - t

    gen(17)
    gen(17)
    walls = {n: round(min(gen(n) for _ in range(2)), 4) for n in (1, 17, 65, 129)}
    res["graph_walls_s"] = walls
    res["graph_step_ms"] = round((walls[129] - walls[65]) / 64 * 1e3, 3)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                            torch.profiler.ProfilerActivity.CPU]) as prof:
        gen(65)
    ev = prof.key_averages()
    res["graph_run_65"] = {
        "gpu_kernel_ms": round(sum(e.self_device_time_total for e in ev
                                   if e.device_type.name == "CUDA") / 1e3, 2),
        "top_cpu": [(e.key[:60], round(e.self_cpu_time_total / 1e3, 2), e.count)
                    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:12]],
        "top_gpu": [(e.key[:60], round(e.self_device_time_total / 1e3, 2), e.count)
                    for e in sorted(ev, key=lambda e: -e.self_device_time_total)[:12]]}
    os.environ["HARNESS_CUDA_GRAPHS"] = "0"
    gen(17)
    res["eager_step_ms"] = round((gen(17) - gen(1)) / 16 * 1e3, 3)
    kernel_us = {}
    for new in (1, 17):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            gen(new)
        kernel_us[new] = {e.key[:160]: (e.self_device_time_total, e.count)
                          for e in prof.key_averages() if e.device_type.name == "CUDA"}
    del os.environ["HARNESS_CUDA_GRAPHS"]
    # One eager decode step's kernels: the 17-token run minus the 1-token run, over 16.
    step = {k: (round((v[0] - kernel_us[1].get(k, (0, 0))[0]) / 16, 1),
                (v[1] - kernel_us[1].get(k, (0, 0))[1]) / 16) for k, v in kernel_us[17].items()}
    res["decode_step_kernels_us"] = sorted(([k, *v] for k, v in step.items() if v[0] > 0.5),
                                           key=lambda r: -r[1])
    res["decode_step_kernels_total_us"] = round(sum(v[0] for v in step.values()), 1)
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul") and \
                e.device_time_total > 0:
            rows.append({"op": e.key, "shapes": str(e.input_shapes)[:120], "calls": e.count,
                         "us_per_call": round(e.device_time_total / e.count, 1)})
    res["matmuls_by_shape"] = sorted(rows, key=lambda r: -r["calls"] * r["us_per_call"])[:24]
    kernels = sorted((e for e in prof.key_averages() if e.device_type.name == "CUDA"),
                     key=lambda e: -e.self_device_time_total)[:20]
    res["kernels"] = [(e.key[:80], round(e.self_device_time_total / 1e3, 2), e.count)
                      for e in kernels]
    return res


if __name__ == "__main__" and "--model" in __import__("sys").argv:
    import sys

    r = in_model(int(sys.argv[sys.argv.index("--model") + 1]))
    print(json.dumps(r, indent=1))
    Path(os.environ.get("OUT", "/tmp"), "gemm_in_model.json").write_text(json.dumps(r, indent=1))
