"""The split-K variant (split_attn_kernels.py) and the engine's decode attention against a
float64 reference, on the GPU in bf16 at the benchmark's sizes: python bench/split_check.py"""

import json
import os
from pathlib import Path

import torch
from split_attn_kernels import merge_kernel, split_kernel

from harness import kernels

torch.manual_seed(0)
rows, heads, kv, d, slots, sp, chunk = 128, 32, 8, 128, 832, 4, 256
dev, bf = "cuda", torch.bfloat16
q = torch.randn(rows, heads, d, device=dev, dtype=bf)
k = torch.randn(rows, kv, slots, d, device=dev, dtype=bf)
v = torch.randn(rows, kv, slots, d, device=dev, dtype=bf)
used = torch.randint(1, slots + 1, (rows,), device=dev, dtype=torch.int32)
g = heads // kv
ref = torch.empty(rows, heads, d, dtype=torch.float64, device=dev)
for r in range(rows):
    n = int(used[r])
    kk = k[r, :, :n].double().repeat_interleave(g, 0)
    vv = v[r, :, :n].double().repeat_interleave(g, 0)
    w = torch.softmax((q[r].double()[:, None] @ kk.transpose(1, 2))[:, 0] * d ** -0.5, -1)
    ref[r] = (w[:, None] @ vv)[:, 0]
engine = kernels.decode_attention(q, k, v, used, None)
acc = torch.empty(rows * heads * sp * d, device=dev)
ml = torch.empty(rows * heads * sp * 2, device=dev)
res = torch.empty(rows, heads, d, device=dev, dtype=bf)
split_kernel[(rows, kv, sp)](q, k, v, used, acc, ml, d ** -0.5, q.stride(0), q.stride(1),
                             k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1),
                             v.stride(2), chunk, G=g, BG=16, D=d, BLOCK_N=64, SPLITS=sp)
merge_kernel[(rows * heads,)](acc, ml, res, res.stride(0), res.stride(1), heads, D=d,
                              SPLITS=sp)
out = {"engine_kernel_max_err": (engine.double() - ref).abs().max().item(),
       "split_kernel_max_err": (res.double() - ref).abs().max().item()}
print(json.dumps(out))
Path(os.environ.get("OUT", "/tmp"), "split_check.json").write_text(json.dumps(out))
