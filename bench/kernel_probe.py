"""Probes for the decode kernels, on the GPU (session 5):

    python bench/kernel_probe.py attn       # decode attention: block sizes, warps, stages,
                                            # cache layout, split-K (flash-decoding)
    python bench/kernel_probe.py firstcall [MODE ...]  # a process's first generate call
                                            # (Llama-3-8B shape), each mode in a fresh process:
                                            # "empty Triton cache", "warm Triton cache",
                                            # "profile", "one token first", "tiny warm-up",
                                            # "eager module loading"
    python bench/kernel_probe.py pieces     # a fresh process's first call of each kind of
                                            # GPU work (cuBLAS, flash, graphs, Triton)

Writes kernel_probe_<what>.json to $OUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def attn() -> dict:
    import torch
    import triton
    from common import graph_ms
    from split_attn_kernels import merge_kernel, split_kernel

    from harness import _triton_kernels as kt

    out: dict = {}
    rows, d, slots, layers = 128, 128, 832, 8
    torch.manual_seed(0)
    for heads, kv in ((32, 8), (16, 8)):
        g = heads // kv
        q = torch.randn(rows, heads, d, device="cuda", dtype=torch.bfloat16)
        for lengths in ("long", "spread"):
            if lengths == "long":  # the benchmark's: prompts of 400-704 tokens, mid-decode
                used = torch.randint(464, 769, (rows,), device="cuda", dtype=torch.int32)
            else:
                used = torch.randint(10, slots, (rows,), device="cuda", dtype=torch.int32)
            kv_bytes = 2 * int(used.sum()) * kv * d * 2
            for layout in ("rows,slots,kv,d", "rows,kv,slots,d"):
                caches = []
                for _ in range(layers):
                    if layout == "rows,slots,kv,d":
                        k = torch.randn(rows, slots, kv, d, device="cuda",
                                        dtype=torch.bfloat16).transpose(1, 2)
                        v = torch.randn(rows, slots, kv, d, device="cuda",
                                        dtype=torch.bfloat16).transpose(1, 2)
                    else:
                        k = torch.randn(rows, kv, slots, d, device="cuda", dtype=torch.bfloat16)
                        v = torch.randn(rows, kv, slots, d, device="cuda", dtype=torch.bfloat16)
                    caches.append((k, v))
                k0, v0 = caches[-1]  # what the last of the 32 launches reads
                mask = torch.arange(slots, device="cuda")[None] < used[:, None]
                kr = k0.double().repeat_interleave(g, 1)
                vr = v0.double().repeat_interleave(g, 1)
                sc = (q.double()[:, :, None] @ kr.transpose(-1, -2))[:, :, 0] * d ** -0.5
                ref = (torch.softmax(sc.masked_fill(~mask[:, None], float("-inf")), -1)[:, :, None]
                       @ vr)[:, :, 0]
                res = torch.empty(rows, heads, d, device="cuda", dtype=torch.bfloat16)

                def single(bn, w, st, caches=caches, res=res, q=q, used=used, g=g, kv=kv):
                    def run():
                        for i in range(32):
                            k, v = caches[i % layers]
                            kt.decode_attn_kernel[(rows, kv)](
                                q, k, v, used, res, d ** -0.5, q.stride(0), q.stride(1),
                                k.stride(0), k.stride(1), k.stride(2), v.stride(0),
                                v.stride(1), v.stride(2), res.stride(0), res.stride(1), G=g,
                                BG=16, D=d, BLOCK_N=bn, num_warps=w, num_stages=st)
                    return run

                def split(bn, w, st, sp, caches=caches, res=res, q=q, used=used, g=g, kv=kv,
                          heads=heads):
                    chunk = triton.cdiv(triton.cdiv(slots, sp), bn) * bn
                    acc = torch.empty(rows, heads, sp, d, device="cuda", dtype=torch.float32)
                    ml = torch.empty(rows, heads, sp, 2, device="cuda", dtype=torch.float32)

                    def run():
                        for i in range(32):
                            k, v = caches[i % layers]
                            split_kernel[(rows, kv, sp)](
                                q, k, v, used, acc, ml, d ** -0.5, q.stride(0), q.stride(1),
                                k.stride(0), k.stride(1), k.stride(2), v.stride(0),
                                v.stride(1), v.stride(2), chunk, G=g, BG=16, D=d, BLOCK_N=bn,
                                SPLITS=sp, num_warps=w, num_stages=st)
                            merge_kernel[(rows * heads,)](
                                acc, ml, res, res.stride(0), res.stride(1), heads, D=d,
                                SPLITS=sp, num_warps=1)
                    return run

                variants = {}
                for bn in (32, 64, 128):
                    for w in (2, 4, 8):
                        for st in (2, 3, 4):
                            variants[f"single bn{bn} w{w} s{st}"] = single(bn, w, st)
                for sp in (2, 4, 8):
                    for bn, w, st in ((64, 4, 3), (64, 4, 2), (128, 4, 2), (32, 2, 3),
                                      (64, 8, 3)):
                        variants[f"split{sp} bn{bn} w{w} s{st}"] = split(bn, w, st, sp)
                table = {}
                for name, fn in variants.items():
                    try:
                        fn()
                        torch.cuda.synchronize()
                        err = float((res.double() - ref).abs().max())
                        us = graph_ms(fn) / 32 * 1e3
                        table[name] = {"us": round(us, 1),
                                       "TBps": round(kv_bytes / (us * 1e-6) / 1e12, 2),
                                       "err": round(err, 5)}
                    except Exception as exc:  # noqa: BLE001 - a config that does not fit
                        table[name] = {"error": str(exc)[:120]}
                best = sorted((v["us"], n) for n, v in table.items() if "us" in v)[:6]
                key = f"{heads}/{kv} heads, {lengths}, {layout}"
                out[key] = {"kv_MB": round(kv_bytes / 1e6, 1), "default (bn64 w4 s3)":
                            table["single bn64 w4 s3"], "best": best, "all": table}
                print(key, out[key]["default (bn64 w4 s3)"], best, flush=True)
                del caches
                torch.cuda.empty_cache()
    return out


FIRST = r"""
import os, sys, time, json, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {root!r} + "/bench")
from pathlib import Path
from common import LLAMA3_8B, model, tokenizer
from generation_bench import prompts_for
from harness.engine import Engine
from harness.progress import Progress
from harness.specs import GenerationSpec
mode = {mode!r}
tok = tokenizer(Path("/tmp/bench-tok"))
prompts = prompts_for(tok, 128)
t = time.perf_counter()
m = model(LLAMA3_8B, kind="llama")
m.generation_config.eos_token_id = None
torch.cuda.synchronize()
print("ENGINE model built", time.perf_counter() - t)
t = time.perf_counter()
eng = Engine(m, tok, "cuda", 4096)
if mode == "tiny warm-up":
    eng.generate([p[:16] for p in prompts[:2]], GenerationSpec(max_new_tokens=3),
                 Progress(False), "w")
