"""Aggregation of per-example values into estimates with 95% intervals, tests and minimum
detectable effects, each by a method that follows the kind of value (docs/statistics.md).

Methods:
- proportions (0/1 per example: acc, acc_norm, exact_match): Wilson score interval for one
  model; for a paired difference, Tango's score interval with the mid-p McNemar test;
- continuous per-example values (ROUGE, BERTScore, word counts): Student t interval of the
  mean, or of the paired differences, with the matching t test;
- corpus metrics (BLEU, chrF, perplexity): a document-level bootstrap with BCa correction,
  paired (the same resampled documents for both models) for differences.

Every paired result carries a p-value, and the interval and the test never contradict each
other: where the two disagree at the edge (a few tables of McNemar counts, or floating-point
rounding), the interval is extended to reach 0. Minimum detectable effects are the smallest
true |Δ| this n and this variance would find significant with 80% power.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from harness.shapes import MetricSummary

DEFAULT_RESAMPLES = 1000
ALPHA = 0.05
POWER = 0.80

WILSON = "Wilson score interval"
T_MEAN = "Student t interval of the mean"
BCA = "BCa bootstrap over documents"
TANGO = "Tango score interval; mid-p McNemar test"
T_PAIRED = "paired t interval; paired t test"
BCA_PAIRED = "paired BCa bootstrap over documents"
METHODS = (WILSON, T_MEAN, BCA, TANGO, T_PAIRED, BCA_PAIRED)


@dataclass(frozen=True)
class MetricValue:
    """A metric over one run: value, 95% CI, standard error, n and the CI's method."""

    value: float
    ci95: tuple[float, float]
    stderr: float
    n: int
    method: str = T_MEAN

    def to_json(self) -> MetricSummary:
        """The summary as report.json's metric entry."""
        return {"value": self.value, "ci95": [self.ci95[0], self.ci95[1]],
                "stderr": self.stderr, "n": self.n, "ci_method": self.method}


def _resample_indices(n: int, resamples: int, seed: int, chunk: int = 200,
                      ) -> Iterator[np.ndarray]:
    """Bootstrap index draws [chunk, n], generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def clean(x: float) -> float:
    """A figure as reports keep it: float noise rounded away (12 decimals), so identical runs
    give identical report bytes across platforms.
    """
    return float(round(float(x), 12))


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1 (a proportion)."""
    return bool(values.size) and bool(np.all((values == 0) | (values == 1)))


# ---- one model ------------------------------------------------------------------------------

