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
