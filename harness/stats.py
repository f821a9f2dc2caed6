"""Aggregation of per-example values: mean, percentile bootstrap 95% CI, standard error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class MetricValue:
    value: float
    ci95: tuple[float, float]
    stderr: float
    n: int

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "ci95": [self.ci95[0], self.ci95[1]],
                "stderr": self.stderr, "n": self.n}


def _resample_indices(n: int, resamples: int, seed: int, chunk: int = 200):
    """Bootstrap index draws [chunk, n], generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def _clean(x: float) -> float:
    # Round away float noise so identical runs give identical report bytes across platforms.
    return float(round(float(x), 12))


def summarize(values: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
              seed: int = 0) -> MetricValue:
    """Mean with a percentile-bootstrap 95% CI and the standard error of the mean."""
    arr = np.asarray(values, dtype=np.float64)
    n = int(arr.size)
    mean = float(arr.mean())
    if n < 2:
        return MetricValue(_clean(mean), (_clean(mean), _clean(mean)), 0.0, n)
    stderr = float(arr.std(ddof=1) / np.sqrt(n))
    means = np.concatenate([arr[idx].mean(axis=1)
                            for idx in _resample_indices(n, resamples, seed)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return MetricValue(_clean(mean), (_clean(lo), _clean(hi)), _clean(stderr), n)


def summarize_corpus(stats: np.ndarray, compute: Callable[[np.ndarray], float],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> MetricValue:
    """A corpus metric from summed per-example statistics; CI and stderr by resampling
    examples and recomputing (the standard error is the bootstrap standard deviation)."""
    n = int(stats.shape[0])
    value = compute(stats.sum(axis=0))
    if n < 2:
        return MetricValue(_clean(value), (_clean(value), _clean(value)), 0.0, n)
    draws = []
    for idx in _resample_indices(n, resamples, seed):
        sums = stats[idx].sum(axis=1)  # [chunk, k]
        draws += [compute(s) for s in sums]
    arr = np.asarray(draws)
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return MetricValue(_clean(value), (_clean(lo), _clean(hi)), _clean(arr.std(ddof=1)), n)


@dataclass(frozen=True)
class PairedDelta:
    before: float
    after: float
    delta: float
    ci95: tuple[float, float]
    p_value: float | None

    @property
    def significant(self) -> bool:
        """The 95% CI of the difference excludes 0."""
        return self.ci95[0] > 0 or self.ci95[1] < 0


def paired_delta(before: Sequence[float], after: Sequence[float], resamples: int = 10_000,
                 seed: int = 0) -> PairedDelta:
    """Δ = mean(after) − mean(before) with a paired percentile-bootstrap CI: the same
    resampled examples for both models, i.e. a bootstrap of the per-example differences."""
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.shape != a.shape:
        raise ValueError("paired values need the same examples")
    diff = a - b
    n = diff.size
    delta = float(diff.mean())
    if n < 2:
        return PairedDelta(_clean(b.mean()), _clean(a.mean()), _clean(delta),
                           (_clean(delta), _clean(delta)), None)
    means = np.concatenate([diff[idx].mean(axis=1)
                            for idx in _resample_indices(n, resamples, seed)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return PairedDelta(_clean(b.mean()), _clean(a.mean()), _clean(delta), (_clean(lo), _clean(hi)),
                       None)


def paired_delta_corpus(before: np.ndarray, after: np.ndarray,
                        compute: Callable[[np.ndarray], float], resamples: int = 10_000,
                        seed: int = 0) -> PairedDelta:
    """Δ of a corpus metric (BLEU, perplexity): resample documents, recompute both models'
    values from the same documents' statistics, take the difference."""
    if before.shape[0] != after.shape[0]:
        raise ValueError("paired statistics need the same examples")
    vb, va = compute(before.sum(axis=0)), compute(after.sum(axis=0))
    n = before.shape[0]
    if n < 2:
        return PairedDelta(_clean(vb), _clean(va), _clean(va - vb),
                           (_clean(va - vb), _clean(va - vb)), None)
    draws = []
    for idx in _resample_indices(n, resamples, seed):
        sb, sa = before[idx].sum(axis=1), after[idx].sum(axis=1)
        draws += [compute(x) - compute(y) for x, y in zip(sa, sb, strict=True)]
    lo, hi = np.percentile(np.asarray(draws), [2.5, 97.5])
    return PairedDelta(_clean(vb), _clean(va), _clean(va - vb), (_clean(lo), _clean(hi)), None)


def mcnemar_exact(before_correct: Sequence[float], after_correct: Sequence[float]) -> float:
    """Exact (binomial) two-sided McNemar p-value over the discordant pairs."""
    from scipy.stats import binom

    b = int(sum(1 for x, y in zip(before_correct, after_correct, strict=True) if x and not y))
    c = int(sum(1 for x, y in zip(before_correct, after_correct, strict=True) if y and not x))
    if b + c == 0:
        return 1.0
    return _clean(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))