torch.cuda.synchronize()
print("ENGINE", time.perf_counter() - t)

def call(i, new=128):
    torch.cuda.synchronize(); t = time.perf_counter()
    eng.generate(prompts, GenerationSpec(max_new_tokens=new), Progress(False), "g")
    torch.cuda.synchronize(); print("CALL", i, new, time.perf_counter() - t, flush=True)

def top_cpu(i):  # call i under torch.profiler: its 25 largest CPU self-times
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        call(i)
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:25]
    return json.dumps([(e.key[:70], round(e.self_cpu_time_total / 1e3, 1), e.count)
                       for e in ev])

if mode == "profile":
    print("TOP", top_cpu(0))
    print("TOP2", top_cpu(1))
elif mode == "one token first":
    call(0, 1); call(1, 1); call(2, 2); call(3, 2); call(4); call(5)
else:
    for i in range(3):
        call(i)
"""


def firstcall() -> dict:
    """A process's first generate call against its later ones (Llama-3-8B shape), each mode
    in a fresh process; the first fills the Triton cache, so the rest find it warm."""
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    modes = sys.argv[2:] or ["empty Triton cache", "warm Triton cache"]
    with tempfile.TemporaryDirectory() as cache:
        for mode in modes:
            env = {**os.environ, "TRITON_CACHE_DIR": cache}
            if mode == "eager module loading":
                env["CUDA_MODULE_LOADING"] = "EAGER"
            if mode.endswith("(empty cache)"):
                env["TRITON_CACHE_DIR"] = tempfile.mkdtemp()
            r = subprocess.run([sys.executable, "-c", FIRST.format(root=root, mode=mode)],
                               env=env, capture_output=True, text=True)
            lines = [x for x in r.stdout.splitlines() if x[:4] in ("ENGI", "CALL", "TOP ",
                                                                   "TOP2")]
            out[mode] = {"lines": lines, "err": r.stderr[-800:] if r.returncode else None}
            print(mode, out[mode], flush=True)
    return out


PIECES = r"""
import sys, time, threading, torch
sys.path.insert(0, {root!r})
T = {{}}
def timed(name, fn):
    torch.cuda.synchronize(); t = time.perf_counter(); fn(); torch.cuda.synchronize()
    T[name] = round(time.perf_counter() - t, 4)