def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial proportion."""
    from scipy.stats import norm

    if n == 0:
        return (0.0, 1.0)
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(values: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
              seed: int = 0, proportion: bool | None = None) -> MetricValue:
    """Mean with a 95% CI and its standard error: Wilson for proportions (0/1 values),
    Student t otherwise. proportion None: decided from the values. resamples and seed are
    unused: both intervals are closed-form.
    """
    from scipy.stats import t as student

    arr = np.asarray(values, dtype=np.float64)
    n = int(arr.size)
    mean = float(arr.mean())
    binary = is_binary(arr) if proportion is None else proportion and is_binary(arr)
    if n < 2:
        return MetricValue(clean(mean), (clean(mean), clean(mean)), 0.0, n,
                           WILSON if binary else T_MEAN)
    stderr = float(arr.std(ddof=1) / np.sqrt(n))
    if binary:
        lo, hi = wilson(float(arr.sum()), n)
        return MetricValue(clean(mean), (clean(lo), clean(hi)), clean(stderr), n, WILSON)
    q = float(student.ppf(1 - ALPHA / 2, n - 1))
    return MetricValue(clean(mean), (clean(mean - q * stderr), clean(mean + q * stderr)),
                       clean(stderr), n, T_MEAN)


def _bca_levels(draws: np.ndarray, estimate: float, jackknife: np.ndarray,
                alpha: float) -> tuple[float, float]:
    """The BCa percentile levels (Efron 1987) for a two-sided 1 - alpha interval."""
    from scipy.stats import norm

    below = float(np.mean(draws < estimate) + 0.5 * np.mean(draws == estimate))
    below = min(max(below, 1.0 / (draws.size + 1)), draws.size / (draws.size + 1))
    z0 = float(norm.ppf(below))
    centred = jackknife.mean() - jackknife
    den = 6.0 * float(np.sum(centred ** 2)) ** 1.5
    acc = float(np.sum(centred ** 3)) / den if den > 0 else 0.0
    levels = []
    for z in (norm.ppf(alpha / 2), norm.ppf(1 - alpha / 2)):
        shifted = z0 + (z0 + z) / (1 - acc * (z0 + z))
        levels.append(float(norm.cdf(shifted)))
    return levels[0], levels[1]


def _jackknife(stats: np.ndarray, compute: Callable[[np.ndarray], float]) -> np.ndarray:
    total = stats.sum(axis=0)
    return np.asarray([compute(total - row) for row in stats], dtype=np.float64)


def summarize_corpus(stats: np.ndarray, compute: Callable[[np.ndarray], float],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> MetricValue:
    """A corpus metric from summed per-example statistics: BCa bootstrap over documents (the
    standard error is the bootstrap standard deviation).
    """
    n = int(stats.shape[0])
    value = compute(stats.sum(axis=0))
    if n < 2:
        return MetricValue(clean(value), (clean(value), clean(value)), 0.0, n, BCA)
    draws = []
    for idx in _resample_indices(n, resamples, seed):
        draws += [compute(s) for s in stats[idx].sum(axis=1)]
    arr = np.asarray(draws, dtype=np.float64)
    lo_level, hi_level = _bca_levels(arr, value, _jackknife(stats, compute), ALPHA)
    lo, hi = np.quantile(arr, [lo_level, hi_level])
    return MetricValue(clean(value), (clean(lo), clean(hi)), clean(arr.std(ddof=1)), n, BCA)


# ---- two models on the same examples ---------------------------------------------------------

@dataclass(frozen=True)
class PairedDelta:
    """A paired comparison of one metric: before, after, Δ, its CI and test."""

    before: float
    after: float
    delta: float
    ci95: tuple[float, float]
    p_value: float | None
    method: str = T_PAIRED
    mde: float | None = None  # smallest true |Δ| found significant with 80% power

    @property
    def significant(self) -> bool:
        """The test rejects Δ = 0 at 5%; by construction the 95% CI then excludes 0."""
        if self.p_value is None:
            return self.ci95[0] > 0 or self.ci95[1] < 0
        return self.p_value < ALPHA


def _agree(d: PairedDelta) -> PairedDelta:
    """Make interval and test one: where the test does not reject but the interval excludes 0
    (an edge table, or rounding), extend the interval to 0; where the test rejects but the
    interval holds 0 (rounding only), the test is read at the interval's verdict.
    """
    lo, hi = d.ci95
    excludes = lo > 0 or hi < 0
    if d.p_value is None or excludes == d.significant:
        return d
    if not d.significant:
        return replace(d, ci95=(min(lo, 0.0), max(hi, 0.0)))
    return replace(d, p_value=ALPHA)


def mcnemar_midp(b: int, c: int) -> float:
    """Two-sided mid-p McNemar test over b and c discordant pairs (Fagerland et al. 2013)."""
    from scipy.stats import binom

    d = b + c
    if d == 0:
        return 1.0
    k = min(b, c)
    p = 2.0 * (float(binom.cdf(k - 1, d, 0.5)) + 0.5 * float(binom.pmf(k, d, 0.5)))
    return clean(min(1.0, p))


def mcnemar_exact(before_correct: Sequence[float], after_correct: Sequence[float]) -> float:
    """Exact (binomial) two-sided McNemar p-value over the discordant pairs."""
    from scipy.stats import binom

    b = int(sum(1 for x, y in zip(before_correct, after_correct, strict=True) if x and not y))
    c = int(sum(1 for x, y in zip(before_correct, after_correct, strict=True) if y and not x))
    if b + c == 0:
        return 1.0
    return clean(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def tango_score(b: np.ndarray, c: np.ndarray, n: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Tango's (1998) score statistic for H0: p_after - p_before = delta, with b pairs right
    before and wrong after and c the reverse (vectorised; the restricted MLE is closed-form).
    """
    b, c, n, delta = (np.asarray(x, dtype=np.float64) for x in (b, c, n, delta))
    qa = 2.0 * n
    qb = -b - c + (2.0 * n - c + b) * delta
    qc = -b * delta * (1.0 - delta)
    q = (np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0)) - qb) / (2.0 * qa)
    var = n * (2.0 * q + delta * (1.0 - delta))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (c - b - n * delta) / np.sqrt(var)
    return np.where(var > 0, z, np.where(c - b - n * delta >= 0, np.inf, -np.inf))


