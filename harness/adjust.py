"""Many comparisons: adjusted p-values across a family of tests (compare's target cells, and
its forgetting cells, are one family each).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.stats import clean

ADJUSTMENTS = ("holm", "bh", "none")


def adjust(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values: Holm (1979) step-down, controlling the family-wise error rate, or
    Benjamini-Hochberg (1995), controlling the false discovery rate; `none` returns them.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0 or method == "none":
        return [float(x) for x in p]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    else:
        raise ValueError(f"unknown adjustment {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return [clean(x) for x in out]