def mm(m, n, k):
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    return lambda: torch.nn.functional.linear(a, b)
def flash():
    q = torch.randn(64, 8, 128, device="cuda", dtype=torch.bfloat16)
    cu = torch.tensor([0, 32, 64], dtype=torch.int32, device="cuda")
    return lambda: torch.ops.aten._flash_attention_forward(q, q, q, cu, cu, 32, 32, 0.0, True,
                                                           False, scale=0.1)
def norm():
    from harness import kernels
    x = torch.randn(4, 4096, device="cuda", dtype=torch.bfloat16)
    return lambda: kernels.rms_norm(x, x[0], 1e-6)
def graph():
    f = mm(128, 4096, 4096)
    def run():
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            f()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            f()
        g.replay()
    return run
mode = {mode!r}
t0 = time.perf_counter()
timed("cuda init", lambda: torch.empty(1, device="cuda"))
if mode == "thread":
    def bg():
        mm(256, 4096, 4096)(); flash()(); torch.cuda.synchronize()
    th = threading.Thread(target=bg); tb = time.perf_counter(); th.start(); th.join()
    T["background thread mm+flash"] = round(time.perf_counter() - tb, 4)
timed("mm 256x4096x4096 first", mm(256, 4096, 4096))
timed("mm 256x4096x4096 again", mm(256, 4096, 4096))
timed("mm 89000x14336x4096 first", mm(89000, 14336, 4096))
timed("mm 89000x14336x4096 again", mm(89000, 14336, 4096))
timed("mm 128x1024x4096 first", mm(128, 1024, 4096))
timed("flash varlen first", flash())
timed("flash varlen again", flash())
timed("graph capture first", graph())
timed("graph capture again", graph())
timed("triton rms_norm first (cache warm)", norm())
timed("triton rms_norm again", norm())
T["total"] = round(time.perf_counter() - t0, 3)
print("PIECES", T)
"""


def pieces() -> dict:
    """A fresh process's first calls of each kind of GPU work, timed one by one."""
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    for mode in ("main", "thread", "main"):
        r = subprocess.run([sys.executable, "-c", PIECES.format(root=root, mode=mode)],
                           capture_output=True, text=True)
        line = [x for x in r.stdout.splitlines() if x.startswith("PIECES")]
        out.setdefault(mode, []).append(line[0] if line else r.stderr[-800:])
        print(mode, out[mode][-1], flush=True)
    return out


def main() -> None:
    what = sys.argv[1]
    fn = {"attn": attn, "firstcall": firstcall, "pieces": pieces}[what]
    result = fn()
    dest = Path(os.environ.get("OUT", "/tmp")) / f"kernel_probe_{what}.json"
    dest.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