def tango_interval(b: ArrayLike, c: ArrayLike, n: ArrayLike, alpha: float = ALPHA,
                   iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Tango's score interval for a difference of paired proportions, by bisection on the
    monotone score statistic (vectorised over tables).
    """
    from scipy.stats import norm

    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    z = float(norm.ppf(1 - alpha / 2))
    est = (c - b) / n
    bounds = []
    for target, lo, hi in ((z, np.full_like(est, -1.0), est.copy()),
                           (-z, est.copy(), np.full_like(est, 1.0))):
        for _ in range(iterations):  # score decreases in delta: find score == target
            mid = (lo + hi) / 2
            above = tango_score(b, c, n, mid) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        bounds.append((lo + hi) / 2)
    return bounds[0], bounds[1]


def mde_paired_proportion(discordant: float, n: int, alpha: float = ALPHA,
                          power: float = POWER) -> float:
    """Smallest true Δ that McNemar's test finds with the given power (Connor 1987), with the
    observed discordant-pair rate, or |Δ| itself where larger (a change of Δ flips at least
    that share of pairs).
    """
    from scipy.stats import norm

    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))

    def gap(d: float) -> float:
        psi = max(discordant, d)
        return np.sqrt(n) * d - za * np.sqrt(psi) - zb * np.sqrt(max(psi - d * d, 0.0))

    lo, hi = 0.0, 1.0
    if gap(hi) < 0:
        return 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return clean(hi)


def paired_proportion_tables(b: ArrayLike, c: ArrayLike, n: ArrayLike,
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, mid-p) for tables of b (right before, wrong after) and c (the reverse)
    discordant pairs out of n (vectorised): Tango's interval, extended to 0 where the mid-p
    McNemar test does not reject, so the two never disagree.
    """
    from scipy.stats import binom

    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    lo, hi = tango_interval(b, c, n)
    d, k = b + c, np.minimum(b, c)
    p = np.where(d > 0, np.minimum(1.0, 2.0 * (binom.cdf(k - 1, d, 0.5)
                                               + 0.5 * binom.pmf(k, d, 0.5))), 1.0)
    keep = p >= ALPHA
    return np.where(keep, np.minimum(lo, 0.0), lo), np.where(keep, np.maximum(hi, 0.0), hi), p


def paired_proportions(before: np.ndarray, after: np.ndarray) -> PairedDelta:
    """Paired 0/1 values: Tango's score interval and the mid-p McNemar test."""
    n = before.size
    b = int(np.sum((before == 1) & (after == 0)))
    c = int(np.sum((before == 0) & (after == 1)))
    lo, hi, p = paired_proportion_tables([b], [c], [n])
    d = PairedDelta(clean(before.mean()), clean(after.mean()), clean((c - b) / n),
                    (clean(lo[0]), clean(hi[0])), clean(p[0]), TANGO,
                    mde_paired_proportion((b + c) / n, n))
    return _agree(d)


def paired_t_intervals(before: np.ndarray, after: np.ndarray,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, p) of the paired t interval and test for each row of [rows, n] values
    (vectorised). A row whose differences are all equal (an unchanged output on every example,
    say) says nothing about their spread: it gets the unpaired standard error
    sqrt(s_before² + s_after²) / sqrt(n) instead of a zero-width interval.
    """
    from scipy.stats import t as student

    diff = after - before
    n = diff.shape[1]
    delta = diff.mean(axis=1)
    se = diff.std(axis=1, ddof=1) / np.sqrt(n)
    unpaired = np.sqrt(before.var(axis=1, ddof=1) + after.var(axis=1, ddof=1)) / np.sqrt(n)
    se = np.where(se > 0, se, unpaired)
    q = float(student.ppf(1 - ALPHA / 2, n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * student.sf(np.abs(delta) / se, n - 1),
                     np.where(delta == 0, 1.0, 0.0))
    return delta - q * se, delta + q * se, p


def paired_t(before: np.ndarray, after: np.ndarray) -> PairedDelta:
    """Paired continuous values: the paired t interval and test."""
    from scipy.stats import t as student

    diff = after - before
    n = diff.size
    lo, hi, p = paired_t_intervals(before[None, :], after[None, :])
    sd = float(diff.std(ddof=1))
    # planning sd: the paired one, or (no spread of differences at all) the unpaired bound
    plan_sd = sd if sd > 0 else float(np.sqrt(before.var(ddof=1) + after.var(ddof=1)))
    mde = float((student.ppf(1 - ALPHA / 2, n - 1) + student.ppf(POWER, n - 1))
                * plan_sd / np.sqrt(n))
    return _agree(PairedDelta(clean(before.mean()), clean(after.mean()), clean(diff.mean()),
                              (clean(lo[0]), clean(hi[0])), clean(p[0]), T_PAIRED,
                              clean(mde)))


def paired_delta(before: Sequence[float], after: Sequence[float], resamples: int = 10_000,
                 seed: int = 0, proportion: bool | None = None) -> PairedDelta:
    """Δ = mean(after) − mean(before) over the same examples: Tango + mid-p McNemar for
    proportions (0/1 values), paired t otherwise. proportion None: decided from the values.
    resamples and seed are unused: both are closed-form.
    """
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.shape != a.shape:
        raise ValueError("paired values need the same examples")
    n = b.size
    binary = is_binary(np.concatenate([a, b]))
    binary = binary if proportion is None else proportion and binary
    if n < 2:
        delta = float((a - b).mean()) if n else 0.0
        return PairedDelta(clean(b.mean()) if n else 0.0, clean(a.mean()) if n else 0.0,
                           clean(delta), (clean(delta), clean(delta)), None,
                           TANGO if binary else T_PAIRED, None)
    if binary:
        return paired_proportions(b, a)
    return paired_t(b, a)


def _bca_p_value(draws: np.ndarray, estimate: float, jackknife: np.ndarray) -> float:
    """The smallest alpha at which the BCa interval excludes 0 (its achieved significance
    level), found by bisection on the same interval function, so the two agree.
    """
    def excludes(alpha: float) -> bool:
        lo_level, hi_level = _bca_levels(draws, estimate, jackknife, alpha)
        lo, hi = np.quantile(draws, [lo_level, hi_level])
        return bool(lo > 0 or hi < 0)

    if not excludes(1.0 - 1e-9):
        return 1.0
    lo, hi = 1e-9, 1.0 - 1e-9
    if excludes(lo):
        return lo
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if excludes(mid) else (mid, hi)
    return hi


def paired_delta_corpus(before: np.ndarray, after: np.ndarray,
                        compute: Callable[[np.ndarray], float], resamples: int = 10_000,
                        seed: int = 0) -> PairedDelta:
    """Δ of a corpus metric (BLEU, perplexity): resample documents, recompute both models'
    values from the same documents' statistics, take the difference; BCa-corrected, with
    the jackknife over documents for the acceleration.
    """
    from scipy.stats import norm

    if before.shape[0] != after.shape[0]:
        raise ValueError("paired statistics need the same examples")
    vb, va = compute(before.sum(axis=0)), compute(after.sum(axis=0))
    n = before.shape[0]
    if n < 2:
        return PairedDelta(clean(vb), clean(va), clean(va - vb),
                           (clean(va - vb), clean(va - vb)), None, BCA_PAIRED, None)
    draws, draws_b, draws_a = [], [], []
    for idx in _resample_indices(n, resamples, seed):
        sb, sa = before[idx].sum(axis=1), after[idx].sum(axis=1)
        for x, y in zip(sa, sb, strict=True):
            xa, yb = compute(x), compute(y)
            draws.append(xa - yb)
            draws_a.append(xa)
            draws_b.append(yb)
    arr = np.asarray(draws, dtype=np.float64)
    estimate = va - vb
    jack = _jackknife(after, compute) - _jackknife(before, compute)
    lo_level, hi_level = _bca_levels(arr, estimate, jack, ALPHA)
    lo, hi = np.quantile(arr, [lo_level, hi_level])
    se = float(arr.std(ddof=1))
    if se == 0:  # the planning spread where the two never differ: the unpaired bound
        se = float(np.hypot(np.std(draws_a, ddof=1), np.std(draws_b, ddof=1)))
    mde = (float(norm.ppf(1 - ALPHA / 2)) + float(norm.ppf(POWER))) * se
    p = _bca_p_value(arr, estimate, jack)
    return _agree(PairedDelta(clean(vb), clean(va), clean(estimate),
                              (clean(lo), clean(hi)), clean(p), BCA_PAIRED, clean(mde)))
