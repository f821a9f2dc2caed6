"""Synthetic before/after data with a known true Δ, vectorised over simulations, for the
coverage tests (tests/test_coverage.py) and the coverage table (bench/coverage.py).

Each generator returns (before, after, true_delta) with before/after of shape [sims, n] and
true_delta of shape [sims] (or a scalar): the population mean of after - before.
"""

from __future__ import annotations

import numpy as np


def paired_binary(rng: np.random.Generator, n: int, sims: int, p10: float, p01: float,
                  p11: float = 0.6):
    """0/1 pairs with fixed cell probabilities: p10 right before and wrong after, p01 the
    reverse (the issue's table: 10-12% discordant)."""
    cells = rng.multinomial(n, [p10, p01, p11, 1 - p10 - p01 - p11], size=sims)
    return cells, p01 - p10


def paired_binary_tables(rng: np.random.Generator, n: int, sims: int, null: bool = False):
    """Counts (b, c) of discordant pairs for parameters drawn per simulation: discordant rate
    psi ~ U[0.05, 0.4], delta ~ U[-psi/2, psi/2] (0 under the null). Coverage averaged over
    this range, as Newcombe (1998) and Fagerland et al. (2014) report it."""
    psi = rng.uniform(0.05, 0.4, sims)
    delta = np.zeros(sims) if null else rng.uniform(-0.5, 0.5, sims) * psi
    p10, p01 = (psi - delta) / 2, (psi + delta) / 2
    b = rng.binomial(n, p10)
    c = rng.binomial(n - b, p01 / (1 - p10))
    return b, c, delta


ROUGE_NOISE = 0.12


def rouge_like(rng: np.random.Generator, n: int, sims: int, delta: float):
    """Scores in [0, 1] like ROUGE: an example difficulty shared by both models plus noise,
    clipped. The true Δ is computed from a large sample of the same process."""
    def draw(size_sims: int, size_n: int):
        u = rng.beta(2, 3, (size_sims, size_n))
        before = np.clip(u + rng.normal(0, ROUGE_NOISE, u.shape), 0, 1)
        after = np.clip(u + delta + rng.normal(0, ROUGE_NOISE, u.shape), 0, 1)
        return before, after

    big_b, big_a = draw(40, 50_000)
    truth = float((big_a - big_b).mean())
    before, after = draw(sims, n)
    return before, after, truth


def shape(name: str, rng: np.random.Generator, n: int, sims: int, delta: float):
    """More shapes for the slow test: skewed, heavy-tailed, many ties, near 0, near 1."""
    def draw(size_sims: int, size_n: int):
        size = (size_sims, size_n)
        if name == "skewed":  # scores near 0 with a long right tail (short-answer ROUGE)
            before = rng.beta(0.6, 4, size)
            after = np.clip(before + delta + 0.15 * rng.exponential(1, size) - 0.15, 0, 1)
        elif name == "heavy-tailed":  # differences with Student t(3) tails
            before = rng.uniform(0.2, 0.8, size)
            after = before + delta + 0.1 * rng.standard_t(3, size)
        elif name == "ties":  # 80% of outputs unchanged: differences exactly 0
            before = rng.beta(2, 3, size)
            moved = rng.random(size) < 0.2
            after = np.where(moved, np.clip(before + 5 * delta + rng.normal(0, 0.2, size), 0, 1),
                             before)
        elif name == "near-0":
            before = np.clip(rng.normal(0.03, 0.03, size), 0, 1)
            after = np.clip(before + delta + rng.normal(0, 0.03, size), 0, 1)
        elif name == "near-1":
            before = np.clip(rng.normal(0.97, 0.03, size), 0, 1)
            after = np.clip(before - delta + rng.normal(0, 0.03, size), 0, 1)
        else:
            raise ValueError(name)
        return before, after

    big_b, big_a = draw(40, 50_000)
    truth = float((big_a - big_b).mean())
    before, after = draw(sims, n)
    return before, after, truth


SHAPES = ("skewed", "heavy-tailed", "ties", "near-0", "near-1")
