"""A split-K (flash-decoding) variant of harness/_triton_kernels.py's decode attention, for
bench/kernel_probe.py's comparison only: each (row, K/V head) program's keys cut into SPLITS
ranges, partial results merged by a second kernel. Measured slower than the one-pass kernel
at 128 rows (session 5), so the engine does not use it."""

import triton
import triton.language as tl

from harness._triton_kernels import attend_keys, group_queries


@triton.jit
def split_kernel(Q, K, V, USED, Acc, ML, scale, sqb, sqh, skb, skh, sks, svb, svh, svs, CHUNK,
                 G: tl.constexpr, BG: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr,
                 SPLITS: tl.constexpr):
    """`decode_attn_kernel` over one of SPLITS ranges of CHUNK keys (a multiple of BLOCK_N):
    the unnormalised float32 output and the running max and sum of its query heads, for
    `merge_kernel` to combine (flash-decoding)."""
    row, kvh, heads, in_group, q, n_used = group_queries(Q, USED, sqb, sqh, G, BG, D)
    sp = tl.program_id(2).to(tl.int64)
    lo = sp * CHUNK
    hi = tl.minimum(lo + CHUNK, n_used)
    m_i, l_i, acc = attend_keys(q, K + row * skb + kvh * skh, V + row * svb + kvh * svh,
                                sks, svs, lo, hi, scale, BG, D, BLOCK_N)
    # Partials laid out [row, head, split, D] and [row, head, split, 2].
    at = (row * (tl.num_programs(1) * G) + heads) * SPLITS + sp
    d = tl.arange(0, D)
    tl.store(Acc + at[:, None] * D + d[None, :], acc, mask=in_group[:, None])
    tl.store(ML + at * 2, m_i, mask=in_group)
    tl.store(ML + at * 2 + 1, l_i, mask=in_group)


@triton.jit
def merge_kernel(Acc, ML, Out, sob, soh, H, D: tl.constexpr, SPLITS: tl.constexpr):
    """Combines `split_kernel`'s partials for one row and query head."""
    pid = tl.program_id(0).to(tl.int64)
    row = pid // H
    head = pid % H
    s = tl.arange(0, SPLITS)
    d = tl.arange(0, D)
    m = tl.load(ML + (pid * SPLITS + s) * 2)
    ell = tl.load(ML + (pid * SPLITS + s) * 2 + 1)
    m_all = tl.max(m, axis=0)
    w = tl.where(m > float("-inf"), tl.exp(m - m_all), 0.0)
    acc = tl.load(Acc + (pid * SPLITS + s)[:, None] * D + d[None, :])
    out = tl.sum(acc * w[:, None], axis=0) / tl.sum(ell * w, axis=0)
    tl.store(Out + row * sob + head * soh + d, out.to(Out.dtype.element_ty))
