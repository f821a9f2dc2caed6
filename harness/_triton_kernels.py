"""The Triton kernels of `harness.kernels` (imported only where Triton is: CUDA builds of
torch ship it; the tests install it and run these through its interpreter).
"""

import triton
import triton.language as tl

from harness import env

try:
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - older Triton
    libdevice = None

# On the GPU: libdevice's exp (CUDA's expf, as torch's silu) and IEEE adds that the compiler
# cannot contract into FMAs. The interpreter (TRITON_INTERPRET=1) has neither.
ACCURATE = libdevice is not None and env.text("TRITON_INTERPRET") != "1"


# Token counts, which change from batch to batch, are not specialised on (divisibility by 16),
# so a new batch does not compile a new variant mid-run; strides and element counts keep it:
# it lets loads vectorise, and for these models it does not change between batches.
@triton.jit(do_not_specialize=["M"])
def rms_norm_kernel(X, W, Y, M, stride_x, eps, N: tl.constexpr, BLOCK: tl.constexpr,
                    ROWS: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask,
                other=0.0).to(tl.float32)
    var = tl.sum(x * x, axis=1) * (1.0 / N)
    normed = (x * tl.rsqrt(var + eps)[:, None]).to(X.dtype.element_ty)
    w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)
    y = normed.to(tl.float32) * w[None, :]
    tl.store(Y + rows[:, None] * N + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def silu_mul_kernel(G, U, Y, n, BLOCK: tl.constexpr, ACCURATE: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    if ACCURATE:  # noqa: SIM108 - a compile-time branch: libdevice is not interpreted
        e = libdevice.exp(-g)
    else:
        e = tl.exp(-g)
    s = tl.div_rn(g, 1.0 + e).to(G.dtype.element_ty)
    tl.store(Y + offs, (s.to(tl.float32) * u).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def rope_rows(X, Out, b, t, sb, sh, st, ob, oh, ot, c, s, H: tl.constexpr, BH: tl.constexpr,
              D: tl.constexpr, ACCURATE: tl.constexpr):
    d = tl.arange(0, D)
    half: tl.constexpr = D // 2
    h = tl.arange(0, BH)[:, None]
    at = X + b * sb + t * st + h * sh
    x = tl.load(at + d[None, :], mask=h < H, other=0.0)
    xp = tl.load(at + ((d + half) % D)[None, :], mask=h < H, other=0.0)
    rot = tl.where(d[None, :] < half, -xp, xp)
    a = (x.to(tl.float32) * c).to(x.dtype).to(tl.float32)
    r = (rot.to(tl.float32) * s).to(x.dtype).to(tl.float32)
    # An IEEE add the compiler cannot contract with a multiply into an FMA (that would
    # skip the products' rounding, which eager torch does).
    if ACCURATE:  # noqa: SIM108 - a compile-time branch: libdevice is not interpreted
        y = libdevice.add_rn(a, r)
    else:
        y = a + r
    tl.store(Out + b * ob + t * ot + h * oh + d[None, :], y.to(Out.dtype.element_ty),
             mask=h < H)


@triton.jit(do_not_specialize=["T"])
def rope_kernel(Q, K, C, S, QO, KO, T, sqb, sqh, sqt, skb, skh, skt, oqb, oqh, oqt,
                okb, okh, okt, scb, sct, HQ: tl.constexpr, HK: tl.constexpr,
                D: tl.constexpr, BHQ: tl.constexpr, BHK: tl.constexpr,
                ACCURATE: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // T
    t = pid % T
    d = tl.arange(0, D)
    c = tl.load(C + b * scb + t * sct + d).to(tl.float32)[None, :]
    s = tl.load(S + b * scb + t * sct + d).to(tl.float32)[None, :]
    rope_rows(Q, QO, b, t, sqb, sqh, sqt, oqb, oqh, oqt, c, s, HQ, BHQ, D, ACCURATE)
    rope_rows(K, KO, b, t, skb, skh, skt, okb, okh, okt, c, s, HK, BHK, D, ACCURATE)


@triton.jit
def target_logprob_kernel(L, T, LP, HIT, V, stride, BLOCK: tl.constexpr):
    """Per row of logits: log_softmax at the target (float32, online over the vocabulary)
    and whether the target is the first argmax (torch.argmax's choice among ties).
    """
    row = tl.program_id(0).to(tl.int64)
    base = L + row * stride
    cols = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    best = tl.full((), float("-inf"), tl.float32)
    best_at = tl.zeros((), tl.int64)
    for lo in range(0, V, BLOCK):
        x = tl.load(base + lo + cols, mask=lo + cols < V, other=float("-inf")).to(tl.float32)
        cmax, cidx = tl.max(x, axis=0, return_indices=True, return_indices_tie_break_left=True)
        m_new = tl.maximum(m, cmax)
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
        take = cmax > best
        best_at = tl.where(take, lo + cidx.to(tl.int64), best_at)
        best = tl.where(take, cmax, best)
    t = tl.load(T + row)
    xt = tl.load(base + t).to(tl.float32)
    tl.store(LP + row, xt - (m + tl.log(s)))
    tl.store(HIT + row, (best_at == t).to(tl.int8))


@triton.jit
def decode_attn_kernel(Q, K, V, USED, Out, scale, sqb, sqh, skb, skh, sks, svb, svh, svs,
                       sob, soh, G: tl.constexpr, BG: tl.constexpr, D: tl.constexpr,
                       BLOCK_N: tl.constexpr):
    """One decode step's attention for one row and one K/V head: the G query heads that
    share the K/V head attend to the row's first USED[row] keys, each key read once for all
    of them (online softmax over blocks of BLOCK_N keys; P rounded to the value dtype for
    the P·V product, as flash attention does).
    """
    row = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1).to(tl.int64)
    g = tl.arange(0, BG)
    d = tl.arange(0, D)
    heads = kvh * G + g   # the G query heads that share this K/V head, BG wide
    in_group = g < G
    q = tl.load(Q + row * sqb + heads[:, None] * sqh + d[None, :], mask=in_group[:, None],
                other=0.0)
    n_used = tl.load(USED + row)
    k_at, v_at = K + row * skb + kvh * skh, V + row * svb + kvh * svh
    m_i = tl.full((BG,), float("-inf"), tl.float32)
    l_i = tl.zeros((BG,), tl.float32)
    acc = tl.zeros((BG, D), tl.float32)
    for start in range(0, n_used, BLOCK_N):
        n = start + tl.arange(0, BLOCK_N)
        valid = n < n_used
        k = tl.load(k_at + n[:, None] * sks + d[None, :], mask=valid[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_at + n[:, None] * svs + d[None, :], mask=valid[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(Out + row * sob + heads[:, None] * soh + d[None, :], out.to(Out.dtype.element_ty),
             mask=in_group[:, None])
